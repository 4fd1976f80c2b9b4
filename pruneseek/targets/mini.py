"""tsdsr-mini: the bundled default target, a miniature of TSD-SR that trains and searches on a CPU.

Same architecture family as TSD-SR (docs/design.md §7): a diffusers ``SD3Transformer2DModel`` with 24 joint
blocks (the last one ``context_pre_only``), conditioned on a fixed *learned* default-prompt context
(``prompt_embeds``, 8 tokens) and pooled vector (``pooled_embeds``) that stand in for TSD-SR's prompt
embeddings, run for one step at t = 1000 with ``z_HR = z_LR − v``. Only the width is small (2 heads × 32).

Latent space: instead of a VAE, a fixed invertible 4× pixel unshuffle (``(3, H, W) → (48, H/4, W/4)``),
values kept in [−1, 1]. It is exact and weight-free, so the teacher's whole capacity goes into the
transformer and every latent L1 is an L1 on pixels, rearranged. The transformer's patch size 2 then
makes one token per 8×8 pixels, as SD3's VAE + patchify makes one token per 16×16.

The committed weights (``pruneseek/weights/tsdsr-mini.safetensors``, v2) are produced by
``pruneseek teacher train``; the file's metadata records the command, seed, steps, losses and the degradation
preset it was trained on, which the loaded target then uses (docs/design.md §7.6). The first teacher
(``tsdsr-mini-v1.safetensors``, trained on the Real-ESRGAN pipeline) stays bundled so its results reproduce
(``--weights``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from pruneseek.errors import PruneseekError
from pruneseek.targets.base import SRTarget
from pruneseek.training import linear_targets
from pruneseek.errors import MiniWeightsError  # noqa: F401 (raised here; defined with the others)

MINI_CONFIG: dict[str, Any] = dict(
    sample_size=16,
    patch_size=2,
    in_channels=48,
    num_layers=24,
    attention_head_dim=32,
    num_attention_heads=2,
    joint_attention_dim=32,
    caption_projection_dim=64,
    pooled_projection_dim=32,
    out_channels=48,
    pos_embed_max_size=48,
)
SHUFFLE = 4
CONTEXT_TOKENS = 8
WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "tsdsr-mini.safetensors"
#: Modules LoRA adapts during a search, as TSD-SR's LoRA does (docs/design.md §7), restricted to the blocks.
#: Images must have sides divisible by this (pixel unshuffle 4 × patch 2).
MULTIPLE = SHUFFLE * MINI_CONFIG["patch_size"]



def pixel_encode(images: torch.Tensor) -> torch.Tensor:
    """Images in [−1, 1], sides divisible by 8 → latents ``(B, 48, H/4, W/4)``."""
    h, w = images.shape[-2:]
    if h % MULTIPLE or w % MULTIPLE:
        raise PruneseekError(f"tsdsr-mini needs image sides divisible by {MULTIPLE}, got {h}×{w}; crop or pad first")
    return F.pixel_unshuffle(images, SHUFFLE)


def pixel_decode(latents: torch.Tensor) -> torch.Tensor:
    return F.pixel_shuffle(latents, SHUFFLE)


def build_mini(seed: int = 0):
    """A freshly initialised tsdsr-mini: transformer, prompt context, pooled vector.

    ``proj_out`` starts at zero, so an untrained teacher predicts v = 0 and returns its bicubic input.
    """
    from diffusers import SD3Transformer2DModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = SD3Transformer2DModel(**MINI_CONFIG)
        torch.nn.init.zeros_(transformer.proj_out.weight)
        torch.nn.init.zeros_(transformer.proj_out.bias)
        prompt = torch.randn(1, CONTEXT_TOKENS, MINI_CONFIG["joint_attention_dim"]) * 0.5
        pooled = torch.randn(1, MINI_CONFIG["pooled_projection_dim"]) * 0.5
    return transformer, prompt, pooled


def mini_target(transformer, prompt: torch.Tensor, pooled: torch.Tensor, info: dict | None = None,
                degradation: str = "testbed") -> SRTarget:
    """tsdsr-mini as an :class:`SRTarget`; ``degradation`` is the preset its weights were trained on."""
    return SRTarget(
        name="tsdsr-mini",
        transformer=transformer,
        prompt_embeds=prompt,
        pooled_embeds=pooled,
        encoder=pixel_encode,
        decoder=pixel_decode,
        # the search adapts every linear layer of the blocks (TinyFusion's choice for DiT); TSD-SR's own
        # target names (targets/tsdsr.py) apply to the real model
        lora_targets=linear_targets(transformer, transformer.transformer_blocks),
        info=info or {},
        degradation=degradation,
    )


def save_mini(path: Path, transformer, prompt: torch.Tensor, pooled: torch.Tensor, record: dict) -> Path:
    """Write the weights (float16 safetensors, atomically) with the config and ``record`` as metadata.

    Stored in float16 to keep the committed file small (7 MB); :func:`load_mini` computes in float32.
    """
    from safetensors.torch import save

    from pruneseek.io import atomic_write_bytes

    def half(t: torch.Tensor) -> torch.Tensor:
        return t.detach().cpu().to(torch.float16).contiguous() if t.is_floating_point() else t.detach().cpu()

    tensors = {f"transformer.{k}": half(v) for k, v in transformer.state_dict().items()}
    tensors["prompt_embeds"] = half(prompt)
    tensors["pooled_embeds"] = half(pooled)
    metadata = {"format": "pruneseek.tsdsr-mini/v1", "config": json.dumps(MINI_CONFIG), "record": json.dumps(record)}
    return atomic_write_bytes(path, save(tensors, metadata=metadata))


def load_mini(path: str | Path | None = None, device: str = "cpu") -> SRTarget:
    """The trained tsdsr-mini teacher (default: the bundled weights)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path) if path is not None else WEIGHTS
    if not path.is_file():
        raise MiniWeightsError(
            f"tsdsr-mini weights not found at {path}; train them with 'pruneseek teacher train' "
            "(or reinstall pruneseek, which bundles them)"
        )
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError) as exc:
        raise MiniWeightsError(f"{path}: not a readable safetensors file ({exc}); retrain with 'pruneseek teacher train'") from None
    if metadata.get("format") != "pruneseek.tsdsr-mini/v1" or json.loads(metadata.get("config", "{}")) != MINI_CONFIG:
        raise MiniWeightsError(
            f"{path}: weights for a different tsdsr-mini architecture (metadata format/config differ from this "
            "version's); retrain with 'pruneseek teacher train'"
        )
    transformer, _, _ = build_mini()
    state = {k[len("transformer.") :]: v for k, v in tensors.items() if k.startswith("transformer.")}
    missing, unexpected = transformer.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise MiniWeightsError(f"{path}: weights do not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    transformer.to(device).eval()
    info = {"weights": str(path), "record": json.loads(metadata.get("record", "{}"))}
    prompt = tensors["prompt_embeds"].float().to(device)
    pooled = tensors["pooled_embeds"].float().to(device)
    # weights trained before the testbed preset existed (v1) record no degradation: they were trained on Real-ESRGAN's
    degradation = info["record"].get("config", {}).get("degradation", "realesrgan")
    return mini_target(transformer, prompt, pooled, info, degradation)
