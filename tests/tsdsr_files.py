"""TSD-SR's file layout on tiny models, shared by the loader and export tests (docs/design.md §7, §8).

:func:`write_tsdsr_files` builds a tiny ``SD3Transformer2DModel`` and a tiny four-level ``AutoencoderKL``
(same module names as the SD3 VAE), saves them as a diffusers base folder, adds TSD-SR's LoRA configs with
random weights and writes ``transformer.safetensors`` / ``vae.safetensors`` the way TSD-SR's training
script does (``save_lora_weights(dir, transformer_lora_layers=get_peft_model_state_dict(m))``), plus the
two prompt-embedding files.
"""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, SD3Transformer2DModel
from diffusers.loaders.lora_pipeline import SD3LoraLoaderMixin
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from safetensors.torch import load_file

from pruneseek.targets.tsdsr import TSDSR_TRANSFORMER_TARGETS, TSDSR_VAE_TARGETS

TINY_SD3 = dict(
    sample_size=8, patch_size=2, in_channels=4, num_layers=3, attention_head_dim=8, num_attention_heads=2,
    joint_attention_dim=32, caption_projection_dim=16, pooled_projection_dim=24, out_channels=4, pos_embed_max_size=16,
)
# Four levels and two resnets per level, like the SD3 VAE (block_out_channels 128/256/512/512), so every
# name in TSD-SR's VAE target list but quant_conv exists; 8× downsampling.
TINY_VAE = dict(
    in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(4, 8, 16, 16), layers_per_block=2, latent_channels=4, norm_num_groups=4, sample_size=32,
    scaling_factor=1.5305, shift_factor=0.0609, use_quant_conv=False, use_post_quant_conv=False,
)
RANK = 4
TOKENS = 7


def randomize_lora(model, generator):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.3)


def write_tsdsr_files(root: Path, **sd3_overrides) -> dict:
    """Base folder, LoRA folder and embeddings folder under ``root``; returns their paths and the models."""
    config = {**TINY_SD3, **sd3_overrides}
    g = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        transformer = SD3Transformer2DModel(**config).eval()
        vae = AutoencoderKL(**TINY_VAE).eval()
    transformer.save_pretrained(root / "base" / "transformer")
    vae.save_pretrained(root / "base" / "vae")

    t_lora, v_lora = copy.deepcopy(transformer), copy.deepcopy(vae)
    t_lora.add_adapter(LoraConfig(r=RANK, lora_alpha=RANK, init_lora_weights="gaussian", target_modules=list(TSDSR_TRANSFORMER_TARGETS)))
    v_lora.add_adapter(LoraConfig(r=RANK, lora_alpha=RANK, init_lora_weights="gaussian", target_modules=list(TSDSR_VAE_TARGETS)))
    randomize_lora(t_lora, g)
    randomize_lora(v_lora, g)
    lora_dir = root / "lora"
    # TSD-SR's save hook (train/train.py): both files through save_lora_weights' transformer prefix.
    SD3LoraLoaderMixin.save_lora_weights(
        lora_dir, transformer_lora_layers=get_peft_model_state_dict(t_lora, adapter_name="default"),
        weight_name="transformer.safetensors",
    )
    SD3LoraLoaderMixin.save_lora_weights(
        lora_dir, transformer_lora_layers=get_peft_model_state_dict(v_lora, adapter_name="default"),
        weight_name="vae.safetensors",
    )
    emb = root / "emb"
    emb.mkdir()
    torch.save(torch.randn(1, TOKENS, config["joint_attention_dim"], generator=g), emb / "prompt_embeds.pt")
    torch.save(torch.randn(1, config["pooled_projection_dim"], generator=g), emb / "pool_embeds.pt")
    return dict(root=root, base=root / "base", lora=lora_dir, emb=emb, transformer=transformer, vae=vae, config=config)


def hand_merged(model, lora_file, config_cls, config):
    """A fresh model with W + B·A·(α/r) folded in by hand (α = r in TSD-SR)."""
    lora = load_file(str(lora_file))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for key, a in lora.items():
        if not key.endswith(".lora_A.weight"):
            continue
        module = key[len("transformer.") : -len(".lora_A.weight")]
        b = lora[key.replace("lora_A", "lora_B")]
        rank, alpha = a.shape[0], a.shape[0]
        delta = b @ a if a.ndim == 2 else torch.einsum("or,rikl->oikl", b[:, :, 0, 0], a)
        state[f"{module}.weight"] += delta * (alpha / rank)
    out = config_cls(**config).eval()
    out.load_state_dict(state)
    return out
