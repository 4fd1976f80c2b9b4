"""A run's peak memory, estimated before it starts (docs/design.md §12; issue 17).

    peak ≈ weights + trainable state + activations + workspace

- **weights**: every parameter and buffer of the model at the run's dtype (``--dtype``);
- **trainable state**: the LoRA adapters (or other trainable parameters) in float32 with their gradient and
  AdamW's two moments, 16 bytes per parameter; the gates are a few hundred numbers;
- **activations**: what autograd keeps for the backward pass, *counted*, not guessed: the model's own forward runs
  once on PyTorch's ``meta`` device (shapes and dtypes, no data, no memory, well under a second for SD3-medium at
  512 px) with the run's LoRA on the run's targets, and every tensor saved for backward is summed (views counted
  once, through their base; saved weights are not activations). With gradient checkpointing the blocks keep only their inputs, and one block's
  activations exist again while it is recomputed; both are counted from the same pass;
- **workspace**: transient buffers of the backward pass: the gradients flowing through one block's activations
  (one block's worth) and twice the largest single saved tensor (an attention map or an MLP's hidden states) —
  a rule of thumb that the tests check against measured peaks.

Activations and workspace are counted at batch 1 and batch 2 and extended linearly: the difference is what each
sample adds, and the rest is what every batch holds once (the merged weights of small LoRA layers,
:class:`~pruneseek.training.SmallLoraLinear`). On CUDA the allocator's fragmentation and the CUDA context (a few
hundred MB) come on top.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

GB = 1e9
#: Bytes per trainable parameter: float32 value, gradient and AdamW's two moments.
TRAINABLE_BYTES = 16


@dataclass(frozen=True)
class MemoryEstimate:
    """An estimated peak, in bytes, and what it is made of."""

    weights: int
    trainable_params: int
    activations_per_sample: int
    workspace_per_sample: int
    batch: int
    checkpointing: bool
    dtype: str
    activations_fixed: int = 0
    workspace_fixed: int = 0

    @property
    def trainable(self) -> int:
        return self.trainable_params * TRAINABLE_BYTES

    @property
    def activations(self) -> int:
        return self.activations_per_sample * self.batch + self.activations_fixed

    @property
    def workspace(self) -> int:
        return self.workspace_per_sample * self.batch + self.workspace_fixed

    @property
    def total(self) -> int:
        return self.weights + self.trainable + self.activations + self.workspace

    def as_dict(self) -> dict[str, Any]:
        """The parts in GB (and the settings) for JSON records."""
        return {"total_gb": self.total / GB, "weights_gb": self.weights / GB, "trainable_gb": self.trainable / GB,
                "activations_gb": self.activations / GB, "workspace_gb": self.workspace / GB,
                "trainable_params": self.trainable_params, "batch": self.batch, "checkpointing": self.checkpointing,
                "dtype": self.dtype}

    def describe(self) -> str:
        ck = "with" if self.checkpointing else "without"
        return (f"estimated peak memory {self.total / GB:.2f} GB ({self.dtype}, batch {self.batch}, {ck} gradient "
                f"checkpointing): weights {self.weights / GB:.2f}, LoRA and optimiser {self.trainable / GB:.2f}, "
                f"activations {self.activations / GB:.2f}, workspace {self.workspace / GB:.2f}")


def weight_bytes(model: nn.Module, dtype: torch.dtype) -> int:
    """Parameters and buffers of ``model`` at ``dtype`` (integer buffers at their own size)."""
    size = torch.empty(0, dtype=dtype).element_size()
    total = 0
    for t in list(model.parameters()) + list(model.buffers()):
        total += t.numel() * (size if t.is_floating_point() else t.element_size())
    return total


def meta_twin(model: nn.Module) -> nn.Module:
    """An empty copy of ``model``'s architecture on the meta device (diffusers ``from_config`` or transformers)."""
    with torch.device("meta"):
        if isinstance(model.config, dict):  # diffusers: a FrozenDict config and ``from_config``
            return type(model).from_config(model.config)
        return type(model)(model.config)  # transformers: the class takes its config object


