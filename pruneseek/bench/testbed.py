"""Can the testbed tell good decisions from bad? ``pruneseek bench testbed`` measures its power (docs/design.md §6.8).

Three figures, on the held-out set of :func:`pruneseek.evaluation.held_out_crops`:

1. **Headroom**: the teacher minus bicubic on the same degraded inputs, PSNR and HaarPSI, with paired 95 %
   bootstrap intervals over the crops (:func:`pruneseek.evaluation.eval_teacher`). A teacher that does not beat
   bicubic gives its layers nothing to lose.
2. **Harm**: per ratio, ``masks`` diverse masks (the masks of the rule-based strategies ``bk-sdm`` and
   ``shortgpt`` and uniform draws from the search space, seeded) evaluated zero-shot: how far removing layers
   moves the output from the teacher's, beside the recovery noise below.
3. **Discrimination**: each mask recovered with every seed of ``seeds`` by the comparison's protocol
   (:mod:`pruneseek.recovery`, its budget), then evaluated. Per metric, the *spread* is the range (max − min)
   of the masks' means over seeds and the *noise* the pooled standard deviation of one mask over recovery
   seeds (square root of the mean within-mask sample variance). ``discrimination_ratio = spread / noise``: how
   many noise widths separate the best mask from the worst. Below about 3 a comparison of strategies mostly
   reads noise; the goal for the primary metric (PSNR to the teacher's output) is 10. A comparison recovers every
   strategy with the same seeds (same data order), so part of the seed-to-seed noise is shared by all masks and
   cancels in its paired differences; ``discrimination_ratio_paired`` divides by the noise left after removing
   that shared part (the residual of an additive mask + seed fit), reported beside the plain ratio.

Cells (mask × seed) are written to the output JSON as they finish; a rerun with the same settings continues
from them.
"""
from __future__ import annotations

import math
import statistics
import time
from pathlib import Path
from typing import Any, Callable

from pruneseek import recipes
from pruneseek.fingerprint import settings_hash

FORMAT = "pruneseek.bench-testbed/v1"
#: Metrics whose power is reported (the primary one first).
METRICS = ("psnr_teacher", "psnr", "haarpsi", "l1_teacher")
RULES = ("bk-sdm", "shortgpt")


def diverse_masks(teacher, preset, data, perceptual, count: int, seed: int = 0) -> list[tuple[str, list[int]]]:
    """``(origin, mask)``: the masks of :data:`RULES` on the calibration data, then uniform draws from the space
    until ``count`` distinct masks."""
    import numpy as np

    from pruneseek.sr_problem import sr_search_problem
    from pruneseek.strategies import get_strategy

    problem = sr_search_problem(teacher, data, preset.space, 1, recipes.RECOVERY["batch"], seed, perceptual,
                                topology=preset.topology, k=preset.transfer_k or 1)
    problem.progress = False
    out: dict[tuple, str] = {}
    for name in RULES:
        out.setdefault(tuple(get_strategy(name).search(problem, seed=seed).mask), name)
    rng = np.random.default_rng(seed)
    while len(out) < count:
        out.setdefault(tuple(int(v) for v in preset.space.sample(1, rng)[0]), "random")
    return [(origin, list(mask)) for mask, origin in list(out.items())[:count]]


def _paired_noise(cells: list[dict], metric: str) -> float:
    """The residual standard deviation of ``metric`` around an additive mask + seed model (masks × seeds complete
    only): the run-to-run noise left when masks are compared on the same recovery seeds, as a comparison does."""
    import numpy as np

    masks = sorted({c["mask_index"] for c in cells})
    seeds = sorted({c["seed"] for c in cells})
    table = {(c["mask_index"], c["seed"]): c["metrics"][metric] for c in cells}
    if len(masks) < 2 or len(seeds) < 2 or len(table) != len(masks) * len(seeds):
        return float("nan")
    x = np.array([[table[m, s] for s in seeds] for m in masks])
    residual = x - x.mean(axis=1, keepdims=True) - x.mean(axis=0, keepdims=True) + x.mean()
    return float(np.sqrt((residual ** 2).sum() / ((len(masks) - 1) * (len(seeds) - 1))))


def power(cells: list[dict], metric: str) -> dict[str, Any]:
    """Spread over masks, pooled noise over seeds and their ratio for ``metric`` (see the module docstring); also
    the ratio with the paired noise of :func:`_paired_noise`."""
    by_mask: dict[int, list[float]] = {}
    for c in cells:
        by_mask.setdefault(c["mask_index"], []).append(c["metrics"][metric])
    means = [statistics.fmean(v) for v in by_mask.values()]
    variances = [statistics.variance(v) for v in by_mask.values() if len(v) > 1]
    noise = math.sqrt(statistics.fmean(variances)) if variances else float("nan")
    paired = _paired_noise(cells, metric)
    spread = max(means) - min(means)
    return {"spread": spread, "std_over_masks": statistics.stdev(means) if len(means) > 1 else 0.0,
            "noise_std": noise, "discrimination_ratio": spread / noise if noise > 0 else float("inf"),
            "noise_std_paired": paired, "discrimination_ratio_paired": spread / paired if paired > 0 else float("inf"),
            "masks": len(means), "seeds_per_mask": min(len(v) for v in by_mask.values())}


