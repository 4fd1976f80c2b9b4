"""Simulated mask searches on quadratic landscapes, in JAX (docs/design.md §4–§6).

Every search is a pure function of (a, W, key) — the landscape's linear and pairwise terms and a PRNG
key — compiled with ``jax.jit``, looped over steps with ``jax.lax.scan`` and mapped over thousands of
seeds (each with its own landscape) with ``jax.vmap``. The objective the gradient methods minimise is
the landscape polynomial f(m) = c + a·m + mᵀWm evaluated on the straight-through relaxed mask, so
∂f/∂m = a + (W + Wᵀ)m plays the role of TinyFusion's dL/dm_i = ⟨dL/dx_{i+1}, φ_i(x_i) − x_i⟩.

Algorithms (names as in docs/design.md §6):

- ``tinyfusion`` (§4): per-block logits θ_j over the block's options (init 0.02), hard Gumbel-softmax
  (straight-through) over θ_j·scaling at temperature τ (τ linear 4 → 0.1, scaling 100), the block's layer
  mask ``one_hot @ options``; Adam on θ; EMA of θ (0.999); decision = per block the option of largest EMA θ.
- ``tinysr-marginal`` and ``tinysr-next-option`` (§5): as tinyfusion, plus one 3-way logit q_e per
  topology edge e = (j, h) over [m⁻, m, m⁺] (m⁻ = corrode j by k and expand h; m⁺ the reverse), sampled by
  the same hard Gumbel-softmax; the forward mask on the pair's layers is G(q_e)ᵀ·[m⁻, m, m⁺]
  (TinySR eq. 6), with m⁻/m⁺ in the relaxed form of TinySR eq. 8 written with detached 0/1 selections
  (as the torch engine does): corrosion m ⊙ (1 − d̂), expansion clamp(m + ê, 0, 1), d̂ marking the k
  kept layers to drop and ê the k dropped layers to add. Candidate rules:

  * ``marginal`` (TinySR eq. 7–8): π_i = Σ_{o: o_i = 1} p_j(o) with p_j = softmax(θ_j·scaling);
    corrosion drops the k kept layers of lowest π, expansion adds the k dropped layers of highest π.
  * ``next-option`` (authors' code): the next option o' of a block is the highest-θ option other than the
    sampled o that shares exactly s − k kept layers with it; d̂ = o ∧ ¬o', ê = o' ∧ ¬o, so corrosion gives
    o ∧ o' and expansion o ∨ o' ([o∧o', o, o∨o'] for the first block of a pair, [o∨o', o, o∧o'] for the
    second, one q per pair).

  Transforms that a block cannot make (fewer than k kept or dropped layers) are masked out of q.
  Decision (TinySR §3.1): per edge the transform of largest EMA q (exact ties go to "no transfer"), then
  per block keep the top-c_j layers by π of the EMA logits (c_j = s_j ± k after the transforms).
  Topologies must be matchings (each block in at most one edge), like the reference pairs (0,1),(2,3),….
- ``random-min`` (§6): ``budget`` masks drawn uniformly from the block space, keep the lowest f.

During training, exact ties (in π, or between next options of equal θ — at initialisation every logit
is 0.02) are broken at random; in the decision they go to the lower layer index. π is ranked in log
space (log-sum-exp of the scaled log-probabilities), which orders layers exactly as π does without
float underflow to 0.
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pruneseek.landscape.landscapes import LandscapeError
from pruneseek.spaces import BlockSpace, TransferSpace

NEG = -1e9  # logit of an option that does not exist (padding or an invalid transform)
BIG = 1e9   # rank score of a layer that may not be picked
RULES = ("marginal", "next-option")
LEARNED = ("tinyfusion", "tinysr-marginal", "tinysr-next-option")


@dataclass(frozen=True)
class SearchConfig:
    """Hyperparameters of the simulated searches (docs/design.md §4 reference defaults where the design gives one).

    ``samples`` masks are drawn per step and their f averaged (a batch in which each sample draws its own
    mask). ``lr`` is Adam's step on the logits. ``budget`` is random-min's number of f evaluations
    (default ``steps · samples``, the evaluations a learned search makes).
    """

    steps: int = 500
    samples: int = 4
    lr: float = 3e-3
    tau_start: float = 4.0
    tau_end: float = 0.1
    scaling: float = 100.0
    ema: float = 0.999
    init: float = 0.02
    k: int = 1
    topology: str = "pairs"
    budget: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def evaluations(self) -> int:
        return self.budget if self.budget is not None else self.steps * self.samples


# ----- static structure of a space --------------------------------------------------------------------
@dataclass(frozen=True)
class SpaceArrays:
    """Padded numpy tables describing a block space and a pair topology for the JAX searches."""

    options: np.ndarray       # (K, O, N) float32: option o of block j as a full-length layer mask
    option_valid: np.ndarray  # (K, O) bool
    block_of: np.ndarray      # (N,) int32
    layer_opts: np.ndarray    # (N, O) bool: option o of layer i's block keeps layer i
    same_block: np.ndarray    # (N, N) bool
    keep: np.ndarray          # (K,) int32
    neighbors: np.ndarray     # (K, O, O) bool: o' ≠ o valid and |o ∧ o'| = s_j − k
    first: np.ndarray         # (E,) int32 first block of each edge
    second: np.ndarray        # (E,) int32
    first_layers: np.ndarray  # (E, N) float32
    second_layers: np.ndarray  # (E, N) float32
    q_valid_marginal: np.ndarray  # (E, 3) bool
    q_valid_next: np.ndarray      # (E, 3) bool
    k: int

    @property
    def num_edges(self) -> int:
        return int(self.first.shape[0])


def space_arrays(space: BlockSpace, k: int = 1, topology="pairs", require_matching: bool = True) -> SpaceArrays:
    """The tables of :class:`SpaceArrays` for ``space`` and the transfer (k, topology).

    TinySR's simulation needs a matching topology (``require_matching``); TinyFusion and random-min
    ignore the edges and may pass ``require_matching=False``.
    """
    K, N = space.num_blocks, space.num_layers
    O = max(b.num_options for b in space.blocks)
    options = np.zeros((K, O, N), dtype=np.float32)
    valid = np.zeros((K, O), dtype=bool)
    block_of = np.zeros(N, dtype=np.int32)
    neighbors = np.zeros((K, O, O), dtype=bool)
    for j, b in enumerate(space.blocks):
        table = space.options(j)
        options[j, : table.shape[0], b.start:b.stop] = table
        valid[j, : table.shape[0]] = True
        block_of[b.start:b.stop] = j
        overlap = table.astype(np.int64) @ table.T.astype(np.int64)
        n = table.shape[0]
        neighbors[j, :n, :n] = (overlap == b.keep - k) & ~np.eye(n, dtype=bool) if k >= 1 else False
    layer_opts = options[block_of, :, np.arange(N)] > 0.5
    same_block = block_of[:, None] == block_of[None, :]
    graph = TransferSpace(space, k, topology).graph
    degree = dict(graph.degree())
    if require_matching and any(d > 1 for d in degree.values()):
        raise LandscapeError(
            "the simulated TinySR search needs a matching topology (each block in at most one pair), such as "
            f"'pairs'; got edges {sorted(graph.edges)}"
        )
    edges = sorted(tuple(sorted(e)) for e in graph.edges)
    E = len(edges)
    first = np.array([e[0] for e in edges], dtype=np.int32)
    second = np.array([e[1] for e in edges], dtype=np.int32)
    first_layers = np.zeros((E, N), dtype=np.float32)
    second_layers = np.zeros((E, N), dtype=np.float32)
    q_marg = np.zeros((E, 3), dtype=bool)
    q_next = np.zeros((E, 3), dtype=bool)
    for e, (j, h) in enumerate(edges):
        bj, bh = space.blocks[j], space.blocks[h]
        first_layers[e, bj.start:bj.stop] = 1
        second_layers[e, bh.start:bh.stop] = 1
        can_give = lambda b: k >= 1 and b.keep >= k  # noqa: E731
        can_take = lambda b: k >= 1 and b.size - b.keep >= k  # noqa: E731
        q_marg[e] = [can_give(bj) and can_take(bh), True, can_take(bj) and can_give(bh)]
        both = can_give(bj) and can_take(bj) and can_give(bh) and can_take(bh)
        q_next[e] = [both, True, both]
    return SpaceArrays(options, valid, block_of, layer_opts, same_block,
                       np.array([b.keep for b in space.blocks], dtype=np.int32), neighbors, first, second,
                       first_layers, second_layers, q_marg, q_next, int(k))


# ----- pure building blocks ----------------------------------------------------------------------------
def objective(a, W, m):
    """f(m) − c = a·m + mᵀWm for a (relaxed) mask m (the constant c does not move any search)."""
    return a @ m + m @ (W @ m)


def hard_gumbel_softmax(key, logits, valid, tau, scaling):
    """Straight-through hard Gumbel-softmax over ``logits · scaling`` at temperature τ (docs/design.md §4, TinySR eq. 3).

    Forward: the exact one-hot of argmax((θ·scaling + g)/τ); backward: the soft sample's gradient.
    """
    g = jax.random.gumbel(key, logits.shape)
    z = jnp.where(valid, (logits * scaling + g) / tau, NEG)
    soft = jax.nn.softmax(z, axis=-1)
    hard = jax.nn.one_hot(jnp.argmax(z, axis=-1), z.shape[-1], dtype=soft.dtype)
    return hard + soft - jax.lax.stop_gradient(soft)


def log_marginals(theta, arrays: SpaceArrays, scaling):
    """log π_i, π_i = Σ_{o: o_i=1} p_j(o), p_j = softmax(θ_j·scaling) over block j's options (TinySR eq. 7)."""
    logp = jax.nn.log_softmax(jnp.where(arrays.option_valid, theta * scaling, NEG), axis=-1)
    per_layer = logp[arrays.block_of]  # (N, O)
    return jax.nn.logsumexp(jnp.where(arrays.layer_opts, per_layer, NEG), axis=-1)


