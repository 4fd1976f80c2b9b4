"""The layer-mask engine: learned depth-pruning masks (docs/design.md §2, §4, §5).

Layers of the package, imported one way (strategies → engine → spaces):

- :mod:`~pruneseek.engine.schedules` — τ and scaling schedules (optax style).
- :mod:`~pruneseek.engine.adapters` — how to call one block and blend it per sample (TinySR eq. 1).
- :mod:`~pruneseek.engine.stack` — :class:`MaskedStack`, the masked forward in *blend* or *skip* mode, and an
  observation hook (:meth:`MaskedStack.observe`) that reports each computed block's input and output.
- :mod:`~pruneseek.engine.gates` — TinyFusion block gates, hard Gumbel-softmax, marginals, decisions.
- :mod:`~pruneseek.engine.transfer` — TinySR dynamic inter-block activation (expansion-corrosion).
- :mod:`~pruneseek.engine.search` — the joint mask + weight training loop, NaN guard, results.
- LoRA for the weight update ΔΦ and the optimiser step live in :mod:`pruneseek.training` (shared with recovery).
"""
from __future__ import annotations

from pruneseek.errors import EngineError, NonFiniteLossError  # noqa: F401 (re-exported)
from pruneseek.engine.adapters import Adapter, MMDiTStream, SingleStream, blend
from pruneseek.engine.checkpoint import CheckpointError, Checkpointing
from pruneseek.engine.distributed import DataParallel
from pruneseek.engine.gates import (
    BlockGates,
    GateSample,
    LogitEMA,
    confidence,
    decide,
    hard_gumbel_softmax,
    log_marginals,
    marginals,
    option_tables,
    probabilities,
)
from pruneseek.training import inject_lora, lora_parameters, remove_lora
from pruneseek.engine.schedules import (
    Schedule,
    constant,
    cosine,
    default_scaling,
    default_tau,
    exponential,
    join,
    linear,
    make_schedule,
)
from pruneseek.engine.search import MaskLearner, SearchConfig, SearchResult, infer_batch_size, run_search
from pruneseek.engine.stack import MaskedStack
from pruneseek.engine.transfer import (
    TransferGates,
    TransferSample,
    marginal_candidates,
    next_option_candidates,
    transfer_decision,
)

__all__ = [
    "Adapter",
    "BlockGates",
    "CheckpointError",
    "Checkpointing",
    "DataParallel",
    "EngineError",
    "GateSample",
    "LogitEMA",
    "MMDiTStream",
    "MaskLearner",
    "MaskedStack",
    "NonFiniteLossError",
    "Schedule",
    "SearchConfig",
    "SearchResult",
    "SingleStream",
    "TransferGates",
    "TransferSample",
    "blend",
    "confidence",
    "constant",
    "cosine",
    "decide",
    "default_scaling",
    "default_tau",
    "exponential",
    "hard_gumbel_softmax",
    "infer_batch_size",
    "inject_lora",
    "join",
    "linear",
    "log_marginals",
    "lora_parameters",
    "make_schedule",
    "marginal_candidates",
    "marginals",
    "next_option_candidates",
    "option_tables",
    "probabilities",
    "remove_lora",
    "run_search",
    "transfer_decision",
]
