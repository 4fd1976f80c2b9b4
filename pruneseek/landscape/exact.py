"""Exact optimum and full ranking of a quadratic landscape over all C(N, M) masks (docs/design.md §3).

Enumeration splits the layers into a left half (L = ⌊N/2⌋ layers) and a right half (R = N − L). A mask
with c kept layers on the left is a pair (left subset of size c, right subset of size M − c), and

    f(m) = f_L(m_L) + f_R(m_R) + m_Lᵀ W_LR m_R                      (W_LR = W[:L, L:])

so all C(L, c)·C(R, M − c) values of *sector* c are one outer sum plus one small matrix product. Every
C(N, M) value is computed with vectorised numpy and no per-mask Python work: C(24, 12) = 2,704,156
masks take tens of milliseconds. Sector c holds indices ``offset_c + i_L · n_R + i_R`` with both halves in
``itertools.combinations`` (lexicographic) order; :meth:`Enumeration.mask` and
:meth:`Enumeration.index_of` convert between an index and a mask, :meth:`Enumeration.iter_masks`
materialises the masks in index order, chunk by chunk.
"""
from __future__ import annotations

import functools
import itertools
import math
from typing import Iterator

import numpy as np

from pruneseek.landscape.landscapes import LandscapeError, QuadraticLandscape
from pruneseek.spaces import BlockSpace, TransferSpace, combination_rank

#: Refuse to enumerate more masks than this (the values alone take 8 bytes each).
EXACT_LIMIT = 50_000_000


def combination_table(n: int, r: int) -> np.ndarray:
    """All r-subsets of range(n) as a ``(C(n, r), n)`` uint8 array, in ``itertools.combinations`` order."""
    table = np.zeros((math.comb(n, r), n), dtype=np.uint8)
    if r == 0 or n == 0:
        return table
    # Build column by column: lexicographic order = the order of the sorted index tuples.
    idx = np.array(list(itertools.combinations(range(n), r)), dtype=np.int64).reshape(-1, r)
    table[np.arange(idx.shape[0])[:, None], idx] = 1
    return table


