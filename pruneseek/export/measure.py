"""Parameters, MACs and latency of model variants, measured side by side.

MACs come from torch's own FLOP counter (``torch.utils.flop_counter.FlopCounterMode``, which counts
matmuls, convolutions and attention at the ATen level: one multiply-accumulate = 2 FLOPs), not from a
hand model of the architecture. Latency: the variants are timed in interleaved rounds (each round times
every variant once), so machine noise hits all of them alike, and the median per variant is reported.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, Mapping

import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(fn: Callable[[], object]) -> int:
    """Multiply-accumulates of one call of ``fn`` (torch's FLOP counter ÷ 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops()) // 2


def _sync(device: torch.device | str | None) -> None:
    if device is not None and str(device).startswith("cuda"):
        torch.cuda.synchronize()


def interleaved_latency(
    fns: Mapping[str, Callable[[], object]], rounds: int = 5, warmup: int = 1, device: str | None = None
) -> dict[str, dict[str, float]]:
    """Median and spread of each variant's call time (seconds), variants interleaved per round."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    with torch.no_grad():
        for _ in range(warmup):
            for fn in fns.values():
                fn()
        for _ in range(rounds):
            for name, fn in fns.items():
                _sync(device)
                start = time.perf_counter()
                fn()
                _sync(device)
                times[name].append(time.perf_counter() - start)
    return {
        name: {"median_s": statistics.median(t), "min_s": min(t), "max_s": max(t), "rounds": len(t)}
        for name, t in times.items()
    }
