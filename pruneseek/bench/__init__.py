"""Benchmarks: speed and memory measured as ratios, side by side in one run, written as JSON to results/."""