def marginals(theta, arrays: SpaceArrays, scaling):
    """π_i (probability space) — see :func:`log_marginals`."""
    return jnp.exp(log_marginals(theta, arrays, scaling))


def _within_block_rank(score, arrays: SpaceArrays, priority=None):
    """Rank of each layer inside its block by ascending score.

    Exact ties go to the lower ``priority`` (default: the layer index; a random priority breaks ties at
    random, as the torch engine does during training).
    """
    n = score.shape[0]
    prio = jnp.arange(n, dtype=jnp.float32) if priority is None else priority
    before = (score[None, :] < score[:, None]) | ((score[None, :] == score[:, None]) & (prio[None, :] < prio[:, None]))
    before = before | ((score[None, :] == score[:, None]) & (prio[None, :] == prio[:, None])
                       & (jnp.arange(n)[None, :] < jnp.arange(n)[:, None]))
    return jnp.sum(before & arrays.same_block, axis=1)


def candidate_vectors(theta, option_idx, m_hard, arrays: SpaceArrays, rule: str, scaling, tie_key=None):
    """The per-layer selections (d̂, ê) of TinySR eq. 8: corrosion is m ⊙ (1 − d̂), expansion m + ê.

    ``marginal``: d̂ marks the k kept layers of lowest π in each block, ê the k dropped layers of highest π.
    ``next-option``: with o' the block's next option, d̂ = o ∧ ¬o' and ê = o' ∧ ¬o, so corrosion gives
    o ∧ o' and expansion o ∨ o' (see module docs). ``option_idx`` (K,) is the sampled option per block,
    ``m_hard`` (N,) its exact 0/1 mask. Exact ties (π or θ equal) go to the lower index, or are broken at
    random when a ``tie_key`` is given. Both are returned as 0/1 float vectors over all N layers.
    """
    k = arrays.k
    kept = m_hard > 0.5
    if rule == "marginal":
        logpi = log_marginals(theta, arrays, scaling)
        prio = None if tie_key is None else jax.random.uniform(tie_key, logpi.shape)
        rank_c = _within_block_rank(jnp.where(kept, logpi, BIG), arrays, prio)
        rank_e = _within_block_rank(jnp.where(kept, BIG, -logpi), arrays, prio)
        drop = jnp.where(kept & (rank_c < k), 1.0, 0.0)
        add = jnp.where(~kept & (rank_e < k), 1.0, 0.0)
        return drop, add
    if rule == "next-option":
        K = arrays.keep.shape[0]
        nb = jnp.asarray(arrays.neighbors)[jnp.arange(K), option_idx]  # (K, O)
        score = jnp.where(nb, theta, -jnp.inf)
        top = score.max(axis=-1, keepdims=True)
        if tie_key is None:
            nxt = jnp.argmax(score, axis=-1)
        else:
            u = jax.random.uniform(tie_key, score.shape)
            nxt = jnp.argmax(jnp.where(nb & (score == top), u, -1.0), axis=-1)
        o_next = jnp.einsum("ko,kon->n", jax.nn.one_hot(nxt, theta.shape[-1]), arrays.options)
        return m_hard * (1.0 - o_next), o_next * (1.0 - m_hard)
    raise LandscapeError(f"unknown candidate rule {rule!r}; use one of {', '.join(RULES)}")


