"""Block-factored search spaces over depth-pruning masks (docs/design.md §3, TinySR §3.1).

N layers are split into K consecutive blocks; block j has ``B_j`` layers of which exactly ``s_j`` are
kept. The valid space has ``Π_j C(B_j, s_j)`` masks; the full space, ``C(N, M)`` with ``M = Σ s_j``,
is the special case of a single block ``(N, M)``.

A block's *options* are its ``C(B, s)`` keep-vectors in lexicographic order of the kept index tuple,
the order ``itertools.combinations(range(B), s)`` yields. A mask's *rank* is its tuple of per-block
option indices; its *flat index* reads that tuple as a mixed-radix number with block 0 most
significant, so flat order is the order of ``itertools.product`` over the blocks' options.

All counting is exact integer arithmetic (``math.comb``, ``fractions.Fraction``).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator, Sequence

import numpy as np

from pruneseek.errors import SpaceError

#: Enumeration refuses spaces with more masks than this unless a larger ``limit`` is passed.
ENUMERATION_LIMIT = 5_000_000
#: Option tables are built only for blocks with at most this many options.
OPTION_TABLE_LIMIT = 1_000_000


def combination_rank(kept: Sequence[int], size: int) -> int:
    """Lexicographic rank of the sorted index tuple ``kept`` among all ``C(size, len(kept))`` tuples."""
    s = len(kept)
    rank, previous = 0, -1
    for i, c in enumerate(kept):
        for v in range(previous + 1, c):
            rank += math.comb(size - 1 - v, s - 1 - i)
        previous = c
    return rank


def combination_unrank(rank: int, size: int, keep: int) -> tuple[int, ...]:
    """Inverse of :func:`combination_rank`: the ``rank``-th tuple of ``combinations(range(size), keep)``."""
    total = math.comb(size, keep)
    if not 0 <= rank < total:
        raise SpaceError(f"option index {rank} is out of range for a block choosing {keep} of {size} (0..{total - 1})")
    kept, v = [], 0
    for i in range(keep):
        while True:
            count = math.comb(size - 1 - v, keep - 1 - i)
            if rank < count:
                kept.append(v)
                v += 1
                break
            rank -= count
            v += 1
    return tuple(kept)


@dataclass(frozen=True)
class Block:
    """``size`` consecutive layers starting at ``start``, of which exactly ``keep`` are kept."""

    start: int
    size: int
    keep: int

    @property
    def num_options(self) -> int:
        return math.comb(self.size, self.keep)

    @property
    def stop(self) -> int:
        return self.start + self.size


class BlockSpace:
    """The block-factored space of masks for blocks ``[(B_0, s_0), (B_1, s_1), ...]`` tiling 0..N−1."""

    def __init__(self, blocks: Sequence[tuple[int, int]]):
        blocks = [tuple(b) for b in blocks]
        if not blocks:
            raise SpaceError("a search space needs at least one block; give blocks as (size, keep) pairs")
        parsed, start = [], 0
        for j, pair in enumerate(blocks):
            if len(pair) != 2:
                raise SpaceError(f"block {j}: expected a (size, keep) pair, got {pair!r}")
            size, keep = pair
            if isinstance(size, bool) or isinstance(keep, bool) or not isinstance(size, int) or not isinstance(keep, int):
                raise SpaceError(f"block {j}: size and keep must be integers, got ({size!r}, {keep!r})")
            if size < 1:
                raise SpaceError(f"block {j}: size must be at least 1, got {size}")
            if not 0 <= keep <= size:
                raise SpaceError(f"block {j}: keep must lie in 0..{size} (the block's size), got {keep}")
            parsed.append(Block(start, size, keep))
            start += size
        self.blocks: tuple[Block, ...] = tuple(parsed)

    # ----- construction helpers -------------------------------------------------------------
    @classmethod
    def uniform(cls, layers: int, block: int, keep: int) -> "BlockSpace":
        """``layers / block`` equal blocks of ``block`` layers, each keeping ``keep``."""
        for name, value in (("layers", layers), ("block", block)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SpaceError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(keep, int) or isinstance(keep, bool) or keep < 0:
            raise SpaceError(f"keep must be a non-negative integer, got {keep!r}")
        if layers % block:
            divisors = [d for d in range(1, layers + 1) if layers % d == 0]
            raise SpaceError(
                f"block size {block} does not divide {layers} layers; choose a block size from {divisors} "
                "or give uneven blocks explicitly"
            )
        if keep > block:
            raise SpaceError(f"cannot keep {keep} layers of a block of {block}; keep must lie in 0..{block}")
        return cls([(block, keep)] * (layers // block))

    @classmethod
    def full(cls, layers: int, keep: int) -> "BlockSpace":
        """The full space C(layers, keep): one block spanning every layer."""
        return cls([(layers, keep)])

    # ----- sizes ------------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return self.blocks[-1].stop

    @property
    def num_kept(self) -> int:
        return sum(b.keep for b in self.blocks)

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def shape(self) -> list[tuple[int, int]]:
        return [(b.size, b.keep) for b in self.blocks]

    @property
    def is_uniform(self) -> bool:
        return len({(b.size, b.keep) for b in self.blocks}) == 1

    @property
    def ratio(self) -> Fraction:
        """Fraction of layers removed."""
        return Fraction(self.num_layers - self.num_kept, self.num_layers)

    def size(self) -> int:
        """|M_valid| = Π_j C(B_j, s_j)."""
        return math.prod(b.num_options for b in self.blocks)

    def full_size(self) -> int:
        """|M_full| = C(N, M)."""
        return math.comb(self.num_layers, self.num_kept)

    def fraction(self) -> Fraction:
        """Accessible fraction |M_valid| / |M_full|, exact."""
        return Fraction(self.size(), self.full_size())

    def full_space(self) -> "BlockSpace":
        return BlockSpace.full(self.num_layers, self.num_kept)

    def describe(self) -> str:
        if self.is_uniform:
            b = self.blocks[0]
            shape = f"{self.num_blocks} × ({b.size} keep {b.keep})"
        else:
            shape = " + ".join(f"({b.size} keep {b.keep})" for b in self.blocks)
        return f"{self.num_layers} layers as {shape} → {self.num_kept} kept"

    def __repr__(self) -> str:
        return f"BlockSpace({self.shape})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BlockSpace) and self.shape == other.shape

    def __hash__(self) -> int:
        return hash(tuple(self.shape))

    # ----- options, rank and unrank -------------------------------------------------------------
    def options(self, j: int) -> np.ndarray:
        """Block j's options as a ``(C(B_j, s_j), B_j)`` 0/1 array, in lexicographic order."""
        b = self.blocks[j]
        if b.num_options > OPTION_TABLE_LIMIT:
            raise SpaceError(
                f"block {j} has {b.num_options:,} options, more than the {OPTION_TABLE_LIMIT:,} an option table "
                "holds; use rank/unrank instead"
            )
        table = np.zeros((b.num_options, b.size), dtype=np.uint8)
        for row, kept in enumerate(itertools.combinations(range(b.size), b.keep)):
            table[row, list(kept)] = 1
        return table

    def _as_mask(self, mask: Sequence[int] | np.ndarray) -> np.ndarray:
        m = np.asarray(mask)
        if m.ndim != 1 or m.shape[0] != self.num_layers:
            raise SpaceError(f"a mask for this space has {self.num_layers} entries, got shape {tuple(m.shape)}")
        if not np.isin(m, (0, 1)).all():
            raise SpaceError("a mask holds only 0 (drop) and 1 (keep)")
        return m.astype(np.uint8)

    def block_counts(self, mask: Sequence[int] | np.ndarray) -> list[int]:
        """Kept layers per block."""
        m = self._as_mask(mask)
        return [int(m[b.start : b.stop].sum()) for b in self.blocks]

    def contains(self, mask: Sequence[int] | np.ndarray) -> bool:
        """True when the mask keeps exactly s_j layers in every block j."""
        try:
            counts = self.block_counts(mask)
        except SpaceError:
            return False
        return all(c == b.keep for c, b in zip(counts, self.blocks))

    def rank(self, mask: Sequence[int] | np.ndarray) -> tuple[int, ...]:
        """Per-block option indices of a valid mask."""
        m = self._as_mask(mask)
        if not self.contains(m):
            raise SpaceError(
                f"mask keeps {self.block_counts(m)} layers per block; this space keeps {[b.keep for b in self.blocks]}"
            )
        return tuple(
            combination_rank(np.flatnonzero(m[b.start : b.stop]).tolist(), b.size) for b in self.blocks
        )

    def unrank(self, option_indices: Sequence[int]) -> np.ndarray:
        """The mask whose block j takes option ``option_indices[j]``."""
        if len(option_indices) != self.num_blocks:
            raise SpaceError(f"expected {self.num_blocks} option indices (one per block), got {len(option_indices)}")
        mask = np.zeros(self.num_layers, dtype=np.uint8)
        for b, r in zip(self.blocks, option_indices):
            kept = combination_unrank(int(r), b.size, b.keep)
            mask[[b.start + i for i in kept]] = 1
        return mask

    def flat_index(self, mask: Sequence[int] | np.ndarray) -> int:
        """Mixed-radix index of a valid mask in 0..size()−1 (block 0 most significant)."""
        index = 0
        for b, r in zip(self.blocks, self.rank(mask)):
            index = index * b.num_options + r
        return index

    def from_flat_index(self, index: int) -> np.ndarray:
        """Inverse of :meth:`flat_index`."""
        total = self.size()
        if not 0 <= index < total:
            raise SpaceError(f"flat index {index} is out of range 0..{total - 1}")
        digits = []
        for b in reversed(self.blocks):
            index, r = divmod(index, b.num_options)
            digits.append(r)
        return self.unrank(digits[::-1])

    # ----- sampling and enumeration ---------------------------------------------------------------
    def sample(self, n: int, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """``n`` masks drawn uniformly and independently from the valid space, as an ``(n, N)`` uint8 array.

        Uniform over the product space because each block draws a uniform subset independently.
        """
        if n < 0:
            raise SpaceError(f"cannot draw a negative number of samples ({n})")
        rng = np.random.default_rng(rng)
        masks = np.zeros((n, self.num_layers), dtype=np.uint8)
        rows = np.arange(n)[:, None]
        for b in self.blocks:
            if b.keep == 0:
                continue
            order = np.argsort(rng.random((n, b.size)), axis=1)[:, : b.keep]
            masks[rows, b.start + order] = 1
        return masks

    def iter_chunks(self, chunk: int = 65_536) -> Iterator[np.ndarray]:
        """All valid masks in flat-index order, ``chunk`` rows at a time (for spaces too large to hold)."""
        tables = [self.options(j) for j in range(self.num_blocks)]
        radices = [t.shape[0] for t in tables]
        total = self.size()
        for lo in range(0, total, chunk):
            flat = np.arange(lo, min(lo + chunk, total), dtype=np.int64)
            digits = np.unravel_index(flat, radices)
            yield np.concatenate([t[d] for t, d in zip(tables, digits)], axis=1)

    def enumerate(self, limit: int = ENUMERATION_LIMIT) -> np.ndarray:
        """Every valid mask, in flat-index order, as a ``(size, N)`` uint8 array.

        Refuses spaces larger than ``limit`` masks: use :meth:`iter_chunks` or :meth:`sample` there.
        """
        total = self.size()
        if total > limit:
            raise SpaceError(
                f"this space has {total:,} masks, more than the enumeration limit of {limit:,}; "
                "sample from it, iterate it in chunks, or pass a larger limit"
            )
        chunks = list(self.iter_chunks(chunk=max(total, 1)))
        return chunks[0] if chunks else np.zeros((0, self.num_layers), dtype=np.uint8)
