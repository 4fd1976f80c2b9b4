"""The one training step, shared by every loop that trains weights or gates.

Five loops train something: the learned mask search (:mod:`pruneseek.engine.search`), the fair recovery
(:mod:`pruneseek.recovery`), SnapFusion's robust training (:mod:`pruneseek.strategies.snapfusion`), the
engine benchmark (:mod:`pruneseek.bench.engine`) and teacher training (:mod:`pruneseek.teacher`). The
comparison's fairness claim ("the same optimiser for every strategy") rests on their taking the *same*
step, so the step lives here once:

- :class:`Trainer` — given the loss of a batch: read its value, back-propagate, (data parallel: average
  the gradients), clip the global gradient norm, and apply one optimiser step. **Non-finite policy**: a step
  whose loss or gradient norm is not finite is skipped (gradients cleared, no update) and counted; more
  than ``max_nonfinite`` such steps in a row stop the run with the error the caller builds, and the model
  keeps the last good state, because no non-finite update was ever applied.
- :func:`lora_adapters` — LoRA as a context manager: wrap the target linear layers with ``peft`` adapters,
  train only the adapters, and on exit remove them (discarding, merging or keeping the update) and restore
  every parameter's ``requires_grad``.
- :func:`endless` — batches without end from a callable (called again per pass) or a re-iterable.
- :func:`run_steps` — the loop around the step (batch, loss, step, an ``after`` hook for EMA, discriminator and
  checkpoints, a progress bar); the fair recovery and ``pruneseek retrain`` both run through it. The search loop
  keeps its own (it samples masks and checks the gates across processes every step) but takes the same step.

LoRA (Hu et al., arXiv:2106.09685) is the weight update ΔΦ of the search: TinyFusion (arXiv:2412.01199,
§3) trains it jointly with the mask logits at rank 8, α 16; TSD-SR uses rank 64, α 64.

**Small layers run merged.** peft computes ``W x + s·B(A x)``: three products per call. On a layer of at most
:data:`SMALL_LINEAR` weights (the miniature's, 64 wide) their per-call overhead outweighs the arithmetic, so
:func:`inject_lora` gives such float32 ``nn.Linear`` layers :class:`SmallLoraLinear`'s forward, the same function
as one product: ``(W + s·B A) x``. It is the same LoRA module (parameters, state dict, ``merge``, peft's
helpers), equal up to rounding, and about a fifth faster per search step on the miniature. The merged weight is
kept for the backward pass, which is why it is limited to small layers; SD3-medium's layers (1536 wide) keep
peft's form.
"""
from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from pruneseek.errors import EngineError

ADAPTER = "pruneseek"
#: What happens to LoRA adapters when their context ends.
LORA_AFTER = ("discard", "merge", "keep")


# ----- batches ----------------------------------------------------------------------------------------------------

def endless(batches: Callable[[], Iterable] | Iterable, error: type[Exception] = EngineError) -> Iterator:
    """Batches without end: a callable is called again, a re-iterable re-iterated, whenever a pass ends.

    An empty pass, or a one-shot iterator that runs out, raises ``error``.
    """
    passes = 0
    while True:
        source = batches() if callable(batches) else batches
        it = iter(source)
        if passes and it is source and not callable(batches):
            raise error("the batch iterator ran out; pass a callable returning a fresh iterator or more batches")
        got = False
        for item in it:
            got = True
            yield item
        if not got:
            raise error("the batch source yielded no batches; give it training data")
        passes += 1


# ----- the step ---------------------------------------------------------------------------------------------------

