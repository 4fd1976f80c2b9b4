"""Dynamic inter-block activation with expansion-corrosion: the TinySR transfer gates (docs/design.md §5).

Every edge ``(j, h)``, ``j < h``, of the pair topology carries a learnable 3-way logit vector ``q``
(init 0.02) over the candidates ``[m⁻, m, m⁺]`` (TinySR eq. 6, ``q(t)``):

- ``m⁻`` — corrode block j by k kept layers and expand block h by k dropped layers;
- ``m``  — leave both;
- ``m⁺`` — expand block j by k and corrode block h by k.

A candidate is sampled per sample by the same hard Gumbel-softmax as the block gates (same τ and
scaling) and the forward mask is ``G(q)ᵀ · [m⁻, m, m⁺]``. Edges are applied one after another in
sorted edge order, each to the mask left by the previous ones, so a chain works; each edge moves 0 or
±k layers and the total kept count never changes — asserted at run time for every sample. A candidate
that a sample cannot realise (fewer than k kept layers to corrode, or fewer than k dropped layers to
expand) gets logit −∞ for that sample before sampling.

Relaxed form (TinySR eq. 8, written with detached 0/1 selection indicators ``e_drop``, ``e_add``)::

    m± = m ⊙ (1 − e_drop) + e_add

so the forward mask is exactly 0/1 and gradients flow to the block logits through ``m`` and to ``q``
through the straight-through sample.

Which layers move — the candidate rule:

``"marginal"`` (the paper, TinySR eq. 7–8)
    π_i = Σ_{o: o_i=1} p_j(o) from the block gates' current probabilities (``softmax(scaling · logits)``).
    Corrosion drops the k kept layers of the block with the lowest π, expansion adds the k dropped
    layers with the highest π. Exact ties (π is uniform at init) are broken at random with the run's
    generator.

``"next-option"`` (the authors' released code, Microtreei/TinySR ``models/tinyfusion/tinysr_sd3.py``)
    For block j with current mask o, the next option o' is the option with the highest *raw* logit
    among the admissible ones, ties broken at random, o' detached. Candidates are
    ``[o ∧ o', o, o ∨ o']`` for the first block of the edge and ``[o ∨ o', o, o ∧ o']`` for the second,
    with the one ``q`` of the edge shared — i.e. corrosion drops ``o ∧ ¬o'``, expansion adds ``o' ∧ ¬o``.

    DEVIATION from the reference: the reference admits any o' that overlaps o (shares a kept layer)
    and differs from it. On shapes other than (4 keep 2) with k = 1 that can move different numbers of
    layers in the two blocks and break the kept count. pruneseek admits only options sharing exactly
    ``s_j − k`` kept layers with o, so the intersection drops and the union adds exactly k layers; on the
    reference's (4 keep 2), k = 1 shape the two definitions coincide. (When ``s_j = k`` the admissible
    o' are the options disjoint from o, which the reference, requiring overlap, would not find at all.)
    When an earlier edge of a chain has already moved layers in block j, its mask c is no longer an
    option; corrosion then takes the best option o' with ``|c ∧ o'| = |c| − k`` and expansion the best
    with ``|o' ∖ c| = k`` (for c an option both conditions are the one above). If no option qualifies,
    that candidate is masked out for the sample.

Decision (TinySR §3.1 "Pruning Decision", :func:`transfer_decision`): per edge, in sorted order, apply
the transformation with the largest (EMA) q that is still feasible (ties prefer "unchanged", then
m⁻, then m⁺); then each block j keeps the c_j = s_j ± k·(transfers) layers with the highest π.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import networkx as nx
import torch
from torch import nn

from pruneseek.errors import EngineError
from pruneseek.engine.gates import INIT_LOGIT, hard_gumbel_softmax, log_marginals, option_tables, probabilities
from pruneseek.spaces import BlockSpace, make_topology

RULES = ("marginal", "next-option")
#: Candidate order of every q vector.
CANDIDATES = ("corrode-first", "unchanged", "expand-first")
#: Decision tie preference: unchanged, then m⁻, then m⁺.
_TIE_PRIORITY = (1, 0, 2)


def sorted_edges(graph: nx.Graph) -> list[tuple[int, int]]:
    """Edges as ``(j, h)`` with ``j < h``, in sorted order (the order transfers are applied)."""
    return sorted(tuple(sorted((int(a), int(b)))) for a, b in graph.edges)


def _pick(
    key: torch.Tensor, eligible: torch.Tensor, k: int, largest: bool, generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, a 0/1 indicator of the k eligible entries with the smallest (largest) key; random tie-break.

    Returns ``(indicator, feasible)``; rows with fewer than k eligible entries are infeasible (their
    indicator is not meaningful).
    """
    rows, width = eligible.shape
    gen_device = generator.device if generator is not None else torch.device("cpu")
    perm = torch.rand(rows, width, generator=generator, device=gen_device).argsort(dim=-1).to(key.device)
    score = (-key if largest else key).gather(-1, perm)
    order = score.argsort(dim=-1, stable=True)  # ties keep the random permutation's order
    # then eligible entries first (a second stable sort, so ±inf keys cannot mix the two groups)
    ineligible = (~eligible.gather(-1, perm)).gather(-1, order).to(torch.int8)
    order = order.gather(-1, ineligible.argsort(dim=-1, stable=True))
    chosen = perm.gather(-1, order[:, :k])
    indicator = torch.zeros(rows, width, dtype=torch.float32, device=key.device).scatter_(-1, chosen, 1.0)
    indicator = indicator * eligible
    return indicator, eligible.sum(dim=-1) >= k


