"""DiT (diffusers ``DiTTransformer2DModel``): class-conditional DiT-XL/2 has 28 blocks (TinyFusion's target).

One stack of ``BasicTransformerBlock`` (adaLN-Zero); calibration inputs are latents, integer timesteps in
[0, 1000) and class labels; the objective matches the predicted noise (and variance, with learned sigma).

One catch for the export: diffusers' ``DiTTransformer2DModel.forward`` computes the final layer's conditioning
with the *first* block's timestep/label embedder (``transformer_blocks[0].norm1.emb``). In converted DiT
checkpoints every block's embedder holds the same weights (the original DiT has one), so dropping block 0 is
exact; when they differ (a model trained in diffusers with separate embedders) the pruned model would condition
its last layer differently, and the export refuses to drop block 0 (:meth:`DiTFamily.check_export`).
"""
from __future__ import annotations

import torch

from pruneseek.errors import ExportError
from pruneseek.targets.family import Family, latents_note, noise_latents


class DiTFamily(Family):
    name = "dit"
    classes = ("DiTTransformer2DModel",)

    def synthetic_inputs(self, model, count, seed, size):
        c = model.config
        g = torch.Generator().manual_seed(seed)
        return {
            "hidden_states": noise_latents(model, count, size, g),
            "timestep": torch.randint(0, 1000, (count,), generator=g),
            "class_labels": torch.randint(0, int(c.num_embeds_ada_norm), (count,), generator=g),
        }, {}

    def synthetic_note(self, model, size):
        return (f"synthetic: {latents_note(model, size)}, timesteps uniform on 0..999, class labels uniform on "
                f"0..{int(model.config.num_embeds_ada_norm) - 1}")

    def check_export(self, model, kept_per_stack):
        if 0 in kept_per_stack[0]:
            return
        first = model.transformer_blocks[0].norm1.emb.state_dict()
        new_first = model.transformer_blocks[kept_per_stack[0][0]].norm1.emb.state_dict()
        if any(not torch.equal(first[k], new_first[k]) for k in first):
            raise ExportError(
                "this DiT's blocks have different timestep/label embedders, and diffusers' DiT conditions its final "
                "layer with block 0's: a pruned model without block 0 would not equal the masked one; keep block 0")
