"""Deterministic one-shot and greedy baselines on a landscape (docs/design.md §6), in numpy.

- ``sensitivity``: drop-one deltas Δ_i = f(1 − e_i) − f(1) measured once from the full mask; in every
  block remove the B_j − s_j least sensitive layers (smallest Δ), so the result lies in the block space.
- ``sensitivity-greedy``: the same rule re-measured after every removal: from the current mask, drop the
  layer whose removal raises f least, among blocks that still keep more than s_j; until all blocks keep s_j.
- ``shortgpt``: a one-shot global ranking by the per-layer score a_i (the landscape's linear term, the
  analogue of a per-layer importance score such as Block Influence): keep the M layers with the lowest
  a_i, whatever block they are in (ShortGPT removes layers globally, with no block constraint).

Ties are broken towards the lower layer index (a stable sort).
"""
from __future__ import annotations

import numpy as np

from pruneseek.landscape.landscapes import QuadraticLandscape
from pruneseek.spaces import BlockSpace

BASELINES = ("sensitivity", "sensitivity-greedy", "shortgpt")


def sensitivity(landscape: QuadraticLandscape, space: BlockSpace) -> np.ndarray:
    """One-shot drop-one sensitivity from the full mask, honouring the block space."""
    delta = landscape.drop_one()
    mask = np.zeros(space.num_layers, dtype=np.uint8)
    for b in space.blocks:
        order = np.argsort(-delta[b.start:b.stop], kind="stable")  # most sensitive first
        mask[b.start + order[: b.keep]] = 1
    return mask


def sensitivity_greedy(landscape: QuadraticLandscape, space: BlockSpace) -> np.ndarray:
    """Greedy removal by re-measured drop-one deltas, honouring the block space."""
    mask = np.ones(space.num_layers, dtype=np.float64)
    S = landscape.symmetric
    owner = np.zeros(space.num_layers, dtype=np.int64)
    for j, b in enumerate(space.blocks):
        owner[b.start:b.stop] = j
    keep = np.array([b.keep for b in space.blocks])
    counts = np.array([b.size for b in space.blocks])
    for _ in range(space.num_layers - space.num_kept):
        # f(m − e_i) − f(m) = −(a_i + Σ_j S_ij m_j) for a kept layer i
        delta = -(landscape.a + S @ mask)
        allowed = (mask > 0.5) & (counts[owner] > keep[owner])
        i = int(np.flatnonzero(allowed)[np.argmin(delta[allowed])])
        mask[i] = 0.0
        counts[owner[i]] -= 1
    return mask.astype(np.uint8)


def shortgpt(landscape: QuadraticLandscape, space: BlockSpace) -> np.ndarray:
    """Keep the M layers of lowest per-layer score a_i (global, one shot)."""
    order = np.argsort(landscape.a, kind="stable")
    mask = np.zeros(space.num_layers, dtype=np.uint8)
    mask[order[: space.num_kept]] = 1
    return mask


def run_baseline(name: str, landscape: QuadraticLandscape, space: BlockSpace) -> np.ndarray:
    return {"sensitivity": sensitivity, "sensitivity-greedy": sensitivity_greedy, "shortgpt": shortgpt}[name](
        landscape, space
    )