def _clamp01(x):
    """clamp(x, 0, 1) with torch's gradient: 1 where 0 ≤ x ≤ 1 (boundaries included), else 0."""
    inside = (x >= 0) & (x <= 1)
    return jnp.where(inside, x, jax.lax.stop_gradient(jnp.clip(x, 0.0, 1.0)))


def transfer_candidates(m, drop, add, arrays: SpaceArrays):
    """[m⁻, m, m⁺] per edge, ``(E, 3, N)``: m⁻ corrodes the edge's first block and expands the second.

    Relaxed form of TinySR eq. 8 with detached 0/1 selections: corrosion m ⊙ (1 − d̂) (= m ⊙ m̂),
    expansion clamp(m + ê, 0, 1) (ê only marks dropped layers, so the clamp never binds and every kept
    layer keeps its gradient).
    """
    corr = m * (1.0 - drop)
    exp = _clamp01(m + add)
    F, S = jnp.asarray(arrays.first_layers), jnp.asarray(arrays.second_layers)
    rest = 1.0 - F - S
    minus = rest * m + F * corr + S * exp
    plus = rest * m + F * exp + S * corr
    same = jnp.broadcast_to(m, minus.shape)
    return jnp.stack([minus, same, plus], axis=1)


def apply_transfers(m, g_q, candidates, arrays: SpaceArrays):
    """The forward mask: on each edge's layers G(q_e)ᵀ·[m⁻, m, m⁺] (TinySR eq. 6), elsewhere m."""
    P = jnp.asarray(arrays.first_layers + arrays.second_layers)  # (E, N), disjoint rows (matching)
    mixed = jnp.einsum("ec,ecn->en", g_q, candidates)
    return m * (1.0 - P.sum(axis=0)) + jnp.sum(P * mixed, axis=0)