def _ratio_block(teacher, ratio: float, settings: dict, done: dict, save: Callable, report) -> dict[str, Any]:
    """Masks, zero-shot harm and recovered cells of one ratio (finished cells in ``done`` are reused)."""
    from pruneseek.evaluation import eval_set, evaluate, evaluate_zero_shot
    from pruneseek.experiment.search import resolve_space
    from pruneseek.latents import calibration_latents, select_images, target_pairs
    from pruneseek.losses import perceptual_loss
    from pruneseek.recovery import RecoveryConfig, recover

    preset = resolve_space("tsdsr", ratio, None, teacher.num_layers)
    perceptual, _ = perceptual_loss("gmsd")
    data = calibration_latents(teacher, target_pairs(teacher, select_images("train"), settings["crops"],
                                                     settings["crop_size"], 0), progress=False)
    scored_on = eval_set(teacher, settings["eval_crop"], settings["eval_seeds"], per_image=settings["per_image"])
    block = done.setdefault(f"{ratio:.2g}", {"preset": preset.name, "masks": [], "zero_shot": [], "cells": []})
    if not block["masks"]:
        block["masks"] = [{"origin": o, "kept": [i for i, v in enumerate(m) if v], "mask": m}
                          for o, m in diverse_masks(teacher, preset, data, perceptual, settings["masks"])]
    for i, entry in enumerate(block["masks"]):
        if i >= len(block["zero_shot"]):
            block["zero_shot"].append(evaluate_zero_shot(teacher, entry["mask"], scored_on)["metrics"])
        for seed in settings["seeds"]:
            if any(c["mask_index"] == i and c["seed"] == seed for c in block["cells"]):
                continue
            started = time.perf_counter()
            config = RecoveryConfig(steps=settings["recovery_steps"], seed=seed)
            student, _ = recover(teacher, entry["mask"], data, perceptual, config)
            metrics = evaluate(student, teacher, entry["mask"], scored_on)["metrics"]
            block["cells"].append({"mask_index": i, "seed": seed, "metrics": metrics})
            save()
            report(f"ratio {ratio:.2g} mask {i + 1}/{len(block['masks'])} ({entry['origin']}) seed {seed}: "
                   f"psnr_teacher {metrics['psnr_teacher']:.2f} dB, psnr {metrics['psnr']:.2f} dB "
                   f"({time.perf_counter() - started:.0f} s)")
    block["power"] = {m: power(block["cells"], m) for m in METRICS}
    zero = {m: statistics.fmean(z[m] for z in block["zero_shot"]) for m in METRICS}
    block["zero_shot_mean"] = zero
    return block


def bench_testbed(ratios=(0.33, 0.5, 0.67), masks: int = 8, seeds=(0, 1, 2), out: Path | None = None,
                  quick: bool = False, report: Callable[[str], None] = print) -> dict[str, Any]:
    """Headroom, harm and discrimination of the bundled testbed (see the module docstring); written to ``out``."""
    import json

    from pruneseek.evaluation import eval_teacher
    from pruneseek.io import atomic_write_json
    from pruneseek.targets.load import TargetSource

    e, c = recipes.EVAL, recipes.COMPARE_QUICK if quick else recipes.COMPARE_FULL
    settings = {"ratios": list(ratios), "masks": masks, "seeds": list(seeds), "crops": c["crops"],
                "crop_size": c["crop_size"], "recovery_steps": c["recovery_steps"],
                "recovery": {k: recipes.RECOVERY[k] for k in ("batch", "lr", "schedule", "clip_norm")},
                "eval_crop": 64 if quick else e["crop"], "eval_seeds": list(c["eval_seeds"] if quick else e["seeds"]),
                "per_image": 1 if quick else e["per_image"]}
    source = TargetSource()
    settings["weights_sha256"] = source.weights_fingerprint()
    digest = settings_hash(settings)
    doc: dict[str, Any] = {"format": FORMAT, "settings": settings, "settings_hash": digest, "ratios": {}}
    if out is not None and out.is_file():
        old = json.loads(out.read_text(encoding="utf-8"))
        if old.get("settings_hash") == digest:
            doc["ratios"] = old.get("ratios", {})
            report(f"continuing from {out}")
    teacher = source.load()
    head = eval_teacher(None, settings["eval_crop"], tuple(settings["eval_seeds"]), per_image=settings["per_image"])
    doc["held_out_crops"] = head["crops"]
    doc["held_out_images"] = head["images"]
    doc["degradation"] = head["degradation"]
    doc["teacher_minus_bicubic"] = {m: head["teacher_minus_bicubic"][m] for m in ("psnr", "haarpsi")}
    doc["teacher_mean"], doc["record"] = head["mean"], head["record"].get("command")

    def save() -> None:
        if out is not None:
            atomic_write_json(out, doc)

    for ratio in ratios:
        _ratio_block(teacher, float(ratio), settings, doc["ratios"], save, report)
        save()
    doc["discrimination_ratio"] = {k: {m: b["power"][m]["discrimination_ratio"] for m in METRICS}
                                   for k, b in doc["ratios"].items()}
    save()
    return doc
