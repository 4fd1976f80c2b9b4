"""The whole loop measured side by side: bicubic, the teacher, the pruned export (zero-shot) and retrained models.

``pruneseek bench retrain --model LABEL=DIR ...`` evaluates every model on the held-out crops of
:func:`pruneseek.evaluation.held_out_crops` (photographs no search, teacher training or retraining sees; grid
crops, the teacher's degradation preset with fixed seeds, half-overlapping tiles), with each metric's mean and a 95 %
bootstrap interval over the crops, and the paired difference to the teacher with its interval (a difference
whose interval contains 0 is a tie). It also measures, on the same one-tile input, each model's parameters,
MACs (torch's FLOP counter ÷ 2) and CPU latency (variants interleaved per round, median). Written to
``results/retrain-<model>.json``.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import torch

from pruneseek import recipes
from pruneseek.stats import interval, verdict
from pruneseek.targets.load import TargetSource, load_pruned

METRIC_NAMES = ("psnr", "ssim", "haarpsi", "gmsd")


def _scores(target, crops: list[dict], tile: int) -> list[dict[str, float]]:
    from pruneseek.evaluation import sr_tiled
    from pruneseek.metrics import gmsd, haarpsi, psnr, ssim

    rows = []
    for item in crops:
        sr = item["up"] if target is None else sr_tiled(target, item["up"], tile)
        hr = item["hr"]
        rows.append({"psnr": float(psnr(sr, hr)), "ssim": float(ssim(sr, hr)), "haarpsi": float(haarpsi(sr, hr)),
                     "gmsd": float(gmsd(sr, hr))})
    return rows


def _summary(rows: list[dict], reference: list[dict] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in METRIC_NAMES:
        values = [r[m] for r in rows]
        entry: dict[str, Any] = {"mean": statistics.fmean(values), "ci95": interval(values)}
        if reference is not None:
            diff = [a[m] - b[m] for a, b in zip(rows, reference)]
            lo, hi = interval(diff)
            entry["minus_teacher"] = {"mean": statistics.fmean(diff), "ci95": (lo, hi),
                                      "verdict": {"better": "higher", "worse": "lower"}.get(verdict(lo, hi), "tie")}
        out[m] = entry
    return out


def _costs(models: dict[str, Any], tile: int, rounds: int) -> dict[str, dict[str, Any]]:
    """Parameters, MACs and latency of one tile's SR latent, the models interleaved per round."""
    from pruneseek.export.measure import count_macs, count_params, interleaved_latency

    x = torch.rand(1, 3, tile, tile, generator=torch.Generator().manual_seed(0)) * 2 - 1
    fns = {}
    for name, target in models.items():
        if target is not None:
            z = target.encode(x.to(target.device))
            fns[name] = (lambda t=target, z=z: t.sr_latent(z))
    latency = interleaved_latency(fns, rounds=rounds)
    full = latency["teacher"]["median_s"]
    out = {}
    for name, fn in fns.items():
        target = models[name]
        out[name] = {"params": count_params(target.transformer), "macs": count_macs(fn),
                     "latency_median_s": latency[name]["median_s"], "latency_over_teacher": latency[name]["median_s"] / full}
    return out


def bench_retrain(folders: dict[str, Path], source: TargetSource | None = None, crop: int = recipes.EVAL["crop"],
                  seeds: tuple[int, ...] = recipes.EVAL["seeds"], tile: int = recipes.EVAL["tile"], rounds: int = 5,
                  per_image: int | None = recipes.EVAL["per_image"],
                  progress=print) -> dict[str, Any]:
    """Evaluate bicubic, the teacher and every folder (label → pruned/retrained folder); see the module docstring."""
    from pruneseek.evaluation import held_out_crops

    source = source or TargetSource()
    models: dict[str, Any] = {"bicubic": None, "teacher": source.load()}
    crops = held_out_crops(crop, seeds, tile, degradation=models["teacher"].degradation, per_image=per_image)
    for label, folder in folders.items():
        models[label] = load_pruned(Path(folder), source, latent=models["teacher"])
    rows = {}
    with torch.no_grad():
        for name, target in models.items():
            progress(f"evaluating {name} on {len(crops)} held-out crops")
            rows[name] = _scores(target, crops, tile)
    return {
        "held_out": {"images": sorted({c["image"] for c in crops}), "crops": len(crops), "crop": crop,
                     "seeds": list(seeds), "tile": tile},
        "models": {name: str(folders[name]) if name in folders else name for name in models},
        "metrics": {name: _summary(r, None if name == "teacher" else rows["teacher"]) for name, r in rows.items()},
        "costs": _costs(models, tile, rounds),
        "interval": "95 % percentile bootstrap over the held-out crops (2000 resamples); paired for differences",
        "per_crop": rows,
    }
