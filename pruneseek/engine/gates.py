"""Block gates: TinyFusion-style learned masks over a block-factored space (docs/design.md §4, §5).

Each block j owns a logit vector over its ``C(B_j, s_j)`` options (the rows of
``BlockSpace.options(j)``, in ``itertools.combinations`` order), initialised to the constant 0.02 of the
reference code. A mask is drawn per sample by a hard Gumbel-softmax over ``logits · scaling`` with
temperature τ (TinyFusion; TinySR eq. 3):

    y_soft = softmax((scaling · logits + g) / τ),   g ~ Gumbel(0, 1)
    y      = y_hard + (y_soft − stopgrad(y_soft))          (straight-through)
    m_j    = y @ options_j

The forward pass sees an exact one-hot (written so that no rounding can leak into it), the backward
pass the soft sample's gradient. The free functions (:func:`probabilities`, :func:`marginals`,
:func:`decide`, :func:`confidence`) take and return plain torch tensors so that an independent
simulator can be checked against them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from pruneseek import recipes
from pruneseek.errors import EngineError
from pruneseek.spaces import BlockSpace

#: The reference code's initial logit (constant for every option).
INIT_LOGIT = recipes.LEARNED_MASK["init_logit"]


def option_tables(space: BlockSpace, dtype: torch.dtype = torch.float32, device=None) -> list[torch.Tensor]:
    """Every block's options as a float ``(C_j, B_j)`` tensor, rows in ``itertools.combinations`` order."""
    return [torch.as_tensor(space.options(j), dtype=dtype, device=device) for j in range(space.num_blocks)]


def gumbel_noise(
    shape: Sequence[int], generator: torch.Generator | None, device=None, dtype=torch.float32
) -> torch.Tensor:
    """Standard Gumbel noise ``−log(−log U)``, drawn on the generator's device and moved to ``device``."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(tuple(shape), generator=generator, device=gen_device, dtype=torch.float64)
    u = u.clamp_min(torch.finfo(torch.float64).tiny)
    return (-torch.log(-torch.log(u))).to(device=device, dtype=dtype)


def hard_gumbel_softmax(
    logits: torch.Tensor,
    tau: float,
    scaling: float = 1.0,
    generator: torch.Generator | None = None,
    batch: int | None = None,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample straight-through Gumbel-softmax sample (TinyFusion; Jang et al. 2016).

    ``logits`` is ``(C,)`` (one draw per row of a batch of ``batch``) or ``(batch, C)``. ``valid``
    (bool, broadcastable to ``(batch, C)``) masks options out (−∞) before sampling; every row needs at
    least one valid option. Returns ``(y, index)``: ``y`` is ``(batch, C)``, exactly one-hot in the forward
    pass with the gradient of ``softmax((scaling·logits + g)/τ)``; ``index`` the chosen options ``(batch,)``.
    """
    if tau <= 0:
        raise EngineError(f"the Gumbel-softmax temperature must be positive, got {tau}")
    if logits.dim() == 1:
        logits = logits.unsqueeze(0).expand(1 if batch is None else batch, -1)
    rows, count = logits.shape
    g = gumbel_noise((rows, count), generator, device=logits.device, dtype=logits.dtype)
    z = (logits * scaling + g) / tau
    if valid is not None:
        valid = valid.to(torch.bool).expand(rows, count)
        if not bool(valid.any(dim=-1).all()):
            raise EngineError("every sample needs at least one valid option to sample from")
        z = torch.where(valid, z, torch.full_like(z, float("-inf")))
    soft = torch.softmax(z, dim=-1)
    index = z.detach().argmax(dim=-1)
    hard = torch.zeros_like(soft).scatter_(-1, index.unsqueeze(-1), 1.0)
    return hard + (soft - soft.detach()), index


def probabilities(logits: torch.Tensor | Sequence[torch.Tensor], scaling: float = 1.0):
    """``softmax(scaling · logits)`` over the last dim; a list of per-block logits gives a list."""
    if isinstance(logits, torch.Tensor):
        return torch.softmax(logits * scaling, dim=-1)
    return [torch.softmax(l * scaling, dim=-1) for l in logits]


def marginals(
    probs: torch.Tensor | Sequence[torch.Tensor], options: torch.Tensor | Sequence[torch.Tensor]
) -> torch.Tensor:
    """Exact per-layer keep probability π_i = Σ_{o: o_i = 1} p_j(o) (TinySR eq. 7), concatenated over blocks.

    ``probs[j]`` is ``(..., C_j)`` and ``options[j]`` ``(C_j, B_j)``; the result is ``(..., N)``. A single
    tensor for each is one block.
    """
    if isinstance(probs, torch.Tensor):
        probs, options = [probs], [options]
    if len(probs) != len(options):
        raise EngineError(f"got probabilities for {len(probs)} blocks but options for {len(options)}")
    return torch.cat([p @ o.to(p.dtype) for p, o in zip(probs, options)], dim=-1)


