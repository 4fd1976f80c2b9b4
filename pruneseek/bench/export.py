"""`pruneseek bench export`: forward latency of full vs pruned (12/24) vs pruned + pre-cached modulation.

One run per model, variants interleaved in rounds (median per variant), reported as ratios to the full
model. Two models: the bundled tsdsr-mini (its trained weights) and an SD3-medium-shaped transformer
(docs/design.md §7 config, random weights) at reduced resolution with TSD-SR's 333 prompt tokens.

Why 12/24 is not exactly 0.5 — the *linear limit*. A forward is ``fixed + Σ blocks``: the fixed part
(patch + position embedding, the time/pooled-text embedding, the context embedder, the output norm and
projection) does not shrink with depth, and SD3's last block (``context_pre_only``) is cheaper than the
others. The benchmark times those parts separately, in the same rounds, and predicts the pruned ratio

    predicted = (fixed + Σ_{kept} block_i) / (fixed + Σ_all block_i)

from them; ``gap = measured − predicted`` is what per-call overheads and cache effects add on top.
The same split is reported for MACs (torch's FLOP counter), where the limit is exact arithmetic.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from pruneseek.bench.engine import SD3_MEDIUM
from pruneseek.bench.machine import describe_machine

#: BK-SDM's rule for 24 → 12 (docs/design.md §6): the 12/24 mask the benchmark prunes with.
KEEP_12_OF_24 = [0, 2, 4, 6, 8, 10, 13, 15, 17, 19, 21, 23]


@dataclass
class ExportBenchConfig:
    models: tuple[str, ...] = ("tsdsr-mini", "sd3-medium-shape")
    keep: list[int] = field(default_factory=lambda: list(KEEP_12_OF_24))
    #: Latent side per model: tsdsr-mini 32 (a 128-px crop), SD3-medium-shaped 32 (256 px, reduced from 512).
    latent: dict = field(default_factory=lambda: {"tsdsr-mini": 32, "sd3-medium-shape": 32})
    context_tokens: int = 333
    rounds: int = 5
    warmup: int = 1
    device: str = "cpu"
    seed: int = 0


def _model(name: str, cfg: ExportBenchConfig):
    """(transformer, prompt (1, T, joint), pooled (1, P)) for a benchmark model."""
    if name == "tsdsr-mini":
        from pruneseek.targets.mini import load_mini

        target = load_mini(device=cfg.device)
        return target.transformer, target.prompt_embeds, target.pooled_embeds
    if name == "sd3-medium-shape":
        from diffusers import SD3Transformer2DModel

        torch.manual_seed(cfg.seed)
        model = SD3Transformer2DModel(**SD3_MEDIUM).to(cfg.device).eval()
        g = torch.Generator().manual_seed(cfg.seed)
        prompt = torch.randn(1, cfg.context_tokens, SD3_MEDIUM["joint_attention_dim"], generator=g).to(cfg.device)
        pooled = torch.randn(1, SD3_MEDIUM["pooled_projection_dim"], generator=g).to(cfg.device)
        return model, prompt, pooled
    raise ValueError(f"unknown benchmark model {name!r}; use tsdsr-mini or sd3-medium-shape")


def _parts(model, x: dict) -> dict[str, Any]:
    """Callables timing the model's pieces on the real intermediate tensors of one forward."""
    with torch.no_grad():
        h = model.pos_embed(x["hidden_states"])
        temb = model.time_text_embed(x["timestep"], x["pooled_projections"])
        c = model.context_embedder(x["encoder_hidden_states"])
        blocks = model.transformer_blocks
        c_mid, h_mid = blocks[0](hidden_states=h, encoder_hidden_states=c, temb=temb)

    def fixed():
        model.pos_embed(x["hidden_states"])
        t = model.time_text_embed(x["timestep"], x["pooled_projections"])
        model.context_embedder(x["encoder_hidden_states"])
        model.proj_out(model.norm_out(h_mid, t))

    return {
        "fixed": fixed,
        "joint_block": lambda: blocks[1](hidden_states=h_mid, encoder_hidden_states=c_mid, temb=temb),
        "last_block": lambda: blocks[-1](hidden_states=h_mid, encoder_hidden_states=c_mid, temb=temb),
    }


def _linear_limit(parts: dict[str, float], num_layers: int, keep: list[int]) -> float:
    """(fixed + Σ kept blocks) / (fixed + Σ all blocks); the last block is the context_pre_only one."""
    def total(indices) -> float:
        return parts["fixed"] + sum(parts["last_block"] if i == num_layers - 1 else parts["joint_block"] for i in indices)

    return total(keep) / total(range(num_layers))