class Enumeration:
    """All masks of N layers keeping M, enumerated by meet-in-the-middle sectors (see module docstring)."""

    def __init__(self, num_layers: int, num_kept: int, limit: int = EXACT_LIMIT):
        if not 0 <= num_kept <= num_layers or num_layers < 1:
            raise LandscapeError(f"cannot keep {num_kept} of {num_layers} layers")
        total = math.comb(num_layers, num_kept)
        if total > limit:
            raise LandscapeError(
                f"exact enumeration of C({num_layers}, {num_kept}) = {total:,} masks exceeds the limit of {limit:,}; "
                "use fewer layers for exact landscape studies"
            )
        self.num_layers, self.num_kept, self.size = num_layers, num_kept, total
        self.left = num_layers // 2
        self.right = num_layers - self.left
        self.sectors: list[tuple[int, np.ndarray, np.ndarray]] = []  # (c, left table, right table)
        offsets = [0]
        for c in range(max(0, num_kept - self.right), min(self.left, num_kept) + 1):
            lt, rt = combination_table(self.left, c), combination_table(self.right, num_kept - c)
            self.sectors.append((c, lt, rt))
            offsets.append(offsets[-1] + lt.shape[0] * rt.shape[0])
        self.offsets = np.array(offsets, dtype=np.int64)
        self._sector_of_c = {c: s for s, (c, _, _) in enumerate(self.sectors)}
        self._membership: dict = {}

    @staticmethod
    @functools.lru_cache(maxsize=4)
    def cached(num_layers: int, num_kept: int) -> "Enumeration":
        """A shared enumeration for (N, M) (the tables are built once per process)."""
        return Enumeration(num_layers, num_kept)

    # ----- values ---------------------------------------------------------------------------------
    def values(self, landscape: QuadraticLandscape) -> np.ndarray:
        """f of every mask, in index order, as a float64 array of length C(N, M)."""
        if landscape.num_layers != self.num_layers:
            raise LandscapeError(f"landscape has {landscape.num_layers} layers, enumeration {self.num_layers}")
        L = self.left
        a, W = landscape.a, landscape.W
        aL, aR, WLL, WRR, WLR = a[:L], a[L:], W[:L, :L], W[L:, L:], W[:L, L:]
        out = np.empty(self.size, dtype=np.float64)
        for s, (_, lt, rt) in enumerate(self.sectors):
            ml, mr = lt.astype(np.float64), rt.astype(np.float64)
            fl = ml @ aL + np.einsum("ni,ni->n", ml @ WLL, ml)
            fr = mr @ aR + np.einsum("ni,ni->n", mr @ WRR, mr)
            block = (ml @ WLR) @ mr.T
            block += fl[:, None]
            block += fr[None, :]
            out[self.offsets[s]:self.offsets[s + 1]] = block.ravel()
        out += landscape.c
        return out

    # ----- masks <-> indices ----------------------------------------------------------------------
    def mask(self, index: int) -> np.ndarray:
        """The mask at ``index`` (uint8, length N)."""
        if not 0 <= index < self.size:
            raise LandscapeError(f"index {index} is out of range 0..{self.size - 1}")
        s = int(np.searchsorted(self.offsets, index, side="right")) - 1
        _, lt, rt = self.sectors[s]
        il, ir = divmod(int(index - self.offsets[s]), rt.shape[0])
        return np.concatenate([lt[il], rt[ir]])

    def index_of(self, mask) -> int:
        """Inverse of :meth:`mask`."""
        m = np.asarray(mask).astype(np.int64)
        if m.shape != (self.num_layers,) or not np.isin(m, (0, 1)).all() or m.sum() != self.num_kept:
            raise LandscapeError(f"expected a 0/1 mask of {self.num_layers} layers keeping {self.num_kept}")
        ml, mr = m[: self.left], m[self.left:]
        c = int(ml.sum())
        s = self._sector_of_c[c]
        rt = self.sectors[s][2]
        rl = combination_rank(np.flatnonzero(ml).tolist(), self.left)
        rr = combination_rank(np.flatnonzero(mr).tolist(), self.right)
        return int(self.offsets[s] + rl * rt.shape[0] + rr)

    def iter_masks(self, chunk: int = 262_144) -> Iterator[np.ndarray]:
        """Every mask in index order as ``(rows, N)`` uint8 arrays of at most about ``chunk`` rows."""
        for _, lt, rt in self.sectors:
            nr = rt.shape[0]
            step = max(1, chunk // max(nr, 1))
            for lo in range(0, lt.shape[0], step):
                left = lt[lo:lo + step]
                yield np.concatenate([np.repeat(left, nr, axis=0), np.tile(rt, (left.shape[0], 1))], axis=1)

    # ----- subspace membership --------------------------------------------------------------------
    def _owner(self, space: BlockSpace) -> np.ndarray:
        if space.num_layers != self.num_layers or space.num_kept != self.num_kept:
            raise LandscapeError(f"{space!r} does not match an enumeration of C({self.num_layers}, {self.num_kept})")
        owner = np.zeros((self.num_layers, space.num_blocks), dtype=np.int64)
        for j, b in enumerate(space.blocks):
            owner[b.start:b.stop, j] = 1
        return owner

    def block_counts(self, space: BlockSpace) -> np.ndarray:
        """Kept layers per block of every mask, ``(C(N, M), K)`` int8, in index order."""
        owner = self._owner(space)
        K = space.num_blocks
        out = np.empty((self.size, K), dtype=np.int8)
        for s, (_, lt, rt) in enumerate(self.sectors):
            cl = lt.astype(np.int64) @ owner[: self.left]
            cr = rt.astype(np.int64) @ owner[self.left:]
            out[self.offsets[s]:self.offsets[s + 1]] = (cl[:, None, :] + cr[None, :, :]).reshape(-1, K)
        return out

    def _count_codes(self, space: BlockSpace) -> np.ndarray:
        """Every mask's per-block count vector as one mixed-radix int64 code (radix B_j + 1)."""
        owner = self._owner(space)
        radix = np.cumprod([1] + [b.size + 1 for b in space.blocks[:-1]]).astype(np.int64)
        weight = owner @ radix  # layer -> the radix of its block; a code is linear in the mask
        out = np.empty(self.size, dtype=np.int64)
        for s, (_, lt, rt) in enumerate(self.sectors):
            cl = lt.astype(np.int64) @ weight[: self.left]
            cr = rt.astype(np.int64) @ weight[self.left:]
            out[self.offsets[s]:self.offsets[s + 1]] = (cl[:, None] + cr[None, :]).ravel()
        return out

    def membership(self, subspace: BlockSpace | TransferSpace) -> np.ndarray:
        """Boolean array over all masks: which lie in the block space, or in the transfer-reachable space."""
        space = subspace.space if isinstance(subspace, TransferSpace) else subspace
        key = (tuple(space.shape),) + ((subspace.k, tuple(sorted(map(tuple, map(sorted, subspace.graph.edges)))))
                                        if isinstance(subspace, TransferSpace) else ())
        if key not in self._membership:
            codes = self._count_codes(space)
            unique, inverse = np.unique(codes, return_inverse=True)
            vectors, rest = [], unique.copy()
            for b in space.blocks:
                rest, digit = np.divmod(rest, b.size + 1)
                vectors.append(digit)
            vectors = np.stack(vectors, axis=1)
            keep = np.array([b.keep for b in space.blocks])
            if isinstance(subspace, TransferSpace):
                ok = np.array([_counts_reachable(subspace, v) for v in vectors], dtype=bool)
            else:
                ok = (vectors == keep).all(axis=1)
            self._membership[key] = ok[inverse.ravel()]
        return self._membership[key]


def _counts_reachable(transfer: TransferSpace, counts: np.ndarray) -> bool:
    """Whether per-block kept counts are transfer-reachable (every arrangement inside a block is)."""
    mask = np.zeros(transfer.space.num_layers, dtype=np.uint8)
    for b, c in zip(transfer.space.blocks, counts):
        mask[b.start:b.start + int(c)] = 1
    return transfer.contains(mask)


class ExactSolution:
    """The exact optimum and ranking of a landscape over all C(N, M) masks.

    ``percentile(mask)`` is the fraction of all masks that are strictly better than ``mask`` (0 for the
    optimum). Values within ``tol`` are ties. Subspace optima (block-factored and transfer-reachable)
    are available when the space was given.
    """

    def __init__(self, landscape: QuadraticLandscape, enumeration: Enumeration, space: BlockSpace | None = None,
                 transfer: TransferSpace | None = None):
        self.landscape, self.enumeration = landscape, enumeration
        self.values = enumeration.values(landscape)
        self.size = enumeration.size
        self.index = int(np.argmin(self.values))
        self.value = float(self.values[self.index])
        self.optimum = enumeration.mask(self.index)
        self.tol = 1e-9 * (1.0 + float(np.abs(self.values).max()))
        self._sorted: np.ndarray | None = None
        second = np.partition(self.values, 1)[1] if self.size > 1 else math.inf
        #: f(runner-up) − f(optimum) over the full space.
        self.gap = float(second - self.value)
        self.unique = self.gap > self.tol
        self.block_optimum = self.block_value = None
        self.transfer_optimum = self.transfer_value = None
        if space is not None:
            self.block_optimum, self.block_value = self._best_in(enumeration.membership(space))
        if transfer is not None:
            self.transfer_optimum, self.transfer_value = self._best_in(enumeration.membership(transfer))

    def _best_in(self, member: np.ndarray) -> tuple[np.ndarray, float]:
        where = np.flatnonzero(member)
        i = int(where[np.argmin(self.values[where])])
        return self.enumeration.mask(i), float(self.values[i])

    def _check(self, masks) -> np.ndarray:
        m = np.atleast_2d(np.asarray(masks))
        if m.shape[1] != self.enumeration.num_layers or (m.sum(axis=1) != self.enumeration.num_kept).any():
            raise LandscapeError(
                f"masks must have {self.enumeration.num_layers} entries and keep exactly {self.enumeration.num_kept}"
            )
        return m

    def evaluate(self, masks) -> np.ndarray:
        return np.atleast_1d(self.landscape.evaluate(self._check(masks)))

    def regret(self, masks) -> np.ndarray:
        """f(mask) − f(optimum), ≥ 0 (up to rounding)."""
        return self.evaluate(masks) - self.value

    def is_optimal(self, masks) -> np.ndarray:
        return self.regret(masks) <= self.tol

    def percentile(self, masks) -> np.ndarray:
        """Fraction of all C(N, M) masks strictly better than each mask (0 = the optimum)."""
        v = self.evaluate(masks) - self.tol
        if len(v) > 16:
            if self._sorted is None:
                self._sorted = np.sort(self.values)
            return np.searchsorted(self._sorted, v, side="left") / self.size
        return np.array([np.count_nonzero(self.values < x) for x in v], dtype=np.float64) / self.size


def solve(landscape: QuadraticLandscape, space: BlockSpace | None = None, transfer: TransferSpace | None = None,
          enumeration: Enumeration | None = None) -> ExactSolution:
    """Exact optimum over C(N, M) (M from ``space``, else from the planted mask in ``landscape.meta``)."""
    if enumeration is None:
        if space is None and transfer is None:
            raise LandscapeError("give the search space (it fixes the number of kept layers M)")
        base = space if space is not None else transfer.space
        enumeration = Enumeration.cached(base.num_layers, base.num_kept)
    return ExactSolution(landscape, enumeration, space, transfer)