def block_mask(g, arrays: SpaceArrays):
    """Layer mask ``Σ_j G_jᵀ options_j`` from per-block (straight-through) one-hots ``g`` (K, O)."""
    return jnp.einsum("ko,kon->n", g, arrays.options)


# ----- one search ------------------------------------------------------------------------------------
def _sample_mask(params, key, tau, arrays: SpaceArrays, cfg: SearchConfig, algorithm: str):
    kb, kq = jax.random.split(key)
    g = hard_gumbel_softmax(kb, params["theta"], arrays.option_valid, tau, cfg.scaling)
    m = block_mask(g, arrays)
    if algorithm == "tinyfusion":
        return m
    rule = algorithm.split("-", 1)[1]
    option_idx = jnp.argmax(jax.lax.stop_gradient(g), axis=-1)
    m_hard = jax.lax.stop_gradient(block_mask(jax.nn.one_hot(option_idx, g.shape[-1]), arrays))
    kq, kt = jax.random.split(kq)
    drop, add = candidate_vectors(jax.lax.stop_gradient(params["theta"]), option_idx, m_hard, arrays, rule,
                                  cfg.scaling, tie_key=kt)
    cands = transfer_candidates(m, jax.lax.stop_gradient(drop), jax.lax.stop_gradient(add), arrays)
    q_valid = arrays.q_valid_marginal if rule == "marginal" else arrays.q_valid_next
    g_q = hard_gumbel_softmax(kq, params["q"], q_valid, tau, cfg.scaling)
    return apply_transfers(m, g_q, cands, arrays)


