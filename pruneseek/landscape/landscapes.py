"""Synthetic and calibrated objective landscapes over depth-pruning masks (docs/design.md §3).

A landscape is a pseudo-Boolean quadratic over masks m ∈ {0,1}^N (1 = keep), lower is better:

    f(m) = c + Σ_i a_i m_i + Σ_{i<j} W_ij m_i m_j

searched under the kept-count constraint Σ m = M. ``W`` is stored strictly upper-triangular, so
``f(m) = c + a·m + mᵀ W m``. The same polynomial is differentiable in a relaxed m ∈ [0,1]^N, which is
what the simulated gradient searches of :mod:`pruneseek.landscape.search_jax` minimise.

Generators (all deterministic in ``seed``):

- :func:`planted` — a unique global optimum m* planted inside the block-factored space, one transfer
  outside it (in the TinySR transfer-reachable space for ``k`` and the topology, not in the block space),
  or *far* outside it (not reachable by those transfers), plus random linear and pairwise terms whose
  magnitude relative to the planted signal is the *ruggedness*.
- :func:`random_quadratic` — i.i.d. Gaussian a and W, nothing planted.
- :func:`calibrated` — a and W from measured drop-one and drop-two loss changes of a real model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from pruneseek.errors import LandscapeError
from pruneseek.spaces import BlockSpace, TransferSpace



#: How m* was placed, for :func:`planted`.
PLACEMENTS = ("inside", "transfer", "far")
#: Default relative gap kept between the planted optimum and the runner-up (see :func:`planted`).
DEFAULT_MARGIN = 0.05


@dataclass
class QuadraticLandscape:
    """f(m) = c + a·m + mᵀ W m with W strictly upper-triangular (lower is better).

    ``meta`` records how the landscape was made (family, seed, planted mask, ruggedness, …).
    """

    a: np.ndarray
    W: np.ndarray
    c: float = 0.0
    name: str = "quadratic"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        a = np.asarray(self.a, dtype=np.float64)
        W = np.asarray(self.W, dtype=np.float64)
        if a.ndim != 1:
            raise LandscapeError(f"a must be a vector of per-layer terms, got shape {a.shape}")
        n = a.shape[0]
        if W.shape != (n, n):
            raise LandscapeError(f"W must be an {n}×{n} matrix to match a, got shape {W.shape}")
        if np.any(np.tril(W) != 0):
            raise LandscapeError(
                "W must be strictly upper-triangular (W_ij for i < j); build a symmetric interaction matrix "
                "with QuadraticLandscape.from_symmetric"
            )
        if not (np.isfinite(a).all() and np.isfinite(W).all() and math.isfinite(self.c)):
            raise LandscapeError("a landscape's terms must be finite numbers")
        self.a, self.W, self.c = a, W, float(self.c)

    @classmethod
    def from_symmetric(cls, a, S, c: float = 0.0, **kwargs) -> "QuadraticLandscape":
        """From a symmetric interaction matrix S (diagonal ignored): W_ij = S_ij for i < j."""
        S = np.asarray(S, dtype=np.float64)
        if S.ndim != 2 or S.shape[0] != S.shape[1]:
            raise LandscapeError(f"the interaction matrix must be square, got shape {S.shape}")
        if not np.allclose(S, S.T, rtol=1e-9, atol=1e-12):
            raise LandscapeError("the interaction matrix must be symmetric (S_ij = S_ji)")
        return cls(a, np.triu(S, 1), c, **kwargs)

    @property
    def num_layers(self) -> int:
        return int(self.a.shape[0])

    @property
    def symmetric(self) -> np.ndarray:
        """S = W + Wᵀ (zero diagonal): f(m) = c + a·m + ½ mᵀ S m."""
        return self.W + self.W.T

    def evaluate(self, masks: np.ndarray) -> np.ndarray:
        """f for one mask ``(N,)`` (returns a float) or a batch ``(n, N)`` (returns ``(n,)``), in float64."""
        m = np.asarray(masks, dtype=np.float64)
        single = m.ndim == 1
        m = np.atleast_2d(m)
        if m.shape[1] != self.num_layers:
            raise LandscapeError(f"masks for this landscape have {self.num_layers} entries, got {m.shape[1]}")
        values = m @ self.a + np.einsum("ni,ni->n", m @ self.W, m) + self.c
        return float(values[0]) if single else values

    __call__ = evaluate

    def gradient(self, mask: np.ndarray) -> np.ndarray:
        """∂f/∂m at a (relaxed) mask: a + S m."""
        return self.a + self.symmetric @ np.asarray(mask, dtype=np.float64)

    def drop_one(self) -> np.ndarray:
        """Δ_i = f(1 − e_i) − f(1): the rise of f when only layer i is dropped from the full mask."""
        return -(self.a + self.symmetric.sum(axis=1))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "a": self.a.tolist(), "W": self.W.tolist(), "c": self.c, "meta": self.meta}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "QuadraticLandscape":
        return cls(np.asarray(data["a"]), np.asarray(data["W"]), data.get("c", 0.0), data.get("name", "quadratic"),
                   dict(data.get("meta", {})))


# ----- calibrated landscapes ------------------------------------------------------------------------
def calibrated(drop_one: Sequence[float], drop_two, base_loss: float = 0.0, name: str = "calibrated"
               ) -> QuadraticLandscape:
    """The second-order landscape of a real model from measured loss changes.

    ``drop_one[i]`` = L(full mask without layer i) − L(full mask); ``drop_two[i, j]`` (i ≠ j, symmetric;
    the diagonal is ignored) = L(full mask without layers i and j) − L(full mask); ``base_loss`` = L(full).
    In the dropped indicator z = 1 − m, the second-order model that matches every measurement exactly is

        L(z) = L0 + Σ_i δ_i z_i + Σ_{i<j} e_ij z_i z_j,   e_ij = δ_ij − δ_i − δ_j   (interaction term)

    and rewriting z_i = 1 − m_i gives f(m) = c + a·m + Σ_{i<j} W_ij m_i m_j with
    W_ij = e_ij, a_i = −δ_i − Σ_{j≠i} e_ij, c = L0 + Σ_i δ_i + Σ_{i<j} e_ij.

    The measurements themselves (N + N(N−1)/2 calibration-loss evaluations of a real model under hard
    masks) are not taken here: measuring them on a real model is a later step of the project. Pass
    arrays that were actually measured; there is no default or stand-in data.
    """
    d1 = np.asarray(drop_one, dtype=np.float64)
    d2 = np.asarray(drop_two, dtype=np.float64)
    if d1.ndim != 1:
        raise LandscapeError(f"drop_one must be a vector with one loss change per layer, got shape {d1.shape}")
    n = d1.shape[0]
    if d2.shape != (n, n):
        raise LandscapeError(f"drop_two must be an {n}×{n} matrix of pair-drop loss changes, got shape {d2.shape}")
    off = ~np.eye(n, dtype=bool)
    if not np.allclose(d2[off], d2.T[off], rtol=1e-9, atol=1e-12):
        raise LandscapeError("drop_two must be symmetric: dropping layers i and j is the same as dropping j and i")
    e = np.where(off, d2 - d1[:, None] - d1[None, :], 0.0)
    W = np.triu(e, 1)
    a = -d1 - e.sum(axis=1)
    c = float(base_loss + d1.sum() + W.sum())
    return QuadraticLandscape(a, W, c, name=name, meta={"family": "calibrated"})


# ----- random and planted landscapes ----------------------------------------------------------------
def _noise(n: int, keep: int, scale: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian linear and pairwise terms whose change under one random swap has std ``scale``.

    A swap (drop kept layer i, keep dropped layer l) changes the noise by (a_l − a_i) + Σ_{j kept, j≠i}
    (S_lj − S_ij): variance 2σ_a² + 2(M−1)σ_W². Half of that variance is given to each part.
    """
    sigma_a = scale / 2.0
    sigma_w = scale / (2.0 * math.sqrt(max(keep - 1, 1)))
    a = rng.normal(0.0, sigma_a, n)
    W = np.triu(rng.normal(0.0, sigma_w, (n, n)), 1)
    return a, W


