"""Targets: the models pruneseek prunes, each exposing its block stack to the engine."""
