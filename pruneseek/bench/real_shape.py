"""`pruneseek bench real-shape`: does a search on SD3-medium's full shape fit, and does the estimate hold? (issue 17)

One run on the CPU: an SD3-medium-shaped transformer (2,028,328,000 parameters, random weights made directly in
the run's dtype, so no float32 copy ever exists), TSD-SR's LoRA (rank 64 = alpha on its ten target names, 266
modules), a learned search (TinyFusion's block gates, blend mode) for ``steps`` steps at a reduced crop, in
bfloat16 with gradient checkpointing by default. Recorded: parameters, dtype, latent side, each step's seconds,
the process's peak resident set, the resident set before the model existed, and the estimate of
:mod:`pruneseek.memory` for the same run, so the estimate is checked against a measurement. Then the estimate
for 512-px crops (64 × 64 latents, TSD-SR's 333 prompt tokens) at batch 1, 2 and 4, with and without
checkpointing, against 24, 40, 80 and 141 GB cards.

``python -m pruneseek.bench.real_shape JSON`` runs :func:`measure` in a fresh process and prints its JSON (the
tests use it on small shapes, so a peak resident set is the run's own).
"""
from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any

import torch

from pruneseek.targets.tsdsr import SD3_MEDIUM, TSDSR_RANK, TSDSR_TRANSFORMER_TARGETS
from pruneseek.training import DTYPES

#: TSD-SR's prompt: 333 tokens of T5 + CLIP embeddings.
CONTEXT_TOKENS = 333
CARDS_GB = (24, 40, 80, 141)
BATCHES = (1, 2, 4)
#: A card "fits" a run when the estimate leaves this share free (CUDA context, allocator fragmentation).
HEADROOM = 0.9


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()


def _reset_peak() -> bool:
    """Reset the process's resident-set high-water mark (Linux ``clear_refs`` 5), so that the peak read afterwards is
    the run's and not an earlier transient's (imports); False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_bytes() -> int:
    """The resident-set high-water mark since :func:`_reset_peak` (VmHWM), else the process's ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def random_sd3(config: dict, dtype: torch.dtype, seed: int = 0):
    """An ``SD3Transformer2DModel`` of ``config`` with N(0, 0.02) weights made directly in ``dtype`` on the CPU."""
    from diffusers import SD3Transformer2DModel

    from pruneseek.training import quiet_cast

    with torch.device("meta"):
        model = SD3Transformer2DModel(**config)
    quiet_cast(model, dtype)
    model = model.to_empty(device="cpu")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=g, dtype=torch.float32).mul_(0.02).to(t.dtype))
    return model.eval().requires_grad_(False)