def random_quadratic(space: BlockSpace, seed: int = 0) -> QuadraticLandscape:
    """i.i.d. Gaussian terms (the ``random`` family): a random swap changes f by about N(0, 2²)."""
    rng = np.random.default_rng([seed, 0x5EED])
    a, W = _noise(space.num_layers, space.num_kept, 2.0, rng)
    return QuadraticLandscape(a, W, 0.0, name="random-quadratic",
                              meta={"family": "random-quadratic", "seed": int(seed)})


def _move(mask: np.ndarray, space: BlockSpace, give: int, take: int, k: int, rng: np.random.Generator) -> None:
    """In place: drop k random kept layers of block ``give``, keep k random dropped layers of ``take``."""
    bg, bt = space.blocks[give], space.blocks[take]
    kept = bg.start + np.flatnonzero(mask[bg.start:bg.stop] == 1)
    dropped = bt.start + np.flatnonzero(mask[bt.start:bt.stop] == 0)
    mask[rng.choice(kept, k, replace=False)] = 0
    mask[rng.choice(dropped, k, replace=False)] = 1


def plant_mask(space: BlockSpace, placement: str, rng: np.random.Generator, k: int = 1,
               topology="pairs") -> np.ndarray:
    """A mask of M kept layers: in the block space (``inside``), reachable by exactly one transfer of k
    layers over one topology edge but outside the block space (``transfer``), or outside the space
    reachable by transfers of up to k layers per edge (``far``, uniform over that complement)."""
    if placement == "inside":
        return space.sample(1, rng)[0]
    transfer = TransferSpace(space, k, topology)
    if placement == "transfer":
        moves = []
        for j, h in transfer.graph.edges:
            for give, take in ((j, h), (h, j)):
                if space.blocks[give].keep >= k and space.blocks[take].size - space.blocks[take].keep >= k:
                    moves.append((give, take))
        if k < 1 or not moves:
            raise LandscapeError(
                f"no transfer of k={k} layers is possible on this space and topology, so nothing lies one transfer "
                "outside the block space; use a larger block, a k ≥ 1, or another topology"
            )
        mask = space.sample(1, rng)[0].copy()
        give, take = moves[rng.integers(len(moves))]
        _move(mask, space, give, take, k, rng)
        return mask
    if placement == "far":
        if transfer.size() >= space.full_size():
            raise LandscapeError("every mask is transfer-reachable in this space; there is no 'far' placement")
        full = space.full_space()
        for _ in range(100_000):
            mask = full.sample(1, rng)[0]
            if not transfer.contains(mask):
                return mask
        raise LandscapeError("could not draw a mask outside the transfer-reachable space (it is almost everything)")
    raise LandscapeError(f"unknown placement {placement!r}; use one of {', '.join(PLACEMENTS)}")