class Trainer:
    """One optimiser step with clipping and the non-finite policy (module docstring).

    ``params`` are the parameters whose gradient norm is clipped (``clip_norm`` 0 or ``None``: no clip).
    ``stop(consecutive)`` builds the exception raised when more than ``max_nonfinite`` steps in a row were
    not finite. ``parallel`` (optional, a :class:`~pruneseek.engine.distributed.DataParallel`) makes the
    finiteness and the loss value agree across processes and averages the gradients before clipping.
    ``scaler`` (a ``torch.amp.GradScaler``, for float16 autocast): the loss is scaled before the backward pass and
    the gradients unscaled before clipping; an overflowing step is a non-finite step like any other (skipped,
    counted) and lowers the scale.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, params: Sequence[nn.Parameter], *,
                 clip_norm: float | None = 1.0, max_nonfinite: int = 10,
                 stop: Callable[[int], Exception] | None = None, parallel: Any = None, scaler: Any = None):
        self.optimizer = optimizer
        self.params = list(params)
        self.clip_norm = clip_norm
        self.max_nonfinite = int(max_nonfinite)
        self.stop = stop or (lambda n: EngineError(f"the loss or its gradient was not finite {n} steps in a row"))
        self.parallel = parallel if parallel is not None and getattr(parallel, "active", False) else None
        self.scaler = scaler
        self.nonfinite = 0
        self.consecutive = 0
        self.value = math.nan

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def read(self, loss: torch.Tensor) -> tuple[float, bool]:
        """The loss value (averaged over processes) and whether it is finite on every process."""
        value = float(loss.detach())
        finite = math.isfinite(value)
        if self.parallel is not None:
            finite = self.parallel.all_true(finite, loss.device)
            value = self.parallel.mean(value, loss.device)
        self.value = value
        return value, finite

    def apply(self, loss: torch.Tensor, finite: bool) -> bool:
        """Back-propagate a finite ``loss``, clip, step; or skip and count. True when an update was applied."""
        unscaled = False
        if finite:
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            if self.parallel is not None:
                self.parallel.average_gradients(self.params)
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
                unscaled = True
            norm = torch.nn.utils.clip_grad_norm_(
                [p for p in self.params if p.grad is not None], self.clip_norm or float("inf")
            )
            finite = bool(torch.isfinite(norm))
        if not finite:
            if unscaled:
                self.scaler.update()  # an overflow: the next steps run at a lower scale
            self.zero_grad()
            self.nonfinite += 1
            self.consecutive += 1
            if self.consecutive > self.max_nonfinite:
                raise self.stop(self.consecutive)
            return False
        self.consecutive = 0
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return True

    def step(self, loss: torch.Tensor) -> bool:
        """:meth:`read` then :meth:`apply`: one whole step for ``loss`` (gradients cleared beforehand)."""
        _, finite = self.read(loss)
        return self.apply(loss, finite)

    def state(self) -> dict[str, int]:
        return {"nonfinite": self.nonfinite, "consecutive": self.consecutive}

    def load_state(self, state: dict[str, int]) -> None:
        self.nonfinite, self.consecutive = int(state["nonfinite"]), int(state["consecutive"])


# ----- LoRA -------------------------------------------------------------------------------------------------------

def linear_targets(model: nn.Module, within: nn.Module | None = None) -> list[str]:
    """Full names (in ``model``) of every linear layer inside ``within`` (default: the whole model): ``nn.Linear``
    and transformers' ``Conv1D`` (GPT-2's transposed linear, which peft adapts too)."""
    scope = {id(m) for m in (within if within is not None else model).modules()}
    return [name for name, m in model.named_modules()
            if (isinstance(m, nn.Linear) or _is_conv1d(m)) and id(m) in scope and name]


def _is_conv1d(module: nn.Module) -> bool:
    cls = type(module)
    return cls.__name__ == "Conv1D" and cls.__module__.startswith("transformers.")


#: Weights (in × out) of the largest linear layer whose LoRA runs merged (:class:`SmallLoraLinear`): 256 KB in float32.
SMALL_LINEAR = 1 << 16


@functools.cache
def _small_lora_linear() -> type:
    """:class:`SmallLoraLinear`, defined on first use so that importing this module does not import peft."""
    from peft.tuners.lora.layer import Linear

    class SmallLoraLinear(Linear):
        """peft's LoRA linear layer (placed without dropout) whose forward, with only this project's adapter active,
        is one product with the merged weight ``W + s·B A`` (module docstring); anything else is peft's own forward."""

        def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            base, a, b = self.base_layer, self.lora_A[ADAPTER].weight, self.lora_B[ADAPTER].weight
            if args or kwargs or self.disable_adapters or self.merged or self.active_adapters != [ADAPTER] \
                    or len(self.lora_A) != 1 \
                    or base.weight.dtype != a.dtype:  # e.g. the base cast to bf16 after the adapters were placed
                return super().forward(x, *args, **kwargs)
            return nn.functional.linear(x, torch.addmm(base.weight, b, a, alpha=self.scaling[ADAPTER]), base.bias)

    SmallLoraLinear.__module__, SmallLoraLinear.__qualname__ = __name__, "SmallLoraLinear"  # pickles by name
    return SmallLoraLinear


def __getattr__(name: str) -> Any:
    if name == "SmallLoraLinear":
        return _small_lora_linear()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _merge_small_layers(model: nn.Module) -> None:
    """Give every float32 ``nn.Linear`` LoRA layer of at most :data:`SMALL_LINEAR` weights, placed without dropout,
    the merged forward."""
    from peft.tuners.lora.layer import Linear

    small = _small_lora_linear()
    for module in model.modules():
        base = getattr(module, "base_layer", None)
        if type(module) is Linear and type(base) is nn.Linear and base.weight.dtype == torch.float32 \
                and base.weight.numel() <= SMALL_LINEAR and ADAPTER in module.lora_A \
                and isinstance(module.lora_dropout[ADAPTER], nn.Identity):
            module.__class__ = small