@dataclass(frozen=True)
class SavedBytes:
    """Bytes autograd keeps for one forward: in all, inside the blocks, the blocks' inputs, the largest
    block and the largest single tensor."""

    total: int
    in_blocks: int
    block_inputs: int
    largest_block: int
    largest_tensor: int

    def activations(self, checkpointing: bool) -> int:
        if not checkpointing:
            return self.total
        return self.total - self.in_blocks + self.block_inputs + self.largest_block

    def workspace(self) -> int:
        return 2 * self.largest_tensor + self.largest_block


def saved_bytes(twin: nn.Module, blocks: list[nn.Module], forward: Callable[[], Any]) -> SavedBytes:
    """Run ``forward()`` (the twin's forward on meta inputs) and sum the tensors saved for backward."""
    seen: dict[int, int] = {}
    per_block: dict[int, int] = {}
    inputs: dict[int, int] = {}
    current: list[int | None] = [None]
    weights = {id(t) for t in list(twin.parameters()) + list(twin.buffers())}  # saved for backward, counted already

    def pack(t: torch.Tensor) -> torch.Tensor:
        base = t._base if t._base is not None else t
        if id(base) not in seen and id(base) not in weights:
            seen[id(base)] = base.numel() * base.element_size()
            if current[0] is not None:
                per_block[current[0]] = per_block.get(current[0], 0) + seen[id(base)]
        return t

    def enter(index: int):
        def hook(module, args, kwargs):
            current[0] = index
            tensors = [a for a in list(args) + list(kwargs.values()) if isinstance(a, torch.Tensor)]
            inputs[index] = sum(a.numel() * a.element_size() for a in tensors if a.dim() >= 3)
        return hook

    def leave(module, args, kwargs, out):
        current[0] = None

    handles = [b.register_forward_pre_hook(enter(i), with_kwargs=True) for i, b in enumerate(blocks)]
    handles += [b.register_forward_hook(leave, with_kwargs=True) for b in blocks]
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            forward()
    finally:
        for h in handles:
            h.remove()
    return SavedBytes(total=sum(seen.values()), in_blocks=sum(per_block.values()), block_inputs=sum(inputs.values()),
                      largest_block=max(per_block.values(), default=0), largest_tensor=max(seen.values(), default=0))


def estimate(model: nn.Module, blocks_of: Callable[[nn.Module], list[nn.Module]],
             run_forward: Callable[[nn.Module, torch.dtype, int], Any], *, dtype: torch.dtype, batch: int,
             checkpointing: bool, lora_targets: list[str] | None, lora_rank: int) -> MemoryEstimate:
    """The estimate of module docstring for ``model`` (weights counted from it; activations from its meta twin).

    ``blocks_of(m)`` lists the block modules a mask covers; ``run_forward(twin, dtype, b)`` runs the twin's own
    forward once at batch ``b`` on meta inputs (called for b = 1 and 2). ``lora_targets`` (None: every linear layer
    of the blocks) at ``lora_rank``.
    """
    from pruneseek.training import DTYPES, inject_lora, linear_targets, lora_parameters, quiet_cast

    twin = meta_twin(model)
    quiet_cast(twin, dtype)
    twin.requires_grad_(False)
    blocks = blocks_of(twin)
    targets = list(lora_targets) if lora_targets else linear_targets(twin, nn.ModuleList(blocks))
    inject_lora(twin, lora_rank, float(lora_rank), targets)
    trainable = sum(p.numel() for p in lora_parameters(twin))
    for p in lora_parameters(twin):  # the meta forward runs in one dtype (autocast does not act on meta tensors)
        p.data = p.data.to(dtype)
    one, two = (saved_bytes(twin, blocks, lambda b=b: run_forward(twin, dtype, b)) for b in (1, 2))
    act_one, act_two = one.activations(checkpointing), two.activations(checkpointing)
    name = next((k for k, v in DTYPES.items() if v == dtype), str(dtype))
    return MemoryEstimate(weights=weight_bytes(model, dtype), trainable_params=trainable,
                          activations_per_sample=act_two - act_one, activations_fixed=max(0, 2 * act_one - act_two),
                          workspace_per_sample=two.workspace() - one.workspace(),
                          workspace_fixed=max(0, 2 * one.workspace() - two.workspace()), batch=batch,
                          checkpointing=checkpointing, dtype=name)


