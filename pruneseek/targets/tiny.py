"""Tiny random models of each family's real class, saved with ``save_pretrained`` (model or pipeline layout).

For the tests and for trying ``--model sd3|flux|dit|causal-lm`` without downloading anything:

    python -m pruneseek.targets.tiny DIR     # DIR/sd3, DIR/sd35, DIR/flux (pipeline layout), DIR/dit, DIR/llama, DIR/gpt2

The weights are random (seeded): a search on them exercises the whole path, not a meaningful decision.
"""
from __future__ import annotations

from pathlib import Path

import torch

SD3 = dict(sample_size=8, patch_size=2, in_channels=4, num_layers=6, attention_head_dim=8, num_attention_heads=2,
           joint_attention_dim=16, caption_projection_dim=16, pooled_projection_dim=12, out_channels=4,
           pos_embed_max_size=16)
#: SD3.5's options: dual attention in the first layers and RMS qk norm.
SD35 = dict(SD3, dual_attention_layers=(0, 1), qk_norm="rms_norm")
FLUX = dict(patch_size=1, in_channels=8, num_layers=2, num_single_layers=6, attention_head_dim=8,
            num_attention_heads=2, joint_attention_dim=16, pooled_projection_dim=12, guidance_embeds=False,
            axes_dims_rope=(2, 2, 4))
DIT = dict(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8, num_layers=8, sample_size=8,
           patch_size=2, num_embeds_ada_norm=10)
LLAMA = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=6, num_attention_heads=2,
             num_key_value_heads=2, max_position_embeddings=64)


GPT2 = dict(vocab_size=64, n_embd=16, n_layer=4, n_head=2, n_positions=64, bos_token_id=0, eos_token_id=0)


def build(family: str, seed: int = 0):
    torch.manual_seed(seed)
    if family == "sd3":
        from diffusers import SD3Transformer2DModel

        return SD3Transformer2DModel(**SD3)
    if family == "sd35":
        from diffusers import SD3Transformer2DModel

        return SD3Transformer2DModel(**SD35)
    if family == "flux":
        from diffusers import FluxTransformer2DModel

        return FluxTransformer2DModel(**FLUX)
    if family == "dit":
        from diffusers import DiTTransformer2DModel

        model = DiTTransformer2DModel(**DIT)
        first = model.transformer_blocks[0].norm1.emb.state_dict()
        for block in model.transformer_blocks[1:]:  # one shared embedder, as in converted DiT checkpoints
            block.norm1.emb.load_state_dict(first)
        return model
    if family == "causal-lm":
        from transformers import LlamaConfig, LlamaForCausalLM

        return LlamaForCausalLM(LlamaConfig(**LLAMA))
    if family == "gpt2":  # another decoder layout (transformer.h, n_layer)
        from transformers import GPT2Config, GPT2LMHeadModel

        return GPT2LMHeadModel(GPT2Config(**GPT2))
    raise ValueError(family)


#: The folders :func:`main` writes: name → (builder key, pipeline layout).
DEMO = {"sd3": ("sd3", False), "sd35": ("sd35", False), "flux": ("flux", True), "dit": ("dit", False),
        "llama": ("causal-lm", False), "gpt2": ("gpt2", False)}


def save(family: str, folder: Path, pipeline: bool = False, seed: int = 0) -> Path:
    """Save a tiny model to ``folder`` (or ``folder/transformer`` with a model_index.json for ``pipeline``)."""
    model = build(family, seed)
    target = folder / "transformer" if pipeline else folder
    model.save_pretrained(str(target))
    if pipeline:
        (folder / "model_index.json").write_text('{"_class_name": "Pipeline"}')
    return folder


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pruneseek.targets.tiny", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write the tiny models into")
    args = parser.parse_args(argv)
    from transformers.utils import logging

    logging.disable_progress_bar()
    for name, (key, pipeline) in DEMO.items():
        folder = save(key, args.out / name, pipeline=pipeline)
        print(f"{folder}: {type(build(key)).__name__}{' (pipeline layout)' if pipeline else ''}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