def measure(config: dict, latent_side: int, context_tokens: int = CONTEXT_TOKENS, batch: int = 1,
            dtype: str = "bf16", checkpointing: bool = True, steps: int = 2, lora_rank: int = TSDSR_RANK,
            lora_targets: list[str] | None = None, seed: int = 0) -> dict[str, Any]:
    """Build, search ``steps`` steps, measure; with the estimate for the same run (module docstring)."""
    from pruneseek.engine import MaskLearner, SearchConfig, run_search
    from pruneseek.memory import sd3_estimate
    from pruneseek.spaces import BlockSpace
    from pruneseek.targets.sd3 import masked_forward, sd3_stack
    from pruneseek.training import autocast_loss

    import diffusers  # noqa: F401 (imported before the baseline: its ~0.2 GB are not the run's)
    import peft  # noqa: F401

    targets = list(TSDSR_TRANSFORMER_TARGETS if lora_targets is None else lora_targets)
    dt = DTYPES[dtype]
    _reset_peak()
    rss_before = _rss_bytes()
    model = random_sd3(config, dt, seed)
    stack = sd3_stack(model)
    stack.checkpointing = checkpointing
    g = torch.Generator().manual_seed(seed + 1)
    inputs = {
        "hidden_states": torch.randn(batch, config["in_channels"], latent_side, latent_side, generator=g).to(dt),
        "encoder_hidden_states": torch.randn(batch, context_tokens, config["joint_attention_dim"], generator=g).to(dt),
        "pooled_projections": torch.randn(batch, config["pooled_projection_dim"], generator=g).to(dt),
        "timestep": torch.full((batch,), 1000.0),
    }
    wanted = torch.randn(batch, config["out_channels"], latent_side, latent_side, generator=g)
    stamps: list[float] = []

    def loss(b, masks, mode):
        stamps.append(time.perf_counter())
        return (masked_forward(model, stack, masks, mode, **b).float() - wanted).square().mean()

    layers = config["num_layers"]
    space = BlockSpace.uniform(layers, 4, 2) if layers % 4 == 0 else BlockSpace.full(layers, layers // 2)
    search = SearchConfig(steps=steps, weight_update="lora", lora_rank=lora_rank, lora_alpha=float(lora_rank),
                          lora_targets=targets, mode="blend", seed=seed, progress=False)
    run_search(model, stack, MaskLearner(space), autocast_loss(loss, dt, "cpu"), [inputs], search)
    stamps.append(time.perf_counter())
    peak = _peak_bytes()
    est = sd3_estimate(model, latent_side, context_tokens, dtype=dt, batch=batch, checkpointing=checkpointing,
                       lora_targets=targets, lora_rank=lora_rank)
    return {
        "params": sum(p.numel() for p in model.parameters()), "dtype": dtype, "latent_side": latent_side,
        "pixels": latent_side * 8, "context_tokens": context_tokens, "batch": batch,
        "gradient_checkpointing": checkpointing, "lora_rank": lora_rank, "lora_targets": targets,
        "step_seconds": [b - a for a, b in zip(stamps, stamps[1:])], "peak_rss_gb": peak / 1e9,
        "rss_before_model_gb": rss_before / 1e9, "measured_run_gb": (peak - rss_before) / 1e9,
        "estimate": est.as_dict(),
    }


def card_table(dtype: str = "bf16", latent_side: int = 64, lora_rank: int = TSDSR_RANK) -> list[dict[str, Any]]:
    """The estimate for SD3-medium at ``latent_side`` (512 px: 64) for each batch, with and without checkpointing,
    and which cards it fits (estimate ≤ HEADROOM × card)."""
    from diffusers import SD3Transformer2DModel

    from pruneseek.memory import sd3_estimate

    with torch.device("meta"):
        model = SD3Transformer2DModel(**SD3_MEDIUM)
    rows = []
    for checkpointing in (True, False):
        for batch in BATCHES:
            est = sd3_estimate(model, latent_side, CONTEXT_TOKENS, dtype=DTYPES[dtype], batch=batch,
                               checkpointing=checkpointing, lora_targets=list(TSDSR_TRANSFORMER_TARGETS),
                               lora_rank=lora_rank)
            rows.append({"pixels": latent_side * 8, "batch": batch, "gradient_checkpointing": checkpointing,
                         "dtype": dtype, "estimate_gb": est.total / 1e9, "parts": est.as_dict(),
                         "fits": {f"{card}GB": est.total <= HEADROOM * card * 1e9 for card in CARDS_GB}})
    return rows


def bench_real_shape(latent_side: int = 16, steps: int = 2, dtype: str = "bf16", checkpointing: bool = True,
                     batch: int = 1) -> dict[str, Any]:
    """The benchmark's JSON: the measured CPU run at ``latent_side`` and the 512-px card table."""
    from pruneseek.bench.machine import describe_machine

    run = measure(dict(SD3_MEDIUM), latent_side, batch=batch, dtype=dtype, checkpointing=checkpointing, steps=steps)
    return {
        "benchmark": "real-shape", "model": "SD3-medium shape (random weights), TSD-SR LoRA rank 64 on its ten targets",
        "search": "learned block gates (TinyFusion), blend mode, AdamW; one step = forward, backward, clip, update",
        **run,
        "estimate_over_measured": run["estimate"]["total_gb"] / run["measured_run_gb"],
        "cards": {"headroom": HEADROOM, "cards_gb": list(CARDS_GB), "rows": card_table(dtype)},
        "machine": describe_machine(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


if __name__ == "__main__":
    print(json.dumps(measure(**json.loads(sys.argv[1]))))