def log_marginals(
    logits: torch.Tensor | Sequence[torch.Tensor], options: torch.Tensor | Sequence[torch.Tensor], scaling: float = 1.0
) -> torch.Tensor:
    """``log π`` from logits, computed in log space: ``log π_i = logsumexp_{o: o_i=1} log_softmax(scaling·θ)_o``.

    Orders layers exactly as :func:`marginals` does, without π underflowing to 0 when the scaled logits
    are far apart; the engine ranks layers by it (candidate rule "marginal" and the TinySR decision).
    ``(N,)`` for per-block ``(C_j,)`` logits; a layer in no option gets −∞.
    """
    if isinstance(logits, torch.Tensor):
        logits, options = [logits], [options]
    parts = []
    for l, o in zip(logits, options):
        lp = torch.log_softmax(l * scaling, dim=-1)
        member = o.to(dtype=torch.bool, device=lp.device)
        terms = torch.where(member, lp.unsqueeze(-1), torch.full_like(member, float("-inf"), dtype=lp.dtype))
        parts.append(torch.logsumexp(terms, dim=-2))
    return torch.cat(parts, dim=-1)


def decide(
    logits: torch.Tensor | Sequence[torch.Tensor], options: torch.Tensor | Sequence[torch.Tensor]
) -> torch.Tensor:
    """The decided mask (docs/design.md §4): per block the option with the largest (EMA) logit; ``(N,)`` of 0/1.

    Exact ties go to the lowest option index (``argmax``), so an untrained gate decides option 0.
    """
    if isinstance(logits, torch.Tensor):
        logits, options = [logits], [options]
    return torch.cat([o[l.argmax(dim=-1)] for l, o in zip(logits, options)], dim=-1)


def confidence(logits: torch.Tensor | Sequence[torch.Tensor], scaling: float = 1.0) -> torch.Tensor:
    """Per block, the decided option's probability ``softmax(scaling · logits)`` at that scaling; ``(K,)``."""
    if isinstance(logits, torch.Tensor):
        logits = [logits]
    return torch.stack([torch.softmax(l * scaling, dim=-1).max(dim=-1).values for l in logits], dim=-1)


@dataclass
class GateSample:
    """One draw of block masks: ``mask`` ``(batch, N)``, per-block ``one_hot`` ``(batch, C_j)``,
    ``index`` ``(batch, K)``."""

    mask: torch.Tensor
    one_hot: list[torch.Tensor]
    index: torch.Tensor


class BlockGates(nn.Module):
    """Per-block option logits over a :class:`BlockSpace` (docs/design.md §4, TinyFusion's learnable mask)."""

    def __init__(self, space: BlockSpace, init: float = INIT_LOGIT):
        super().__init__()
        self.space = space
        self.logits = nn.ParameterList(
            [nn.Parameter(torch.full((b.num_options,), float(init))) for b in space.blocks]
        )
        for j, table in enumerate(option_tables(space)):
            self.register_buffer(f"options_{j}", table, persistent=False)

    @property
    def options(self) -> list[torch.Tensor]:
        return [getattr(self, f"options_{j}") for j in range(self.space.num_blocks)]

    def sample(self, batch: int, tau: float, scaling: float, generator: torch.Generator | None = None) -> GateSample:
        """A mask per sample: per block a hard Gumbel-softmax option, ``one_hot @ options`` (docs/design.md §4)."""
        one_hots, indices, parts = [], [], []
        for logits, options in zip(self.logits, self.options):
            y, index = hard_gumbel_softmax(logits, tau, scaling, generator, batch=batch)
            one_hots.append(y)
            indices.append(index)
            parts.append(y @ options)
        return GateSample(torch.cat(parts, dim=-1), one_hots, torch.stack(indices, dim=-1))

    def probabilities(self, scaling: float, logits: Sequence[torch.Tensor] | None = None) -> list[torch.Tensor]:
        return probabilities([l.detach() for l in (self.logits if logits is None else logits)], scaling)

    def marginals(self, scaling: float, logits: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """π for every layer, from the current (or given, e.g. EMA) logits at ``scaling``; detached."""
        return marginals(self.probabilities(scaling, logits), self.options)


class LogitEMA:
    """Exponential moving average of gate logits: ``ema ← decay·ema + (1 − decay)·logits`` after each step.

    Starts at the initial logits (docs/design.md §4: decay 0.999; the decision reads the EMA).
    """

    def __init__(self, logits: Sequence[torch.Tensor], decay: float = recipes.LEARNED_MASK["ema_decay"]):
        if not 0.0 <= decay < 1.0:
            raise EngineError(f"EMA decay must lie in [0, 1), got {decay}")
        self.decay = float(decay)
        self.value = [l.detach().clone() for l in logits]

    @torch.no_grad()
    def update(self, logits: Sequence[torch.Tensor]) -> None:
        for v, l in zip(self.value, logits):
            v.mul_(self.decay).add_(l.detach(), alpha=1.0 - self.decay)

    def state_dict(self) -> list[torch.Tensor]:
        return [v.clone() for v in self.value]

    def load_state_dict(self, state: Sequence[torch.Tensor]) -> None:
        self.value = [v.clone() for v in state]