def inject_lora(model: nn.Module, rank: int, alpha: float, target_modules: Sequence[str] | str,
                init_lora_weights: bool | str = True, seed: int | None = None) -> list[nn.Parameter]:
    """Wrap ``target_modules`` of ``model`` in LoRA adapters (in place, peft's suffix match); return their
    parameters. ``seed`` seeds the adapters' initialisation without touching the global RNG state."""
    from peft import LoraConfig, inject_adapter_in_model

    if isinstance(target_modules, str):
        target_modules = [target_modules]
    if not target_modules:
        raise EngineError("LoRA needs at least one target module; name the linear layers to adapt")
    config = LoraConfig(r=int(rank), lora_alpha=alpha, target_modules=list(target_modules),
                        init_lora_weights=init_lora_weights)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        try:
            inject_adapter_in_model(config, model, adapter_name=ADAPTER)
        except ValueError as err:
            raise EngineError(f"could not place LoRA on target modules {list(target_modules)}: {err}") from None
    _merge_small_layers(model)
    params = lora_parameters(model)
    if not params:
        raise EngineError(f"no LoRA parameters were created for target modules {list(target_modules)}")
    for p in params:  # on a half-precision base the adapters are trained in float32 (the master copy)
        if p.dtype != torch.float32:
            p.data = p.data.float()
    return params


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The LoRA parameters (``lora_A`` / ``lora_B``) inside ``model``."""
    return [p for name, p in model.named_parameters() if "lora_" in name]


def remove_lora(model: nn.Module, merge: bool = False) -> int:
    """Replace every LoRA-wrapped module by its base layer (with ``merge``: ΔW folded in first); the count."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    wrapped = [(name, m) for name, m in model.named_modules() if isinstance(m, BaseTunerLayer)]
    for name, module in wrapped:
        if merge:
            module.merge()
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, module.get_base_layer())
    return len(wrapped)


@contextlib.contextmanager
def trainable_only(model: nn.Module, params: Iterable[nn.Parameter]) -> Iterator[list[nn.Parameter]]:
    """Within the block only ``params`` of ``model`` require gradients; every flag is restored afterwards."""
    params = list(params)
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        yield params
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@contextlib.contextmanager
def lora_adapters(model: nn.Module, targets: Sequence[str], rank: int, alpha: float, *,
                  init: bool | str = True, seed: int | None = None, after: str = "discard"
                  ) -> Iterator[list[nn.Parameter]]:
    """LoRA on ``targets`` of ``model`` for the duration of the block; yields the adapter parameters, which are
    the only trainable ones inside it. On exit the adapters are discarded, merged into the weights, or kept
    (``after``), and every parameter's ``requires_grad`` is restored."""
    if after not in LORA_AFTER:
        raise EngineError(f"lora_after must be one of {list(LORA_AFTER)}, got {after!r}")
    flags = [(p, p.requires_grad) for p in model.parameters()]
    params = inject_lora(model, rank, alpha, targets, init, seed=seed)
    try:
        with trainable_only(model, params):
            yield params
    finally:
        if after != "keep":
            remove_lora(model, merge=after == "merge")
        for p, flag in flags:
            p.requires_grad_(flag)


# ----- the loop ---------------------------------------------------------------------------------------------------

def run_steps(trainer: Trainer, batches: Iterator, steps: int,
              loss_of: Callable[[Any, int], tuple[torch.Tensor, Any]], *, first_step: int = 0,
              history: list[float] | None = None, after: Callable[[int, bool, bool, Any], None] | None = None,
              desc: str = "train", progress: bool = True) -> list[float]:
    """Steps ``first_step`` … ``steps − 1``: next batch, ``loss_of(batch, step) → (loss, extra)``, one
    :class:`Trainer` step, then ``after(step, applied, finite, extra)`` (EMA, a discriminator, checkpoints). The
    loss values go to ``history`` (returned). Recovery and retraining run through this one loop."""
    from tqdm.auto import tqdm

    history = [] if history is None else history
    with tqdm(total=steps, initial=first_step, desc=desc, disable=not progress, leave=False) as bar:
        for step in range(first_step, steps):
            batch = next(batches)
            trainer.zero_grad()
            loss, extra = loss_of(batch, step)
            value, finite = trainer.read(loss)
            history.append(value)
            applied = trainer.apply(loss, finite)
            if after is not None:
                after(step, applied, finite, extra)
            bar.update(1)
            if applied and step % 10 == 0:
                bar.set_postfix(loss=f"{value:.4g}")
    return history


# ----- precision --------------------------------------------------------------------------------------------------

#: ``--dtype`` names → torch dtypes.
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_loss(loss_fn: Callable, dtype: torch.dtype, device_type: str) -> Callable:
    """``loss_fn`` run under ``torch.autocast(device_type, dtype)`` (a no-op wrapper at float32), its value
    returned in float32: half-precision weights, float32 trainable parameters, gates and optimiser state."""
    if dtype == torch.float32:
        return loss_fn

    def wrapped(*args: Any, **kwargs: Any) -> torch.Tensor:
        with torch.autocast(device_type=device_type, dtype=dtype):
            loss = loss_fn(*args, **kwargs)
        return loss.float()

    return wrapped


def quiet_cast(model, dtype) -> None:
    """``model.to(dtype)`` without diffusers' advice to load in that dtype instead (the weights were needed at full
    precision for the calibration data first)."""
    try:
        from diffusers.utils import logging as diffusers_logging
    except ImportError:  # pragma: no cover - diffusers is a dependency
        model.to(dtype=dtype)
        return
    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        model.to(dtype=dtype)
    finally:
        diffusers_logging.set_verbosity(level)
