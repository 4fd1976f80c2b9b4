"""Plain numpy/Python reference implementations of the TinySR rules (docs/design.md §5), written from the text.

Loop-based and float64, independent of the vectorised JAX code in :mod:`pruneseek.landscape.search_jax`
(which the tests check against these): per-layer marginals, the candidate masks [m⁻, m, m⁺] of each pair
under both candidate rules, and the TinySR decision.
"""
from __future__ import annotations

import numpy as np

from pruneseek.spaces import BlockSpace, TransferSpace


def softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max())
    return e / e.sum()


def block_probs(theta, space: BlockSpace, scaling: float) -> list[np.ndarray]:
    """p_j = softmax(θ_j · scaling) over block j's options (θ rows may be padded; padding is ignored)."""
    return [softmax(np.asarray(theta[j][: b.num_options]) * scaling) for j, b in enumerate(space.blocks)]


def marginals(theta, space: BlockSpace, scaling: float) -> np.ndarray:
    """π_i = Σ_{o: o_i = 1} p_j(o) for layer i of block j (TinySR eq. 7)."""
    pi = np.zeros(space.num_layers)
    for j, (b, p) in enumerate(zip(space.blocks, block_probs(theta, space, scaling))):
        options = space.options(j)
        for o in range(options.shape[0]):
            for i in range(b.size):
                if options[o, i]:
                    pi[b.start + i] += p[o]
    return pi


def _order(values, layers, descending: bool) -> list[int]:
    """Layers sorted by value (ties: lower index first)."""
    return sorted(layers, key=lambda i: (-values[i] if descending else values[i], i))


_KEPT, _DROPPED = 1, 0


def _flip(mask, b, k: int, pi, value: int):
    """Flip ``k`` layers of block ``b`` that hold ``value`` in ``mask``; None when fewer than ``k`` do.

    ``value`` _KEPT corrodes the block (drops its ``k`` kept layers of lowest π); _DROPPED expands it
    (keeps its ``k`` dropped layers of highest π). Ties: lower index first.
    """
    found = [i for i in range(b.start, b.stop) if mask[i] == value]
    if len(found) < k:
        return None
    new = mask.copy()
    new[_order(pi, found, descending=value == _DROPPED)[:k]] = 1 - value
    return new


def candidates(theta, option_idx, space: BlockSpace, transfer: TransferSpace, rule: str, scaling: float
               ) -> dict[tuple[int, int], dict]:
    """Per edge (j, h) of the topology: {'masks': [m⁻, m, m⁺] as 0/1 arrays, 'valid': [bool, True, bool]}.

    m is the mask of the sampled options. m⁻ corrodes j by k and expands h; m⁺ expands j and corrodes h.
    """
    k = transfer.k
    m = space.unrank(option_idx).astype(np.int64)
    pi = marginals(theta, space, scaling)
    out = {}
    for j, h in sorted(tuple(sorted(e)) for e in transfer.graph.edges):
        bj, bh = space.blocks[j], space.blocks[h]
        if rule == "marginal":
            c = _flip(m, bj, k, pi, _KEPT)  # corrode j
            minus = _flip(c, bh, k, pi, _DROPPED) if c is not None else None  # then expand h
            e = _flip(m, bj, k, pi, _DROPPED)  # expand j
            plus = _flip(e, bh, k, pi, _KEPT) if e is not None else None  # then corrode h
        elif rule == "next-option":
            def next_option(jj, b):
                options = space.options(jj)
                o = option_idx[jj]
                best, best_val = None, -np.inf
                for cand in range(options.shape[0]):
                    if cand == o or int(options[cand] @ options[o]) != b.keep - k:
                        continue
                    if theta[jj][cand] > best_val:
                        best, best_val = cand, theta[jj][cand]
                if best is None:
                    return None
                full = np.zeros(space.num_layers, dtype=np.int64)
                full[b.start:b.stop] = options[best]
                return full

            nj, nh = next_option(j, bj), next_option(h, bh)
            if nj is None or nh is None:
                minus = plus = None
            else:
                inter = lambda mask, n, b: _blockwise(mask, np.minimum(mask, n), b)  # noqa: E731
                union = lambda mask, n, b: _blockwise(mask, np.maximum(mask, n), b)  # noqa: E731
                minus = union(inter(m, nj, bj), nh, bh)   # first block o∧o', second o∨o'
                plus = inter(union(m, nj, bj), nh, bh)    # first block o∨o', second o∧o'
        else:
            raise ValueError(rule)
        out[(j, h)] = {
            "masks": [minus if minus is not None else m.copy(), m.copy(), plus if plus is not None else m.copy()],
            "valid": [minus is not None, True, plus is not None],
        }
    return out


def _blockwise(mask, new, b):
    out = mask.copy()
    out[b.start:b.stop] = new[b.start:b.stop]
    return out


def decide(theta, q, space: BlockSpace, transfer: TransferSpace, scaling: float, valid=None) -> np.ndarray:
    """TinySR decision: per edge the transform of largest q (ties → no transfer), then per block the
    top-c_j layers by π (ties: lower index first)."""
    k = transfer.k
    counts = [b.keep for b in space.blocks]
    for e, (j, h) in enumerate(sorted(tuple(sorted(x)) for x in transfer.graph.edges)):
        qe = np.array(q[e], dtype=np.float64)
        if valid is not None:
            qe = np.where(valid[e], qe, -np.inf)
        choice = 1 if qe[1] >= qe.max() else int(np.argmax(qe))
        if choice == 0:
            counts[j] -= k
            counts[h] += k
        elif choice == 2:
            counts[j] += k
            counts[h] -= k
    pi = marginals(theta, space, scaling)
    mask = np.zeros(space.num_layers, dtype=np.int64)
    for b, c in zip(space.blocks, counts):
        mask[_order(pi, list(range(b.start, b.stop)), descending=True)[:c]] = 1
    return mask