def marginal_candidates(current: torch.Tensor, pi: torch.Tensor, k: int, generator=None):
    """The "marginal" rule (TinySR eq. 7–8) for one block.

    ``current`` ``(batch, B)`` is the block's 0/1 mask, ``pi`` ``(B,)`` its layers' marginals (or any
    strictly increasing function of them: the engine passes log π). Returns
    ``(drop, can_corrode, add, can_expand)``: ``drop`` marks the k kept layers with the lowest π, ``add``
    the k dropped layers with the highest π (0/1 float ``(batch, B)``), with per-row feasibility
    ``(batch,)`` bool. Exact ties are broken at random with ``generator``.
    """
    key = pi.to(current.device).unsqueeze(0).expand_as(current)
    kept = current > 0.5
    drop, can_corrode = _pick(key, kept, k, largest=False, generator=generator)
    add, can_expand = _pick(key, ~kept, k, largest=True, generator=generator)
    return drop, can_corrode, add, can_expand


def next_option_candidates(
    current: torch.Tensor, logits: torch.Tensor, options: torch.Tensor, keep: int, k: int, generator=None
):
    """The "next-option" rule (released TinySR code, restricted as documented above) for one block.

    ``current`` ``(batch, B)`` is the block's 0/1 mask, ``logits`` ``(C,)`` its raw option logits,
    ``options`` ``(C, B)`` its option table, ``keep`` = s_j. Corrosion uses the best option o' with
    ``|c ∧ o'| = |c| − k`` and drops ``c ∧ ¬o'``; expansion the best o' with ``|o' ∖ c| = k`` and adds
    ``o' ∧ ¬c``; "best" = largest raw logit, ties at random (one draw shared by both, so for c an option
    they pick the same o'). Returns ``(drop, can_corrode, add, can_expand)`` like :func:`marginal_candidates`.
    """
    options = options.to(device=current.device, dtype=current.dtype)
    overlap = current @ options.T  # (batch, C)
    size = current.sum(dim=-1, keepdim=True)
    gen_device = generator.device if generator is not None else torch.device("cpu")
    tie = torch.rand(current.shape[0], options.shape[0], generator=generator, device=gen_device).to(current.device)
    raw = logits.detach().to(device=current.device, dtype=current.dtype).unsqueeze(0).expand_as(overlap)

    def best(admissible: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        top = torch.where(admissible, raw, torch.full_like(raw, float("-inf"))).max(dim=-1, keepdim=True).values
        at_top = admissible & (raw == top)
        choice = torch.where(at_top, tie, torch.full_like(tie, -1.0)).argmax(dim=-1)
        return options[choice], admissible.any(dim=-1)

    o_corrode, can_corrode = best(overlap == size - k)
    o_expand, can_expand = best((float(keep) - overlap) == k)
    drop = current * (1 - o_corrode)  # o ∧ ¬o'
    add = o_expand * (1 - current)  # o' ∧ ¬o
    return drop, can_corrode, add, can_expand


@dataclass
class TransferSample:
    """One draw of transfers: ``mask`` ``(batch, N)``; per edge ``choice`` in {−1, 0, +1} ``(batch, E)``
    (−1 = m⁻, corrode the first block), the ST ``one_hot`` ``(batch, 3)`` and ``valid`` ``(batch, E, 3)``."""

    mask: torch.Tensor
    choice: torch.Tensor
    one_hot: list[torch.Tensor]
    valid: torch.Tensor


class TransferGates(nn.Module):
    """One 3-way logit vector per topology edge, applied on top of sampled block masks (TinySR §3.1)."""

    def __init__(
        self,
        space: BlockSpace,
        graph: Any = "pairs",
        k: int = 1,
        rule: str = "marginal",
        init: float = INIT_LOGIT,
    ):
        super().__init__()
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise EngineError(f"transfer k must be a positive whole number of layers, got {k!r}")
        if rule not in RULES:
            raise EngineError(f"unknown candidate rule {rule!r}; use one of {list(RULES)}")
        self.space, self.k, self.rule = space, k, rule
        self.graph = make_topology(graph, space.num_blocks)
        self.edges = sorted_edges(self.graph)
        self.q = nn.ParameterList([nn.Parameter(torch.full((3,), float(init))) for _ in self.edges])
        for j, table in enumerate(option_tables(space)):
            self.register_buffer(f"options_{j}", table, persistent=False)

    @property
    def options(self) -> list[torch.Tensor]:
        return [getattr(self, f"options_{j}") for j in range(self.space.num_blocks)]

    # ----- candidate selection -----------------------------------------------------------------
    def _select_marginal(self, j: int, current: torch.Tensor, pi: torch.Tensor, generator):
        b = self.space.blocks[j]
        return marginal_candidates(current, pi[b.start : b.stop], self.k, generator)

    def _select_next_option(self, j: int, current: torch.Tensor, logits: torch.Tensor, generator):
        return next_option_candidates(current, logits, self.options[j], self.space.blocks[j].keep, self.k, generator)

    # ----- sampling ----------------------------------------------------------------------------
    def apply(
        self,
        mask: torch.Tensor,
        block_logits: Sequence[torch.Tensor],
        tau: float,
        scaling: float,
        generator: torch.Generator | None = None,
    ) -> TransferSample:
        """Apply every edge's sampled transfer to the block masks ``mask`` ``(batch, N)`` (TinySR eq. 6–8)."""
        batch, n = mask.shape
        if n != self.space.num_layers:
            raise EngineError(f"mask has {n} layers, the space {self.space.num_layers}")
        logits = [l.detach() for l in block_logits]
        pi = None
        if self.rule == "marginal":
            # ranked in log space: the same order as π, without underflow (see gates.log_marginals)
            pi = log_marginals([l.double() for l in logits], self.options, scaling).to(mask.device)
        current = mask
        choices, one_hots, valids = [], [], []
        for e, (j, h) in enumerate(self.edges):
            hard = current.detach()
            bj, bh = self.space.blocks[j], self.space.blocks[h]
            sj, sh = slice(bj.start, bj.stop), slice(bh.start, bh.stop)
            if self.rule == "marginal":
                drop_j, corr_j, add_j, exp_j = self._select_marginal(j, hard[:, sj], pi, generator)
                drop_h, corr_h, add_h, exp_h = self._select_marginal(h, hard[:, sh], pi, generator)
            else:
                drop_j, corr_j, add_j, exp_j = self._select_next_option(j, hard[:, sj], logits[j], generator)
                drop_h, corr_h, add_h, exp_h = self._select_next_option(h, hard[:, sh], logits[h], generator)
            zeros = torch.zeros_like(hard)
            d_minus, a_minus, d_plus, a_plus = zeros.clone(), zeros.clone(), zeros.clone(), zeros.clone()
            d_minus[:, sj], a_minus[:, sh] = drop_j.to(hard.dtype), add_h.to(hard.dtype)
            d_plus[:, sh], a_plus[:, sj] = drop_h.to(hard.dtype), add_j.to(hard.dtype)
            m_minus = current * (1 - d_minus) + a_minus
            m_plus = current * (1 - d_plus) + a_plus
            valid = torch.stack([corr_j & exp_h, torch.ones_like(corr_j), exp_j & corr_h], dim=-1)
            y, index = hard_gumbel_softmax(self.q[e], tau, scaling, generator, batch=batch, valid=valid)
            y = y.to(current.dtype)
            current = y[:, 0:1] * m_minus + y[:, 1:2] * current + y[:, 2:3] * m_plus
            choices.append(index - 1)
            one_hots.append(y)
            valids.append(valid)
        self._check(current)
        empty = torch.zeros(batch, 0, dtype=torch.long, device=mask.device)
        return TransferSample(
            mask=current,
            choice=torch.stack(choices, dim=-1) if choices else empty,
            one_hot=one_hots,
            valid=torch.stack(valids, dim=1) if valids else torch.zeros(batch, 0, 3, dtype=torch.bool),
        )

    def _check(self, mask: torch.Tensor) -> None:
        """Cheap run-time invariant: every sample keeps exactly the target number of layers, all 0/1."""
        hard = mask.detach()
        ok = ((hard == 0) | (hard == 1)).all() & (hard.sum(dim=-1) == self.space.num_kept).all()
        if not bool(ok):
            raise EngineError(
                f"internal error: a transferred mask lost its kept count {self.space.num_kept} "
                f"(got {hard.sum(dim=-1).tolist()}); please report this with the space and topology"
            )

    # ----- reading out ---------------------------------------------------------------------------
    def probabilities(self, scaling: float, q: Sequence[torch.Tensor] | None = None) -> list[torch.Tensor]:
        return probabilities([v.detach() for v in (self.q if q is None else q)], scaling)

    def decide(self, q: Sequence[torch.Tensor], pi: torch.Tensor) -> dict:
        """Final mask from (EMA) ``q`` and per-layer marginals ``pi``: see :func:`transfer_decision`."""
        return transfer_decision(self.space, self.edges, self.k, q, pi)


def transfer_decision(
    space: BlockSpace,
    edges: Sequence[tuple[int, int]],
    k: int,
    q: Sequence[torch.Tensor],
    pi: torch.Tensor,
) -> dict:
    """TinySR §3.1 decision: per edge the feasible transform with the largest q, then the top-π layers per block.

    ``pi`` may be π or any strictly increasing function of it (log π ranks without underflow).
    Returns ``{"mask": (N,) 0/1 tensor, "counts": kept per block, "choices": per edge −1/0/+1}``. Within a
    block, equal π go to the lower layer index.
    """
    counts = [b.keep for b in space.blocks]
    choices = []
    for (j, h), qe in zip(edges, q):
        values = qe.detach().tolist()
        order = sorted(range(3), key=lambda t: (-values[t], _TIE_PRIORITY[t]))
        for t in order:
            d = t - 1  # −1: corrode j, expand h; +1: expand j, corrode h
            cj, ch = counts[j] + d * k, counts[h] - d * k
            if 0 <= cj <= space.blocks[j].size and 0 <= ch <= space.blocks[h].size:
                counts[j], counts[h] = cj, ch
                choices.append(d)
                break
    mask = torch.zeros(space.num_layers, dtype=torch.float32)
    pi = pi.detach().cpu().double()
    for b, c in zip(space.blocks, counts):
        order = torch.argsort(-pi[b.start : b.stop], stable=True)[:c]
        mask[b.start + order] = 1.0
    if int(mask.sum()) != space.num_kept:  # pragma: no cover - invariant
        raise EngineError("internal error: the transfer decision lost the kept count")
    return {"mask": mask, "counts": counts, "choices": choices}