# ----- the targets' forwards on meta inputs ------------------------------------------------------------------------


def search_masks(stack, batch: int) -> torch.Tensor:
    """A search's per-sample mask on the meta device: blended and differentiable, so the per-block blend's saved
    tensors (each block's input and raw output, kept for the mask gradient) are counted too."""
    return torch.ones(batch, stack.num_layers, device="meta", requires_grad=True)



def sd3_inputs(config, latent_side: int, context_tokens: int, dtype: torch.dtype,
               batch: int) -> dict[str, torch.Tensor]:
    """Meta inputs of an SD3 transformer at ``latent_side`` with ``context_tokens`` prompt tokens."""
    meta = dict(device="meta", dtype=dtype)
    return {
        "hidden_states": torch.empty(batch, config.in_channels, latent_side, latent_side, **meta),
        "encoder_hidden_states": torch.empty(batch, context_tokens, config.joint_attention_dim, **meta),
        "pooled_projections": torch.empty(batch, config.pooled_projection_dim, **meta),
        "timestep": torch.empty(batch, device="meta"),
    }


def sd3_estimate(transformer: nn.Module, latent_side: int, context_tokens: int, *, dtype: torch.dtype, batch: int,
                 checkpointing: bool, lora_targets: list[str] | None, lora_rank: int) -> MemoryEstimate:
    """The estimate for an SD3 transformer (TSD-SR, tsdsr-mini, the sd3 family, the real-shape benchmark)."""
    from pruneseek.targets.sd3 import masked_forward, sd3_stack

    def run_forward(twin, dt, batch):
        stack = sd3_stack(twin)
        stack.checkpointing = False  # counted without; SavedBytes.activations applies checkpointing
        return masked_forward(twin, stack, search_masks(stack, batch), "blend",
                              **sd3_inputs(twin.config, latent_side, context_tokens, dt, batch))

    return estimate(transformer, lambda m: list(m.transformer_blocks), run_forward, dtype=dtype, batch=batch,
                    checkpointing=checkpointing, lora_targets=lora_targets, lora_rank=lora_rank)


def family_estimate(target, size: int, *, dtype: torch.dtype, batch: int, checkpointing: bool,
                    lora_targets: list[str] | None, lora_rank: int) -> MemoryEstimate:
    """The estimate for a model family (:class:`~pruneseek.targets.family.ModelTarget`) at calibration ``size``."""
    from pruneseek.engine import MaskedStack

    family = target.family

    def meta(v: torch.Tensor, dt: torch.dtype) -> torch.Tensor:
        return torch.empty(v.shape, device="meta", dtype=dt if v.is_floating_point() else v.dtype)

    def run_forward(twin, dt, batch):
        samples, shared = family.synthetic_inputs(target.model, batch, 0, size)
        blocks = [b for _, s in family.stacks(twin) for b in s]
        stack = MaskedStack.over(blocks)
        with stack.masking(search_masks(stack, batch), "blend"):
            return family.output(twin, {k: meta(v, dt) for k, v in {**samples, **shared}.items()})

    return estimate(target.model, lambda m: [b for _, s in family.stacks(m) for b in s], run_forward, dtype=dtype,
                    batch=batch, checkpointing=checkpointing, lora_targets=lora_targets, lora_rank=lora_rank)


def cuda_free_bytes(device: str) -> int | None:
    """Free memory on a CUDA ``device`` (None elsewhere)."""
    if not str(device).startswith("cuda") or not torch.cuda.is_available():
        return None
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    return int(free)
