"""The majority decision over the masks of several seeds (``pruneseek search --seeds N``; docs/design.md §4.8).

:func:`majority_mask` is pure: 0/1 masks in, one mask of the same space and the per-layer keep frequency out.

The rule. Let ``n_i`` be the number of seeds that kept layer i (its keep frequency is ``n_i / S`` for S seeds).
The decision is a mask of the space with the largest total ``Σ_{i kept} n_i``; every mask of a space keeps the
same number M of layers, so this is the mask of the space that agrees with the seeds on the most (seed, layer)
pairs. In a block space ``Π_j C(B_j, s_j)`` the total splits over the blocks, so each block takes, on its own,
the option (``s_j`` of its ``B_j`` layers) with the highest summed count — its ``s_j`` most often kept layers.
Ties between options of a block go first to the option more seeds chose in that block, then to the lowest option
index (options in lexicographic order of their kept layers, as :class:`~pruneseek.spaces.BlockSpace` numbers
them). The full space C(N, M) is the one-block case: the M most often kept layers, ties to the mask a seed chose
(the one more seeds chose), then to lower layer indices.

In a :class:`~pruneseek.spaces.TransferSpace` (TinySR's transfers) block j keeps ``c_j`` layers for some
reachable count vector c; the decision takes the reachable c with the largest total (each block then keeping its
``c_j`` most often kept layers, ties as above), ties between count vectors going to the one more seeds had, then
to the one nearest the block space (fewest layers moved, ``Σ_j |c_j − s_j|``), then to the lexicographically
smallest c.

Consequences: when all seeds agree the decision is their mask; in a block space, for seed masks of that space, a
layer every seed kept is kept and a layer every seed dropped is dropped; the result never depends on the order of
the seeds.
"""
from __future__ import annotations

import itertools
import math
from collections import Counter
from typing import Sequence

from pruneseek.errors import SpaceError
from pruneseek.spaces import BlockSpace, TransferSpace

#: Count vectors a transfer-space majority may examine before it refuses (the tsdsr presets need 729).
COUNT_VECTOR_LIMIT = 1_000_000


def _check_masks(masks: Sequence[Sequence[int]], num_layers: int) -> list[tuple[int, ...]]:
    if not masks:
        raise SpaceError("a majority needs at least one mask")
    rows = []
    for s, mask in enumerate(masks):
        row = tuple(int(v) for v in mask)
        if len(row) != num_layers:
            raise SpaceError(f"mask {s} has {len(row)} entries; this space has {num_layers} layers")
        if any(v not in (0, 1) for v in row):
            raise SpaceError(f"mask {s} holds values other than 0 (drop) and 1 (keep)")
        rows.append(row)
    return rows


def _block_choice(counts: Sequence[int], choices: Sequence[tuple[int, ...]], keep: int) -> tuple[int, ...]:
    """The ``keep`` positions (sorted) of one block with the largest summed count; ties: the choice more seeds
    made (``choices``: each seed's kept positions in this block), then the lexicographically smallest."""
    ranked = sorted(range(len(counts)), key=lambda i: (-counts[i], i))
    lowest = tuple(sorted(ranked[:keep]))
    best = sum(counts[i] for i in lowest)
    made = Counter(c for c in choices if len(c) == keep and sum(counts[i] for i in c) == best)
    if not made:
        return lowest
    return min(made, key=lambda c: (-made[c], c))


def _top_sum(counts: Sequence[int], keep: int) -> int:
    return sum(sorted(counts, reverse=True)[:keep])


def _count_vectors(space: TransferSpace) -> list[tuple[int, ...]]:
    """Every per-block kept-count vector the transfer space reaches."""
    blocks = space.space.blocks
    degree = dict(space.graph.degree)
    ranges = [range(max(0, b.keep - space.k * degree[j]), min(b.size, b.keep + space.k * degree[j]) + 1)
              for j, b in enumerate(blocks)]
    total = math.prod(len(r) for r in ranges)
    if total > COUNT_VECTOR_LIMIT:
        raise SpaceError(f"a majority in this transfer space would examine {total:,} count vectors, more than "
                         f"{COUNT_VECTOR_LIMIT:,}; use a smaller transfer k or fewer blocks")
    wanted = space.space.num_kept
    found = []
    for counts in itertools.product(*ranges):
        if sum(counts) != wanted:
            continue
        probe = [0] * space.space.num_layers
        for b, c in zip(blocks, counts):
            probe[b.start : b.start + c] = [1] * c
        if space.contains(probe):
            found.append(tuple(counts))
    return found


def majority_mask(masks: Sequence[Sequence[int]], space: BlockSpace | TransferSpace
                  ) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """``(mask, keep_frequency)``: the majority decision of ``masks`` (one 0/1 mask per seed) in ``space``, and
    per layer the fraction of the masks that keep it. See the module docstring for the rule and its ties.

    The masks need not lie in ``space`` (the frequencies are counted whatever they are); the decision always
    does, and keeps exactly the space's M layers (a block space or the full space ``BlockSpace.full(N, M)``).
    """
    block_space = space.space if isinstance(space, TransferSpace) else space
    rows = _check_masks(masks, block_space.num_layers)
    counts = [sum(col) for col in zip(*rows)]
    frequency = tuple(c / len(rows) for c in counts)
    blocks = block_space.blocks
    if isinstance(space, TransferSpace) and space.k > 0:
        seed_counts = Counter(tuple(sum(r[b.start : b.stop]) for b in blocks) for r in rows)
        candidates = _count_vectors(space)
        keep = [b.keep for b in blocks]

        def order(c: tuple[int, ...]):
            total = sum(_top_sum(counts[b.start : b.stop], cj) for b, cj in zip(blocks, c))
            return (-total, -seed_counts[c], sum(abs(a - s) for a, s in zip(c, keep)), c)

        target = min(candidates, key=order)
    else:
        target = tuple(b.keep for b in blocks)
    mask = [0] * block_space.num_layers
    for b, keep in zip(blocks, target):
        choices = [tuple(i for i, v in enumerate(r[b.start : b.stop]) if v) for r in rows]
        for i in _block_choice(counts[b.start : b.stop], choices, keep):
            mask[b.start + i] = 1
    return tuple(mask), frequency


def agreement(masks: Sequence[Sequence[int]]) -> tuple[list[int], list[int]]:
    """``(kept by all, dropped by all)``: the layers on which every mask agrees, as sorted index lists."""
    rows = _check_masks(masks, len(masks[0]) if masks else 0)
    kept = [i for i, col in enumerate(zip(*rows)) if all(col)]
    dropped = [i for i, col in enumerate(zip(*rows)) if not any(col)]
    return kept, dropped


__all__ = ["agreement", "majority_mask"]