def bench_one(name: str, cfg: ExportBenchConfig, progress=print) -> dict[str, Any]:
    from pruneseek.export.measure import count_macs, count_params, interleaved_latency
    from pruneseek.export.prune import pruned_transformer
    from pruneseek.export.streamline import streamline

    started = time.perf_counter()
    full, prompt, pooled = _model(name, cfg)
    pruned = pruned_transformer(full, cfg.keep)  # shares the full model's tensors
    precached = streamline(pruned, pooled, precache_modulation=True)
    side = cfg.latent[name]
    g = torch.Generator().manual_seed(cfg.seed)
    x = {
        "hidden_states": torch.randn(1, full.config.in_channels, side, side, generator=g).to(cfg.device),
        "encoder_hidden_states": prompt,
        "pooled_projections": pooled,
        "timestep": torch.full((1,), 1000.0, device=cfg.device),
    }
    variants = {
        "full": lambda: full(**x, return_dict=False),
        "pruned": lambda: pruned(**x, return_dict=False),
        "precached": lambda: precached(hidden_states=x["hidden_states"], encoder_hidden_states=prompt, return_dict=False),
    }
    with torch.no_grad():
        ref = pruned(**x, return_dict=False)[0]
        precached_diff = float((precached(x["hidden_states"], prompt, return_dict=False)[0] - ref).abs().max())
    progress(f"{name}: built in {time.perf_counter() - started:.0f} s; counting MACs")
    parts = _parts(full, x)
    macs = {k: count_macs(fn) for k, fn in {**variants, **parts}.items()}
    progress(f"{name}: timing {len(variants)} variants and {len(parts)} parts x {cfg.rounds} rounds")
    latency = interleaved_latency({**variants, **parts}, rounds=cfg.rounds, warmup=cfg.warmup, device=cfg.device)
    med = {k: v["median_s"] for k, v in latency.items()}
    n = full.config.num_layers
    predicted = _linear_limit(med, n, cfg.keep)
    predicted_macs = _linear_limit({k: float(v) for k, v in macs.items()}, n, cfg.keep)
    pruned_ratio = med["pruned"] / med["full"]
    return {
        "model": name,
        "config": {k: full.config[k] for k in SD3_MEDIUM},
        "input": {"latent_side": side, "image_tokens": (side // full.config.patch_size) ** 2,
                  "context_tokens": int(prompt.shape[1]), "batch": 1},
        "keep": cfg.keep,
        "params": {"full": count_params(full), "pruned": count_params(pruned), "precached": count_params(precached)},
        "precached_max_abs_diff_vs_pruned": precached_diff,
        "latency_s": latency,
        "macs": macs,
        "pruned_over_full": pruned_ratio,
        "precached_over_full": med["precached"] / med["full"],
        "precached_over_pruned": med["precached"] / med["pruned"],
        "macs_pruned_over_full": macs["pruned"] / macs["full"],
        "macs_precached_over_full": macs["precached"] / macs["full"],
        "linear_limit": {
            "keep_fraction": len(cfg.keep) / n,
            "fixed_share_of_full": med["fixed"] / med["full"],
            "last_block_over_joint_block": med["last_block"] / med["joint_block"],
            "predicted_pruned_over_full": predicted,
            "gap_measured_minus_predicted": pruned_ratio - predicted,
            "predicted_macs_ratio": predicted_macs,
            "macs_gap": macs["pruned"] / macs["full"] - predicted_macs,
        },
        "seconds": time.perf_counter() - started,
    }


def bench_export(cfg: ExportBenchConfig, progress=print) -> dict[str, Any]:
    results = {}
    for name in cfg.models:
        results[name] = bench_one(name, cfg, progress)
        r = results[name]
        progress(f"{name}: pruned/full {r['pruned_over_full']:.3f} (linear limit "
                 f"{r['linear_limit']['predicted_pruned_over_full']:.3f}), precached/full {r['precached_over_full']:.3f}")
    return {
        "benchmark": "export",
        "what": "forward latency (median of interleaved rounds) of full vs pruned 12/24 vs pruned + pre-cached modulation",
        "config": asdict(cfg) | {"models": list(cfg.models)},
        "machine": describe_machine(cfg.device),
        "models": results,
    }