def _coupled_signal(target: np.ndarray, coupling: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(a, W) of the planted signal (m − m*)ᵀ Q (m − m*) with Q = I + coupling · G Gᵀ / r, G ~ N(0, 1)^{N×r}.

    Q is positive definite, so the signal is > 0 for every m ≠ m* (≥ 2·d(m)): m* is its unique minimum.
    On binary m, mᵀQm = Σ Q_ii m_i + 2 Σ_{i<j} Q_ij m_i m_j, so a = diag(Q) − 2 Q m* and W = 2 triu(Q, 1)
    (dropping the constant m*ᵀQm*). With coupling 0, a_i = ∓1 (−1 where m*_i = 1) and W = 0.
    """
    n = target.shape[0]
    Q = np.eye(n)
    if coupling > 0:
        r = max(1, n // 4)
        G = rng.normal(size=(n, r))
        Q = Q + coupling * (G @ G.T) / r
    t = target.astype(np.float64)
    return np.diag(Q) - 2.0 * Q @ t, 2.0 * np.triu(Q, 1)


def planted(space: BlockSpace, inside: bool = True, ruggedness: float = 0.5, seed: int = 0, *,
            outside: str = "transfer", k: int = 1, topology="pairs", coupling: float = 0.0,
            margin: float = DEFAULT_MARGIN, enumeration=None) -> QuadraticLandscape:
    """A landscape whose unique global optimum (over all C(N, M) masks) is a planted mask m*.

    Signal: (m − m*)ᵀ Q (m − m*) with Q = I + coupling·GGᵀ/r (see :func:`_coupled_signal`). With the
    default ``coupling=0`` it is linear, a_i = −1 where m*_i = 1 and +1 elsewhere: on Σm = M the signal is
    2·d(m) with d(m) the number of kept layers of m outside m* (one swap away from m* costs 2), and a
    one-shot ranking by a_i recovers m* exactly. ``coupling > 0`` adds positive-definite pairwise
    structure that keeps m* the unique minimum but scrambles the per-layer terms a_i.
    Noise: Gaussian linear and pairwise terms scaled so that a random single swap changes the noise by a
    standard deviation of ``2 · ruggedness`` (ruggedness 1 = random interactions as large as a swap of
    the linear planted signal).

    m* is placed ``inside`` the block-factored space, or (``inside=False``) ``outside`` it: by one
    transfer of ``k`` layers over one edge of ``topology`` (``outside="transfer"``) or anywhere not
    reachable by such transfers (``outside="far"``).

    Uniqueness is enforced exactly: the full space is enumerated and if some mask m ≠ m* would come
    within ``margin`` · signal(m) of m*, the noise is shrunk until every m is worse than m* by at least
    that. ``meta['ruggedness_effective']`` is the ruggedness actually realised (≤ the request) and
    ``meta['capped']`` says whether it was shrunk.
    """
    from pruneseek.landscape.exact import Enumeration  # local: exact imports this module

    if ruggedness < 0 or not math.isfinite(ruggedness):
        raise LandscapeError(f"ruggedness must be a non-negative number, got {ruggedness!r}")
    if coupling < 0 or not math.isfinite(coupling):
        raise LandscapeError(f"coupling must be a non-negative number, got {coupling!r}")
    if not 0 <= margin < 1:
        raise LandscapeError(f"margin must lie in [0, 1), got {margin!r}")
    placement = "inside" if inside else outside
    if placement not in PLACEMENTS or (not inside and placement == "inside"):
        raise LandscapeError(f"outside must be 'transfer' or 'far', got {outside!r}")
    rng = np.random.default_rng([seed, PLACEMENTS.index(placement), 0x91A7])
    target = plant_mask(space, placement, rng, k, topology).astype(np.uint8)
    n, keep = space.num_layers, space.num_kept
    noise_a, noise_w = _noise(n, keep, 2.0 * ruggedness, rng)
    signal_a, signal_w = _coupled_signal(target, coupling, np.random.default_rng([seed, 0xC0DE]))

    enum = enumeration if enumeration is not None else Enumeration.cached(n, keep)
    values = enum.values(QuadraticLandscape(noise_a, noise_w))
    signal = enum.values(QuadraticLandscape(signal_a, signal_w))
    target_index = enum.index_of(target)
    signal -= signal[target_index]
    others = np.ones(enum.size, dtype=bool)
    others[target_index] = False
    # f(m) − f(m*) = signal(m) + λ (noise(m) − noise(m*)). Require f(m) − f(m*) ≥ margin · signal(m) for
    # every m ≠ m*, i.e. λ · max_m (noise(m*) − noise(m)) / signal(m) ≤ 1 − margin.
    worst = float(np.max((values[target_index] - values[others]) / signal[others])) if others.any() else 0.0
    scale = (1.0 - margin) / worst if worst > 1.0 - margin else 1.0
    meta = {
        "family": f"planted-{placement}",
        "seed": int(seed),
        "planted": target.tolist(),
        "placement": placement,
        "ruggedness": float(ruggedness),
        "ruggedness_effective": float(ruggedness * scale),
        "capped": bool(scale < 1.0),
        "coupling": float(coupling),
        "k": int(k),
        "topology": topology if isinstance(topology, str) else "custom",
    }
    return QuadraticLandscape(signal_a + scale * noise_a, signal_w + scale * noise_w, 0.0, name=meta["family"],
                              meta=meta)


# ----- families used by sweeps ----------------------------------------------------------------------
FAMILIES = {
    "planted-inside": "unique optimum planted inside the block-factored space",
    "planted-outside-1-transfer": "unique optimum one transfer (k layers over one topology edge) outside the block "
    "space",
    "planted-outside-far": "unique optimum outside the space reachable by transfers of up to k layers per edge",
    "random-quadratic": "i.i.d. Gaussian linear and pairwise terms, nothing planted",
}
ALIASES = {
    "inside": "planted-inside",
    "transfer": "planted-outside-1-transfer",
    "outside": "planted-outside-1-transfer",
    "far": "planted-outside-far",
    "random": "random-quadratic",
}


def family_name(name: str) -> str:
    """Canonical family name (accepts the short aliases inside/transfer/far/random)."""
    name = ALIASES.get(name, name)
    if name not in FAMILIES:
        known = ", ".join(list(FAMILIES) + [f"{k} (= {v})" for k, v in ALIASES.items()])
        raise LandscapeError(f"unknown landscape family {name!r}; known: {known}")
    return name


def make_landscape(family: str, space: BlockSpace, seed: int, *, ruggedness: float = 0.5, k: int = 1,
                   topology="pairs", coupling: float = 0.0, enumeration=None) -> QuadraticLandscape:
    """One landscape of a named family (see :data:`FAMILIES`)."""
    family = family_name(family)
    if family == "random-quadratic":
        return random_quadratic(space, seed)
    outside = {"planted-outside-1-transfer": "transfer", "planted-outside-far": "far"}.get(family)
    return planted(space, inside=outside is None, ruggedness=ruggedness, seed=seed, outside=outside or "transfer",
                   k=k, topology=topology, coupling=coupling, enumeration=enumeration)
