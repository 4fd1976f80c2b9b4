"""The joint mask + weight search loop (docs/design.md §4; TinySR eq. 2 in its single-loop form).

Model-agnostic: the caller supplies the model (an ``nn.Module`` holding the block ``ModuleList``), the
:class:`~pruneseek.engine.stack.MaskedStack` over those blocks, a closure
``loss_fn(batch, masks, mode) -> scalar tensor`` that runs the target's forward under ``masks``
``(batch, N)`` in ``mode``, a source of batches, a :class:`MaskLearner` (block gates, optionally with
transfer gates) and a :class:`SearchConfig`. Each step:

1. τ, scaling ← schedules(step); masks ← learner.sample(batch size, τ, scaling, generator);
2. loss ← loss_fn(batch, masks, mode); backward; clip the gradient norm of all trainable parameters;
3. one AdamW step (weights at ``weight_lr``, gate logits at ``gate_lr``, weight decay 0);
4. EMA of the gate logits (decay 0.999).

NaN guard: a step whose loss or gradient norm is not finite is skipped — no optimiser step, no EMA
update — and counted. More than ``max_nonfinite`` such steps in a row stop the run with
:class:`~pruneseek.engine.NonFiniteLossError`, whose ``result`` is built from the last good state; the
loop never applies a non-finite update.

Data parallel (:mod:`pruneseek.engine.distributed`): with ``parallel`` of N processes each step takes one
*global* batch, draws the Gumbel noise of all its samples from the shared seeded generator, keeps its own
shard of samples and masks, and averages the gradients over processes before clipping, so N processes
with global batch B follow one process with batch B (up to the order of floating-point sums); the gates
are checked bit-identical on every rank after every step. Exact resume
(:mod:`pruneseek.engine.checkpoint`): with ``checkpointing`` the loop saves every ``every`` steps and at
the end, and continues a saved run from its next step.

The decision reads the EMA logits at the final scaling (docs/design.md §4; with transfer gates, TinySR §3.1).
The result also records what the search cost (forward/backward passes in samples, block evaluations,
seconds) and a trajectory of the EMA marginals π about every ``steps / 50`` steps and at the last step.
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from pruneseek import recipes
from pruneseek.errors import EngineError, NonFiniteLossError
from pruneseek.engine.checkpoint import Checkpointing, load_checkpoint, restore_rng_states, rng_states, save_checkpoint
from pruneseek.engine.distributed import DataParallel
from pruneseek.engine.gates import (
    INIT_LOGIT,
    BlockGates,
    LogitEMA,
    confidence,
    decide,
    log_marginals,
    marginals,
    probabilities,
)
from pruneseek.engine.schedules import default_tau, make_schedule
from pruneseek.engine.stack import MODES, MaskedStack
from pruneseek.engine.transfer import TransferGates
from pruneseek.spaces import BlockSpace
from pruneseek.training import LORA_AFTER, Trainer, endless, linear_targets, lora_adapters, trainable_only

WEIGHT_UPDATES = ("lora", "full", "frozen")
#: About this many snapshots of the marginals are kept in :attr:`SearchResult.trajectory`.
TRAJECTORY_POINTS = 50


class MaskLearner(nn.Module):
    """The learnable mask distribution: :class:`BlockGates` plus, for TinySR, :class:`TransferGates`.

    ``share_across_batch`` draws one mask per batch (the reference code's behaviour, which lets *skip*
    mode skip at batch > 1); the default draws one per sample.
    """

    def __init__(
        self,
        space: BlockSpace,
        transfer: TransferGates | None = None,
        share_across_batch: bool = False,
        init: float = INIT_LOGIT,
    ):
        super().__init__()
        if transfer is not None and transfer.space != space:
            raise EngineError("the transfer gates were built for a different search space than the block gates")
        self.space = space
        self.gates = BlockGates(space, init)
        self.transfer = transfer
        self.share_across_batch = bool(share_across_batch)

    def gate_parameters(self) -> list[nn.Parameter]:
        """Block logits, then (if any) the per-edge q vectors — the order the EMA keeps."""
        return list(self.gates.logits) + (list(self.transfer.q) if self.transfer is not None else [])

    def sample(self, batch: int, tau: float, scaling: float, generator: torch.Generator | None = None) -> torch.Tensor:
        """Masks ``(batch, N)``, exactly 0/1 in the forward pass, straight-through in the backward pass."""
        rows = 1 if self.share_across_batch else batch
        mask = self.gates.sample(rows, tau, scaling, generator).mask
        if self.transfer is not None:
            mask = self.transfer.apply(mask, list(self.gates.logits), tau, scaling, generator).mask
        return mask.expand(batch, -1) if self.share_across_batch else mask

    def decide(self, values: Sequence[torch.Tensor] | None = None, scaling: float = 100.0) -> dict:
        """The decision from gate values (default: the current parameters; the loop passes the EMA).

        Block gates alone: per block the largest-logit option (docs/design.md §4). With transfer gates: the
        largest-q feasible transform per edge, then the top-π layers per block (TinySR §3.1).
        ``confidence`` is the product over blocks of the decided option's probability at ``scaling``
        (the largest-logit option's, docs/design.md §4); with transfer gates, each edge's chosen transform
        probability is reported under ``transfer``.
        """
        values = [v.detach().cpu() for v in (values if values is not None else self.gate_parameters())]
        k = self.space.num_blocks
        logits, q = values[:k], values[k:]
        options = [o.cpu() for o in self.gates.options]
        probs = probabilities([l.double() for l in logits], scaling)
        pi = marginals(probs, [o.double() for o in options])
        block_conf = confidence([l.double() for l in logits], scaling)
        out: dict[str, Any] = {
            "probabilities": [p.tolist() for p in probs],
            "marginals": pi.tolist(),
            "block_confidence": block_conf.tolist(),
            "confidence": float(block_conf.prod()),
            "logits": [l.tolist() for l in logits],
            "transfer": None,
        }
        if self.transfer is None:
            mask = decide(logits, options)
        else:
            decision = self.transfer.decide(q, log_marginals([l.double() for l in logits], options, scaling))
            mask = decision["mask"]
            q_probs = probabilities([v.double() for v in q], scaling)
            out["transfer"] = {
                "rule": self.transfer.rule,
                "k": self.transfer.k,
                "edges": [list(e) for e in self.transfer.edges],
                "q": [v.tolist() for v in q],
                "probabilities": [p.tolist() for p in q_probs],
                "choices": decision["choices"],
                "confidence": [float(p[c + 1]) for p, c in zip(q_probs, decision["choices"])],
                "counts": decision["counts"],
            }
        out["mask"] = [int(v) for v in mask.tolist()]
        return out


@dataclass
class SearchConfig:
    """Hyperparameters of one search (defaults: TinyFusion's recipe, :data:`pruneseek.recipes.LEARNED_MASK`)."""

    steps: int = 100
    #: τ schedule: a number, callable or schedule mapping; ``None`` = linear 4 → 0.1 over the run.
    tau: Any = None
    #: Logit scaling schedule (constant 100).
    scaling: Any = recipes.LEARNED_MASK["scaling"]
    #: "lora" (train LoRA adapters only), "full" (all model parameters) or "frozen" (none).
    weight_update: str = recipes.LEARNED_MASK["weight_update"]
    lora_rank: int = recipes.LEARNED_MASK["lora_rank"]
    lora_alpha: float = recipes.LEARNED_MASK["lora_alpha"]
    #: Module names for LoRA; ``None`` = every ``nn.Linear`` inside the stack's blocks.
    lora_targets: Sequence[str] | None = None
    lora_init: bool | str = recipes.LEARNED_MASK["lora_init"]
    #: After the search: "discard" the adapters (model as given), "merge" them into the weights, or "keep".
    lora_after: str = recipes.LEARNED_MASK["lora_after"]
    weight_lr: float = recipes.LEARNED_MASK["weight_lr"]
    #: Gate (and q) learning rate; TinyFusion uses 10× the weight lr.
    gate_lr: float = recipes.LEARNED_MASK["gate_lr"]
    weight_decay: float = recipes.LEARNED_MASK["weight_decay"]
    #: Gradient-norm clip over all trainable parameters; 0 or ``None`` disables clipping.
    clip_norm: float | None = recipes.LEARNED_MASK["clip_norm"]
    ema_decay: float = recipes.LEARNED_MASK["ema_decay"]
    mode: str = recipes.LEARNED_MASK["mode"]
    seed: int = 0
    #: Largest number of consecutive non-finite steps tolerated; one more stops the run.
    max_nonfinite: int = recipes.LEARNED_MASK["max_nonfinite"]
    progress: bool = True
    desc: str = "mask search"
    #: Scale the loss against float16 underflow (``torch.amp.GradScaler``; overflowing steps are skipped and counted).
    loss_scaling: bool = False

    def validate(self) -> "SearchConfig":
        if not isinstance(self.steps, int) or isinstance(self.steps, bool) or self.steps < 1:
            raise EngineError(f"steps must be a positive whole number, got {self.steps!r}")
        if self.weight_update not in WEIGHT_UPDATES:
            raise EngineError(f"weight_update must be one of {list(WEIGHT_UPDATES)}, got {self.weight_update!r}")
        if self.lora_after not in LORA_AFTER:
            raise EngineError(f"lora_after must be one of {list(LORA_AFTER)}, got {self.lora_after!r}")
        if self.mode not in MODES:
            raise EngineError(f"mode must be one of {list(MODES)}, got {self.mode!r}")
        for name in ("weight_lr", "gate_lr"):
            if not getattr(self, name) > 0:
                raise EngineError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.max_nonfinite < 0:
            raise EngineError(f"max_nonfinite must be 0 or more, got {self.max_nonfinite}")
        return self

    def to_dict(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = v if (v is None or isinstance(v, (int, float, str, bool, list, dict))) else repr(v)
            if isinstance(v, tuple):
                out[f.name] = list(v)
        return out


@dataclass
class SearchResult:
    """What a search decided and how it got there (JSON-friendly via :meth:`to_dict`)."""

    mask: list[int]
    kept: list[int]
    probabilities: list[list[float]]
    marginals: list[float]
    confidence: float
    block_confidence: list[float]
    loss_history: list[float]
    nonfinite_steps: int
    steps: int
    settings: dict
    logits: list[list[float]] = field(default_factory=list)
    transfer: dict | None = None
    seconds: float = 0.0
    stopped: str | None = None
    #: What the search spent: ``seconds``, ``forward_passes`` and ``backward_passes`` (in samples: a batch
    #: of 4 through the model is 4), ``block_evaluations`` (blocks computed × samples).
    cost: dict = field(default_factory=dict)
    #: Per-layer scores of a score-based strategy (higher = more important), else None.
    scores: list[float] | None = None
    #: Snapshots during a learned search: ``{"step": s, "marginals": [π per layer]}`` from the EMA logits.
    trajectory: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def infer_batch_size(batch: Any) -> int:
    """Leading dimension of the first tensor found in ``batch`` (tensor, mapping, or sequence)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0])
    items = batch.values() if isinstance(batch, Mapping) else batch if isinstance(batch, (list, tuple)) else ()
    for item in items:
        try:
            return infer_batch_size(item)
        except EngineError:
            continue
    raise EngineError("cannot tell the batch size from a batch without tensors; pass batch_size=")


class _SearchLoop:
    """The state of one :func:`run_search` run and its steps (module docstring has the loop)."""

    def __init__(self, model, stack, learner, loss_fn, batches, config, device, batch_size, checkpointing,
                 parallel):
        self.model, self.stack, self.learner, self.loss_fn, self.config = model, stack, learner, loss_fn, config
        self.device, self.checkpointing = device, checkpointing
        self.dp = parallel or DataParallel()
        self.size_of = batch_size or infer_batch_size
        self.tau_fn = make_schedule(config.tau, config.steps) if config.tau is not None else default_tau(config.steps)
        self.scaling_fn = make_schedule(config.scaling, config.steps)
        self.final_scaling = self.scaling_fn(config.steps - 1)
        self.generator = torch.Generator(device="cpu").manual_seed(int(config.seed))
        self.stream = endless(batches)
        self.history: list[float] = []
        self.trajectory: list[dict] = []
        self.cost = {"forward_passes": 0, "backward_passes": 0, "block_evaluations": 0}
        if self.dp.active:
            self.cost.update(processes=self.dp.world, gates_checked_identical=0)
        self.every = max(1, config.steps // TRAJECTORY_POINTS)
        self.block_options = [o.double() for o in learner.gates.options]
        self.earlier_seconds = 0.0  # time spent before a resume
        self.first_step = 0
        self.step_index = 0
        self.started = time.perf_counter()

    def weight_update(self) -> contextlib.AbstractContextManager:
        """The context in which exactly the weights the config trains require gradients (LoRA, all, none)."""
        c = self.config
        if c.weight_update == "lora":
            targets = list(c.lora_targets) if c.lora_targets else linear_targets(self.model, self.stack.blocks)
            return lora_adapters(self.model, targets, c.lora_rank, c.lora_alpha, init=c.lora_init, seed=c.seed,
                                 after=c.lora_after)
        return trainable_only(self.model, self.model.parameters() if c.weight_update == "full" else [])

    def build(self, weight_params: list[nn.Parameter]) -> None:
        """The optimiser (weights at ``weight_lr``, gates at ``gate_lr``), the trainer and the logit EMA."""
        c = self.config
        self.weight_params, self.gate_params = weight_params, self.learner.gate_parameters()
        groups = [{"params": self.gate_params, "lr": c.gate_lr}]
        if weight_params:
            groups.insert(0, {"params": weight_params, "lr": c.weight_lr})
        self.optimizer = torch.optim.AdamW(groups, weight_decay=c.weight_decay)
        device = next(iter(self.gate_params)).device
        scaler = torch.amp.GradScaler(device.type) if c.loss_scaling else None
        self.trainer = Trainer(self.optimizer, weight_params + self.gate_params, clip_norm=c.clip_norm,
                               max_nonfinite=c.max_nonfinite, stop=self.stop_error, parallel=self.dp, scaler=scaler)
        self.ema = LogitEMA(self.gate_params, c.ema_decay)

    def stop_error(self, consecutive: int) -> NonFiniteLossError:
        step = self.step_index
        return NonFiniteLossError(
            f"the loss or its gradient was not finite for {consecutive} steps in a row (steps "
            f"{step - consecutive + 1}..{step}), more than max_nonfinite={self.config.max_nonfinite}; "
            "the search stopped and kept the last good state. Lower the learning rates, check the "
            "inputs for NaN, or raise max_nonfinite",
            result=self.result(step + 1, stopped="nonfinite"),
        )

    # ----- checkpoints -------------------------------------------------------------------------------------------
    def state(self, steps_done: int) -> dict:
        """Everything the next step depends on (module docstring of pruneseek.engine.checkpoint)."""
        return {
            "step": steps_done,
            "batches_consumed": steps_done,
            "gates": [p.detach().cpu().clone() for p in self.gate_params],
            "ema": [v.detach().cpu().clone() for v in self.ema.value],
            "weights": [p.detach().cpu().clone() for p in self.weight_params],
            "optimizer": self.optimizer.state_dict(),
            "rng": rng_states(self.generator),
            "history": list(self.history),
            **self.trainer.state(),
            "cost": dict(self.cost),
            "trajectory": list(self.trajectory),
            "seconds": self.earlier_seconds + time.perf_counter() - self.started,
        }

    def resume(self) -> None:
        """Continue from the saved state: parameters, EMA, optimiser, data position, RNG, records."""
        state = load_checkpoint(self.checkpointing)
        shapes = ([tuple(p.shape) for p in self.gate_params], [tuple(p.shape) for p in self.weight_params])
        saved = ([tuple(t.shape) for t in state["gates"]], [tuple(t.shape) for t in state["weights"]])
        if shapes != saved:
            raise EngineError(
                f"{self.checkpointing.path} holds gates/weights of other shapes than this run builds; it was written "
                "by another model or settings: start a new run in another folder"
            )
        with torch.no_grad():
            for p, t in zip(self.gate_params + self.weight_params, state["gates"] + state["weights"]):
                p.copy_(t.to(p.device))
        self.ema.load_state_dict([t.to(v.device) for v, t in zip(self.ema.value, state["ema"])])
        self.optimizer.load_state_dict(state["optimizer"])
        for _ in range(state["batches_consumed"]):  # the data position; the stream may draw from torch's RNG,
            next(self.stream)  # so the saved RNG states are restored after fast-forwarding
        restore_rng_states(self.generator, state["rng"])
        self.history[:] = state["history"]
        self.trainer.load_state(state)
        self.cost.update(state["cost"])
        self.trajectory[:] = state["trajectory"]
        self.earlier_seconds = float(state["seconds"])
        self.first_step = int(state["step"])

    def save(self, steps_done: int) -> None:
        ckpt = self.checkpointing
        if ckpt is None:
            return
        due = ckpt.every and steps_done % ckpt.every == 0
        if (due or steps_done == self.config.steps) and self.dp.is_main:
            save_checkpoint(ckpt, self.state(steps_done))

    # ----- one step ----------------------------------------------------------------------------------------------
    def forward(self, batch, tau: float, scaling: float) -> tuple[torch.Tensor, int]:
        """The loss of ``batch`` under freshly sampled masks (this process's shard when data parallel)."""
        samples = self.size_of(batch)
        all_masks = self.learner.sample(samples, tau, scaling, self.generator)  # noise for every global sample
        if self.dp.active:
            batch, masks = self.dp.shard(batch, samples), all_masks[self.dp.shard_rows(samples)]
            # skip mode: compute what the whole global batch keeps, as one process would
            active = (all_masks.detach() != 0).any(dim=0).tolist()
            with self.stack.computing(active):
                loss = self.loss_fn(batch, masks, self.config.mode)
        else:
            loss = self.loss_fn(batch, all_masks, self.config.mode)
        self.cost["forward_passes"] += samples
        self.cost["block_evaluations"] += self.stack.computed_blocks(all_masks, self.config.mode) * samples
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise EngineError("loss_fn must return a scalar tensor")
        return loss, samples

    def step(self, step: int) -> tuple[float, float, bool]:
        self.step_index = step
        batch = next(self.stream)
        tau, scaling = self.tau_fn(step), self.scaling_fn(step)
        self.trainer.zero_grad()
        loss, samples = self.forward(batch, tau, scaling)
        value, finite = self.trainer.read(loss)
        self.history.append(value)
        if finite:
            if not loss.requires_grad:
                raise EngineError(
                    "the loss does not depend on the masks: loss_fn must run the model under the masks it "
                    "is given (and keep autograd on)"
                )
            self.cost["backward_passes"] += samples
        applied = self.trainer.apply(loss, finite)
        if applied:
            self.ema.update(self.gate_params)
        if self.dp.active:
            if not self.dp.same_on_all_ranks(self.gate_params):
                raise EngineError(
                    f"the gates differ between processes after step {step}: the processes did not run the "
                    "same program on the same data (same seed, settings and model on every rank?)"
                )
            self.cost["gates_checked_identical"] += 1
        if (step + 1) % self.every == 0 or step + 1 == self.config.steps:
            self.snapshot(step + 1)
        self.save(step + 1)
        return value, tau, applied

    def snapshot(self, steps_done: int) -> None:
        """π per layer from the EMA block logits at the final scaling (detached, a few small ops)."""
        probs = probabilities([v.double() for v in self.ema.value[: self.learner.space.num_blocks]],
                              self.final_scaling)
        self.trajectory.append({"step": steps_done, "marginals": marginals(probs, self.block_options).cpu().tolist()})

    def result(self, steps_run: int, stopped: str | None = None) -> SearchResult:
        d = self.learner.decide(self.ema.value, self.final_scaling)
        elapsed = self.earlier_seconds + time.perf_counter() - self.started
        return SearchResult(
            mask=d["mask"], kept=[i for i, v in enumerate(d["mask"]) if v], probabilities=d["probabilities"],
            marginals=d["marginals"], confidence=d["confidence"], block_confidence=d["block_confidence"],
            loss_history=list(self.history), nonfinite_steps=self.trainer.nonfinite, steps=steps_run,
            settings=self.config.to_dict(), logits=d["logits"], transfer=d["transfer"], seconds=elapsed,
            stopped=stopped, cost={"seconds": elapsed, **self.cost}, trajectory=list(self.trajectory),
        )

    def run(self) -> SearchResult:
        from tqdm.auto import tqdm

        with self.weight_update() as weight_params:
            self.build(list(weight_params))
            if self.checkpointing is not None and self.checkpointing.resume:
                self.resume()
            c = self.config
            with tqdm(total=c.steps, initial=self.first_step, desc=c.desc, leave=False,
                      disable=not c.progress or not self.dp.is_main) as bar:
                for step in range(self.first_step, c.steps):
                    value, tau, applied = self.step(step)
                    bar.update(1)
                    if applied and (step % 10 == 0 or step == c.steps - 1):
                        bar.set_postfix(loss=f"{value:.4g}", tau=f"{tau:.3g}")
            return self.result(c.steps)


def run_search(
    model: nn.Module,
    stack: MaskedStack,
    learner: MaskLearner,
    loss_fn: Callable[[Any, torch.Tensor, str], torch.Tensor],
    batches: Callable[[], Iterable] | Iterable,
    config: SearchConfig,
    device: torch.device | str | None = None,
    batch_size: Callable[[Any], int] | None = None,
    checkpointing: Checkpointing | None = None,
    parallel: DataParallel | None = None,
) -> SearchResult:
    """Train the mask distribution jointly with ΔΦ and decide (module docstring has the loop).

    ``checkpointing`` saves (and with ``resume`` restores) the whole loop state; ``parallel`` runs the step
    data-parallel over an initialised process group (``batches`` then yields *global* batches, the same on
    every rank).
    """
    config.validate()
    if stack.num_layers != learner.space.num_layers:
        raise EngineError(
            f"the stack has {stack.num_layers} blocks but the search space {learner.space.num_layers} layers"
        )
    if device is None:
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    learner.to(device)
    loop = _SearchLoop(model, stack, learner, loss_fn, batches, config, device, batch_size, checkpointing, parallel)
    return loop.run()