def _decide(ema, arrays: SpaceArrays, cfg: SearchConfig, algorithm: str):
    """Decision from the EMA parameters: the final 0/1 mask (int32) and, for TinySR, the chosen transforms."""
    theta = ema["theta"]
    if algorithm == "tinyfusion":
        best = jnp.argmax(jnp.where(arrays.option_valid, theta, -jnp.inf), axis=-1)
        mask = block_mask(jax.nn.one_hot(best, theta.shape[-1]), arrays)
        return jnp.round(mask).astype(jnp.int32), jnp.zeros((max(arrays.num_edges, 1),), jnp.int32)
    rule = algorithm.split("-", 1)[1]
    q_valid = arrays.q_valid_marginal if rule == "marginal" else arrays.q_valid_next
    q = jnp.where(q_valid, ema["q"], -jnp.inf)
    choice = jnp.where(q[:, 1] >= q.max(axis=-1), 1, jnp.argmax(q, axis=-1))  # exact tie → no transfer
    shift = jnp.zeros(arrays.keep.shape[0], jnp.int32)
    delta = (1 - choice) * arrays.k  # choice 0 (m⁻): first gives k, second takes k; choice 2 the reverse
    shift = shift.at[arrays.first].add(-delta).at[arrays.second].add(delta)
    counts = arrays.keep + shift
    logpi = log_marginals(theta, arrays, cfg.scaling)
    rank = _within_block_rank(-logpi, arrays)
    mask = (rank < counts[arrays.block_of]).astype(jnp.int32)
    return mask, choice.astype(jnp.int32)


def init_params(arrays: SpaceArrays, cfg: SearchConfig, algorithm: str):
    K, O = arrays.option_valid.shape
    params = {"theta": jnp.full((K, O), cfg.init, jnp.float32)}
    if algorithm != "tinyfusion":
        params["q"] = jnp.full((max(arrays.num_edges, 1), 3), cfg.init, jnp.float32)
    return params


def learned_search(a, W, key, arrays: SpaceArrays, cfg: SearchConfig, algorithm: str):
    """One TinyFusion/TinySR search on the landscape (a, W): returns (mask, transforms, final EMA params)."""
    if algorithm not in LEARNED:
        raise LandscapeError(f"unknown learned search {algorithm!r}; use one of {', '.join(LEARNED)}")
    if algorithm != "tinyfusion" and arrays.num_edges == 0:
        raise LandscapeError("TinySR needs at least one pair of blocks in its topology")
    opt = optax.adam(cfg.lr)
    params = init_params(arrays, cfg, algorithm)
    state = opt.init(params)
    steps = cfg.steps

    def loss_fn(p, k, tau):
        keys = jax.random.split(k, cfg.samples)
        masks = jax.vmap(lambda kk: _sample_mask(p, kk, tau, arrays, cfg, algorithm))(keys)
        return jnp.mean(jax.vmap(lambda m: objective(a, W, m))(masks))

    def step(carry, t):
        p, s, ema, k = carry
        k, sub = jax.random.split(k)
        frac = t / max(steps - 1, 1)
        tau = cfg.tau_start + (cfg.tau_end - cfg.tau_start) * frac
        loss, grads = jax.value_and_grad(loss_fn)(p, sub, tau)
        updates, s = opt.update(grads, s, p)
        p = optax.apply_updates(p, updates)
        ema = jax.tree_util.tree_map(lambda e, x: cfg.ema * e + (1.0 - cfg.ema) * x, ema, p)
        return (p, s, ema, k), loss

    (params, _, ema, _), losses = jax.lax.scan(step, (params, state, params, key), jnp.arange(steps))
    mask, choice = _decide(ema, arrays, cfg, algorithm)
    return mask, choice, ema, losses[-1]


