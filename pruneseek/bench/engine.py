"""`pruneseek bench engine`: the cost of mask search relative to plain LoRA fine-tuning (docs/design.md §4).

One run, one model, measured side by side:

- *plain*: a LoRA fine-tuning step of the unmasked model (forward, loss, backward, clip, AdamW);
- *blend*: a search step of :func:`~pruneseek.engine.run_search` in blend mode (every block computed,
  exact straight-through gradient), per-sample masks;
- *skip*: a search step in skip mode at ratio 0.5, one mask per batch (``share_across_batch``, the
  reference code's behaviour) so that the dropped half of the blocks is really not computed.

Step time is the interval between consecutive calls of the loss (so it covers sampling, forward,
backward, clipping, the optimiser and the EMA); variants are interleaved in rounds and the median is
taken, so machine noise hits all of them alike. Peak memory: on CUDA the allocator's peak per
variant; on CPU the peak resident set of a fresh worker process per variant (``ru_maxrss``), beside
the peak of an idle worker that only builds the model and data (``peak_mem_idle_mb``).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

VARIANTS = ("plain", "blend", "skip")

#: A 24-block SD3 MMDiT (the TSD-SR transformer's class and depth) at a width a CPU steps in well under a second.
CPU_MODEL = dict(
    sample_size=32, patch_size=2, in_channels=16, num_layers=24, attention_head_dim=32, num_attention_heads=4,
    joint_attention_dim=64, caption_projection_dim=128, pooled_projection_dim=64, out_channels=16,
    pos_embed_max_size=32,
)
#: SD3-medium's own shape (docs/design.md §7), for a GPU: 512 px images are 64×64 latents.
from pruneseek.targets.tsdsr import SD3_MEDIUM  # noqa: E402


@dataclass
class EngineBenchConfig:
    model: dict = field(default_factory=lambda: dict(CPU_MODEL))
    model_name: str = "sd3-24-cpu-bench"
    latent: int = 32
    context_tokens: int = 16
    batch: int = 2
    steps: int = 8
    warmup: int = 2
    rounds: int = 3
    lora_rank: int = 8
    lora_alpha: float = 16.0
    strategy: str = "tinysr"
    device: str = "cpu"
    dtype: str = "float32"
    seed: int = 0


def _build(cfg: EngineBenchConfig):
    from diffusers import SD3Transformer2DModel

    from pruneseek.targets.sd3 import sd3_stack

    torch.manual_seed(cfg.seed)
    dtype = getattr(torch, cfg.dtype)
    model = SD3Transformer2DModel(**cfg.model).to(cfg.device)
    if dtype != torch.float32:
        model = model.to(dtype=dtype)
    g = torch.Generator().manual_seed(cfg.seed)
    m = cfg.model
    batch = dict(
        hidden_states=torch.randn(cfg.batch, m["in_channels"], cfg.latent, cfg.latent, generator=g),
        encoder_hidden_states=torch.randn(cfg.batch, cfg.context_tokens, m["joint_attention_dim"], generator=g),
        pooled_projections=torch.randn(cfg.batch, m["pooled_projection_dim"], generator=g),
        timestep=torch.full((cfg.batch,), 1000.0),
    )
    batch = {k: v.to(cfg.device, dtype if v.is_floating_point() else v.dtype) for k, v in batch.items()}
    stack = sd3_stack(model)
    with torch.no_grad():
        from pruneseek.targets.sd3 import masked_forward

        target = masked_forward(model, stack, **batch)
    return model, stack, batch, target


def _targets(model) -> list[str]:
    from pruneseek.training import linear_targets

    return linear_targets(model, model.transformer_blocks)


def _learner(cfg: EngineBenchConfig, share: bool):
    from pruneseek.engine import MaskLearner, TransferGates
    from pruneseek.spaces import load_preset

    space = load_preset("tsdsr-24-r50").space if cfg.model["num_layers"] == 24 else None
    if space is None:
        from pruneseek.spaces import BlockSpace

        space = BlockSpace.uniform(cfg.model["num_layers"], 4, 2)
    transfer = TransferGates(space, "pairs", k=1, rule="marginal") if cfg.strategy == "tinysr" else None
    return MaskLearner(space, transfer, share_across_batch=share)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_variant(variant: str, cfg: EngineBenchConfig, parts=None, steps: int | None = None) -> list[float]:
    """Per-step seconds of ``variant`` for ``warmup + steps`` steps (warm-up steps dropped)."""
    from pruneseek.engine import SearchConfig, run_search
    from pruneseek.training import Trainer, lora_adapters
    from pruneseek.targets.sd3 import masked_forward

    model, stack, batch, target = parts or _build(cfg)
    steps = cfg.steps if steps is None else steps
    total = cfg.warmup + steps
    stamps: list[float] = []

    def loss_fn(b, masks, mode):
        _sync(cfg.device)
        stamps.append(time.perf_counter())
        out = masked_forward(model, stack, masks=masks, mode=mode, **b)
        return torch.nn.functional.mse_loss(out.float(), target.float())

    if variant == "plain":  # the same step as the search's (pruneseek.training), without masks or gates
        with lora_adapters(model, _targets(model), cfg.lora_rank, cfg.lora_alpha, seed=cfg.seed) as params:
            trainer = Trainer(torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0), params, clip_norm=1.0)
            for _ in range(total):
                trainer.zero_grad()
                trainer.step(loss_fn(batch, None, "blend"))
            _sync(cfg.device)
            stamps.append(time.perf_counter())
    else:
        learner = _learner(cfg, share=variant == "skip")
        config = SearchConfig(
            steps=total, weight_update="lora", lora_rank=cfg.lora_rank, lora_alpha=cfg.lora_alpha,
            lora_targets=_targets(model), mode="blend" if variant == "blend" else "skip", seed=cfg.seed,
            progress=False,
        )
        run_search(model, stack, learner, loss_fn, [batch], config, device=cfg.device)
        _sync(cfg.device)
        stamps.append(time.perf_counter())  # includes the final decision: negligible, and on the last step only
    diffs = [b - a for a, b in zip(stamps, stamps[1:])]
    return diffs[cfg.warmup :]


def _worker_peak_mb(variant: str, cfg: EngineBenchConfig) -> float:
    """Peak RSS (MB) of a fresh process that builds the model and runs ``variant`` (or nothing: 'idle')."""
    payload = json.dumps({"variant": variant, "config": asdict(cfg)})
    proc = subprocess.Popen([sys.executable, "-m", "pruneseek.bench.engine", payload], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"the {variant} memory worker failed with exit code {proc.returncode}")
    return usage.ru_maxrss / 1024.0  # Linux reports kilobytes


def bench_engine(cfg: EngineBenchConfig, progress: bool = True) -> dict[str, Any]:
    """Measure the three variants side by side and return the results (see the module docstring)."""
    from pruneseek.bench.machine import describe_machine

    parts = _build(cfg)
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(cfg.rounds):
        order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]
        for variant in order:
            times[variant] += run_variant(variant, cfg, parts)
            if progress:
                print(f"round {r + 1}/{cfg.rounds}: {variant} {statistics.median(times[variant]) * 1e3:.1f} ms/step",
                      file=sys.stderr)
    median = {v: statistics.median(t) for v, t in times.items()}
    model, stack, batch, _ = parts
    masks = _learner(cfg, share=True).sample(cfg.batch, 1.0, 100.0, torch.Generator().manual_seed(0))

    if cfg.device.startswith("cuda"):
        peaks = {}
        for variant in VARIANTS:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            run_variant(variant, cfg, parts, steps=2)
            peaks[variant] = torch.cuda.max_memory_allocated() / 2**20
        idle = None
        memory_note = "torch.cuda.max_memory_allocated per variant, same process"
    else:
        idle = _worker_peak_mb("idle", cfg)
        peaks = {v: _worker_peak_mb(v, cfg) for v in VARIANTS}
        memory_note = "peak resident set (ru_maxrss) of a fresh worker process per variant; idle = model and data only"

    n_params = sum(p.numel() for p in model.parameters())
    return {
        "benchmark": "engine",
        "blend_over_plain": median["blend"] / median["plain"],
        "skip_over_plain": median["skip"] / median["plain"],
        "peak_mem_plain_mb": peaks["plain"],
        "peak_mem_blend_mb": peaks["blend"],
        "peak_mem_skip_mb": peaks["skip"],
        "peak_mem_idle_mb": idle,
        "step_seconds_median": median,
        "steps_timed_per_variant": {v: len(t) for v, t in times.items()},
        "skip_blocks_computed": stack.computed_blocks(masks, "skip"),
        "model": {
            "name": cfg.model_name,
            "class": "diffusers.SD3Transformer2DModel",
            "config": cfg.model,
            "parameters": n_params,
            "batch": cfg.batch,
            "latent": [cfg.model["in_channels"], cfg.latent, cfg.latent],
            "context_tokens": cfg.context_tokens,
            "lora": {"rank": cfg.lora_rank, "alpha": cfg.lora_alpha, "targets": "every nn.Linear in the blocks"},
            "strategy": cfg.strategy,
            "space": "tsdsr-24-r50 (6 × 4 keep 2), transfer k=1 pairs" if cfg.strategy == "tinysr" else "tsdsr-24-r50",
        },
        "method": {
            "timing": f"median over {cfg.rounds} interleaved rounds of {cfg.steps} steps after {cfg.warmup} warm-up steps",
            "memory": memory_note,
            "skip": "one mask per batch (share_across_batch) at ratio 0.5",
            "blend": "one mask per sample",
        },
        "machine": describe_machine(cfg.device),
        "dtype": cfg.dtype,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _worker(payload: str) -> None:
    spec = json.loads(payload)
    cfg = EngineBenchConfig(**spec["config"])
    parts = _build(cfg)
    if spec["variant"] != "idle":
        run_variant(spec["variant"], cfg, parts, steps=2)


if __name__ == "__main__":  # memory worker: python -m pruneseek.bench.engine '<json>'
    _worker(sys.argv[1])
