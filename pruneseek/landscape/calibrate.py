"""A calibrated landscape measured on a real model: tsdsr-mini's drop-one and drop-two loss changes.

The calibration loss of a hard mask m is the search loss with no training (docs/design.md §4): over the
calibration crops, mean |z_stu(m) − z_tea| + mean GMSD(decode(z_stu(m)), x_HR), where z_stu(m) is the
teacher run with the dropped blocks skipped. Measuring L(full), the N drop-one and the N(N−1)/2 drop-two
losses gives the second-order landscape of :func:`~pruneseek.landscape.calibrated`; the searches are
then run on it and scored against its exact optimum, and the true loss of the chosen masks is measured
on the model too (the quadratic is an approximation; its optimum need not be the model's).
"""
from __future__ import annotations

import itertools
import time
from typing import Any

import numpy as np
import torch

from pruneseek.metrics import gmsd


def calibration_loss(target, data: dict[str, torch.Tensor], masks: np.ndarray, batch: int = 64) -> np.ndarray:
    """L(m) for each hard mask (rows of ``masks``), averaged over the calibration crops."""
    out = []
    n = data["z_lr"].shape[0]
    with torch.no_grad():
        for mask in np.atleast_2d(masks):
            total = 0.0
            for lo in range(0, n, batch):
                z = data["z_lr"][lo : lo + batch]
                m = torch.as_tensor(mask, dtype=torch.float32).expand(z.shape[0], -1)
                z_stu = target.sr_latent(z, m, mode="skip")
                l1 = (z_stu - data["z_tea"][lo : lo + batch]).abs().mean(dim=(1, 2, 3))
                perc = gmsd((target.decode(z_stu) + 1) / 2, data["hr"][lo : lo + batch])
                total += float((l1 + perc).sum())
            out.append(total / n)
    return np.array(out)


def measure(target, data: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Drop-one and drop-two loss changes of ``target`` (N + N(N−1)/2 + 1 evaluations)."""
    started = time.perf_counter()
    n = target.num_layers
    full = np.ones(n, dtype=np.int64)
    base = float(calibration_loss(target, data, full[None])[0])
    ones = np.ones((n, n), dtype=np.int64) - np.eye(n, dtype=np.int64)
    drop_one = calibration_loss(target, data, ones) - base
    pairs = list(itertools.combinations(range(n), 2))
    masks = np.ones((len(pairs), n), dtype=np.int64)
    for row, (i, j) in enumerate(pairs):
        masks[row, [i, j]] = 0
    values = calibration_loss(target, data, masks) - base
    drop_two = np.zeros((n, n))
    for (i, j), v in zip(pairs, values):
        drop_two[i, j] = drop_two[j, i] = v
    return {"base_loss": base, "drop_one": drop_one.tolist(), "drop_two": drop_two.tolist(),
            "evaluations": 1 + n + len(pairs), "seconds": time.perf_counter() - started}