def random_min_search(a, W, key, arrays: SpaceArrays, budget: int, chunk: int = 250):
    """random-min (docs/design.md §6): ``budget`` uniform block-space masks, keep the lowest f."""
    K, O = arrays.option_valid.shape
    rounds = max(1, -(-budget // chunk))
    logits = jnp.where(arrays.option_valid, 0.0, -jnp.inf)

    def body(carry, t):
        best_mask, best_val, k = carry
        k, sub = jax.random.split(k)
        idx = jax.random.categorical(sub, logits, axis=-1, shape=(chunk, K))
        masks = jnp.einsum("bko,kon->bn", jax.nn.one_hot(idx, O), arrays.options)
        vals = jax.vmap(lambda m: objective(a, W, m))(masks)
        vals = jnp.where(t * chunk + jnp.arange(chunk) < budget, vals, jnp.inf)
        i = jnp.argmin(vals)
        better = vals[i] < best_val
        return (jnp.where(better, masks[i], best_mask), jnp.where(better, vals[i], best_val), k), None

    init = (jnp.zeros(arrays.options.shape[-1], jnp.float32), jnp.inf, key)
    (mask, _, _), _ = jax.lax.scan(body, init, jnp.arange(rounds))
    return jnp.round(mask).astype(jnp.int32)


# ----- compiled, vmapped entry points ----------------------------------------------------------------
@functools.lru_cache(maxsize=32)
def _compiled(shape: tuple, k: int, topology: str, cfg: SearchConfig, algorithm: str):
    arrays = space_arrays(BlockSpace(list(shape)), k, topology, require_matching=algorithm.startswith("tinysr"))
    if algorithm == "random-min":
        fn = lambda a, W, key: (random_min_search(a, W, key, arrays, cfg.evaluations),)  # noqa: E731
    else:
        fn = functools.partial(learned_search, arrays=arrays, cfg=cfg, algorithm=algorithm)
    return jax.jit(jax.vmap(fn))


JAX_ALGORITHMS = LEARNED + ("random-min",)


def run_jax(algorithm: str, space: BlockSpace, a: np.ndarray, W: np.ndarray, seeds, cfg: SearchConfig
            ) -> dict[str, np.ndarray]:
    """Run ``algorithm`` once per seed, seed s on landscape (a[s], W[s]); returns numpy arrays.

    ``mask`` (S, N) int: the decisions; for learned searches also ``transforms`` (S, E) (0 = m⁻,
    1 = no transfer, 2 = m⁺), ``theta`` (S, K, O) EMA logits and ``last_loss`` (S,).
    Deterministic: the same seeds give the same masks.
    """
    if algorithm not in JAX_ALGORITHMS:
        raise LandscapeError(f"unknown JAX search {algorithm!r}; use one of {', '.join(JAX_ALGORITHMS)}")
    a = np.asarray(a, dtype=np.float32)
    W = np.asarray(W, dtype=np.float32)
    seeds = np.asarray(seeds, dtype=np.uint32)
    if a.ndim == 1:
        a = np.broadcast_to(a, (len(seeds),) + a.shape)
        W = np.broadcast_to(W, (len(seeds),) + W.shape)
    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
    fn = _compiled(tuple(space.shape), cfg.k, cfg.topology, cfg, algorithm)
    out = fn(jnp.asarray(a), jnp.asarray(W), keys)
    if algorithm == "random-min":
        return {"mask": np.asarray(out[0])}
    mask, choice, ema, last = out
    result = {"mask": np.asarray(mask), "theta": np.asarray(ema["theta"]), "last_loss": np.asarray(last)}
    if algorithm != "tinyfusion":
        result["transforms"] = np.asarray(choice)
        result["q"] = np.asarray(ema["q"])
    return result
