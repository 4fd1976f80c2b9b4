"""Streamlining a pruned SD3 transformer for one-step SR (TinySR §3.2, "streamlined architecture").

Two explicit options, each with a stated exactness:

- **pre-cached modulation** (exact). TSD-SR runs one timestep (t = 1000) with one pooled prompt, so
  ``temb = time_text_embed(t, pooled)`` is a constant and so is every adaLN projection of it: each block's
  ``norm1.linear(silu(temb))`` (shift/scale/gate of attention and MLP), its context twin
  ``norm1_context.linear(…)`` and the output norm's ``norm_out.linear(…)`` (scale, shift). They are computed
  once and stored as parameters (:class:`ConstantModulation`), and the time/pooled-text embedders go. The
  output equals the un-streamlined model's for that timestep and pooled prompt (float32 allclose).
- **text-stream removal** (not exact: requires retraining). The context stream — context embedder,
  context adaLN and MLP, the joint attention's context projections ``add_{q,k,v}_proj`` / ``to_add_out`` —
  is dropped; attention becomes self-attention over the image tokens. The image-stream weights are kept
  as they are, as the starting point of the retraining TinySR does.

:class:`StreamlinedSD3Transformer2DModel` is a diffusers ``ModelMixin``/``ConfigMixin``: ``save_pretrained``
writes an ordinary model folder and ``StreamlinedSD3Transformer2DModel.from_pretrained(DIR)`` reloads it
(the class is pruneseek's, since diffusers has no model without those embedders). Its forward takes the
same arguments as ``SD3Transformer2DModel.forward``; the ones a variant no longer needs are ignored.
"""
from __future__ import annotations

from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import FeedForward, JointTransformerBlock
from diffusers.models.attention_processor import Attention, JointAttnProcessor2_0
from diffusers.models.embeddings import CombinedTimestepTextProjEmbeddings, PatchEmbed
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.normalization import AdaLayerNormContinuous, AdaLayerNormZero
from torch import nn

from pruneseek.export.prune import ExportError

#: TSD-SR's one step.
ONE_STEP_T = 1000.0


class ConstantModulation(nn.Module):
    """Stands in for an adaLN ``linear``: returns the stored ``linear(silu(temb))`` row for every sample."""

    def __init__(self, features: int):
        super().__init__()
        self.value = nn.Parameter(torch.zeros(1, features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value = self.value if torch.is_grad_enabled() else self.value.detach()  # no grad-less views of a leaf
        return value.to(x.dtype).expand(x.shape[0], -1)


class ImageOnlyBlock(nn.Module):
    """An SD3 joint block without its context stream: adaLN-Zero, self-attention over image tokens, MLP.

    Parameter names are those of the image half of ``JointTransformerBlock`` (``norm1``, ``attn.to_q`` …,
    ``norm2``, ``ff``), so its weights copy over one to one.
    """

    def __init__(self, dim: int, num_attention_heads: int, attention_head_dim: int, qk_norm: str | None = None):
        super().__init__()
        self.norm1 = AdaLayerNormZero(dim)
        self.attn = Attention(
            query_dim=dim, cross_attention_dim=None, dim_head=attention_head_dim, heads=num_attention_heads,
            out_dim=dim, bias=True, processor=JointAttnProcessor2_0(), qk_norm=qk_norm, eps=1e-6,
        )
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ff = FeedForward(dim=dim, dim_out=dim, activation_fn="gelu-approximate")

    def forward(self, hidden_states: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        norm_h, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.norm1(hidden_states, emb=temb)
        hidden_states = hidden_states + gate_msa.unsqueeze(1) * self.attn(hidden_states=norm_h)
        norm_h = self.norm2(hidden_states) * (1 + scale_mlp[:, None]) + shift_mlp[:, None]
        return hidden_states + gate_mlp.unsqueeze(1) * self.ff(norm_h)


class StreamlinedSD3Transformer2DModel(ModelMixin, ConfigMixin):
    """A (pruned) SD3 transformer with pre-cached modulation and/or without the text stream (module docstring)."""

    _supports_gradient_checkpointing = False

    @register_to_config
    def __init__(
        self,
        sample_size: int = 128,
        patch_size: int = 2,
        in_channels: int = 16,
        num_layers: int = 24,
        attention_head_dim: int = 64,
        num_attention_heads: int = 24,
        joint_attention_dim: int = 4096,
        caption_projection_dim: int = 1536,
        pooled_projection_dim: int = 2048,
        out_channels: int = 16,
        pos_embed_max_size: int = 192,
        qk_norm: str | None = None,
        precached_modulation: bool = False,
        text_stream: bool = True,
        precached_timestep: float | None = None,
    ):
        super().__init__()
        if not (precached_modulation or not text_stream):
            raise ExportError("a streamlined model needs at least one option: precached_modulation or text_stream=False")
        self.out_channels = out_channels
        dim = num_attention_heads * attention_head_dim
        self.inner_dim = dim
        self.pos_embed = PatchEmbed(
            height=sample_size, width=sample_size, patch_size=patch_size, in_channels=in_channels, embed_dim=dim,
            pos_embed_max_size=pos_embed_max_size,
        )
        if not precached_modulation:
            self.time_text_embed = CombinedTimestepTextProjEmbeddings(embedding_dim=dim, pooled_projection_dim=pooled_projection_dim)
        if text_stream:
            self.context_embedder = nn.Linear(joint_attention_dim, caption_projection_dim)
            blocks = [
                JointTransformerBlock(dim, num_attention_heads, attention_head_dim, context_pre_only=i == num_layers - 1, qk_norm=qk_norm)
                for i in range(num_layers)
            ]
        else:
            blocks = [ImageOnlyBlock(dim, num_attention_heads, attention_head_dim, qk_norm) for _ in range(num_layers)]
        self.transformer_blocks = nn.ModuleList(blocks)
        self.norm_out = AdaLayerNormContinuous(dim, dim, elementwise_affine=False, eps=1e-6)
        self.proj_out = nn.Linear(dim, patch_size * patch_size * out_channels, bias=True)
        if precached_modulation:
            for norm in self._modulated_norms():
                norm.linear = ConstantModulation(norm.linear.out_features)

    def _modulated_norms(self) -> list[nn.Module]:
        norms = [self.norm_out]
        for block in self.transformer_blocks:
            norms.append(block.norm1)
            if getattr(block, "norm1_context", None) is not None:
                norms.append(block.norm1_context)
        return norms

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        pooled_projections: torch.Tensor | None = None,
        timestep: torch.Tensor | None = None,
        return_dict: bool = True,
        **_: Any,
    ):
        cfg = self.config
        height, width = hidden_states.shape[-2:]
        batch = hidden_states.shape[0]
        h = self.pos_embed(hidden_states)
        if cfg.precached_modulation:
            temb = h.new_zeros(batch, 1)  # read by no one: every adaLN linear is a stored constant
        else:
            if timestep is None or pooled_projections is None:
                raise ExportError("this model computes its modulation: pass timestep and pooled_projections")
            temb = self.time_text_embed(timestep, pooled_projections)
        if cfg.text_stream:
            if encoder_hidden_states is None:
                raise ExportError("this model keeps the text stream: pass encoder_hidden_states (the prompt embeddings)")
            c = self.context_embedder(encoder_hidden_states)
            for block in self.transformer_blocks:
                c, h = block(hidden_states=h, encoder_hidden_states=c, temb=temb)
        else:
            for block in self.transformer_blocks:
                h = block(h, temb)
        h = self.proj_out(self.norm_out(h, temb))
        p = cfg.patch_size
        h = h.reshape(batch, height // p, width // p, p, p, self.out_channels)
        out = torch.einsum("nhwpqc->nchpwq", h).reshape(batch, self.out_channels, height, width)
        return Transformer2DModelOutput(sample=out) if return_dict else (out,)


#: Image-stream parameter prefixes of a joint block that :class:`ImageOnlyBlock` keeps.
_IMAGE_PARTS = ("norm1.", "attn.to_q.", "attn.to_k.", "attn.to_v.", "attn.to_out.", "attn.norm_q.", "attn.norm_k.", "norm2.", "ff.")


def streamline(
    transformer,
    pooled_embeds: torch.Tensor | None = None,
    precache_modulation: bool = True,
    text_stream: bool = True,
    timestep: float = ONE_STEP_T,
) -> StreamlinedSD3Transformer2DModel:
    """The streamlined version of an ``SD3Transformer2DModel``; it shares the source's tensors (no copy).

    ``pooled_embeds`` ``(1, pooled_projection_dim)`` and ``timestep`` fix the modulation when
    ``precache_modulation``; ``text_stream=False`` drops the context stream (retraining needed).
    """
    cfg = dict(transformer.config)
    if cfg.get("dual_attention_layers"):
        raise ExportError("streamlining supports SD3 (no dual attention); this is an SD3.5-style transformer")
    if precache_modulation and (pooled_embeds is None or pooled_embeds.shape[0] != 1):
        raise ExportError("pre-cached modulation needs the one pooled prompt embedding, shape (1, pooled_projection_dim)")
    keys = ("sample_size", "patch_size", "in_channels", "num_layers", "attention_head_dim", "num_attention_heads",
            "joint_attention_dim", "caption_projection_dim", "pooled_projection_dim", "out_channels",
            "pos_embed_max_size", "qk_norm")
    param = next(transformer.parameters())
    with torch.device("meta"):  # no second copy: the weights are assigned from the source below
        model = StreamlinedSD3Transformer2DModel(
            **{k: cfg[k] for k in keys if k in cfg}, precached_modulation=precache_modulation, text_stream=text_stream,
            precached_timestep=float(timestep) if precache_modulation else None,
        )

    state = dict(transformer.state_dict())
    if precache_modulation:
        with torch.no_grad():
            t = torch.full((1,), float(timestep), device=param.device)
            temb = transformer.time_text_embed(t, pooled_embeds.to(param.device, param.dtype))
            source = dict(transformer.named_modules())
            for name, module in model.named_modules():
                if isinstance(module, ConstantModulation):
                    linear = source[name]  # same module path in the source model
                    state[f"{name}.value"] = linear(torch.nn.functional.silu(temb)).detach()
                    state.pop(f"{name}.weight", None)
                    state.pop(f"{name}.bias", None)
        state = {k: v for k, v in state.items() if not k.startswith("time_text_embed.")}
    if not text_stream:
        def keep_key(key: str) -> bool:
            if key.startswith("context_embedder."):
                return False
            if key.startswith("transformer_blocks."):
                rest = key.split(".", 2)[2]
                return rest.startswith(_IMAGE_PARTS)
            return True

        state = {k: v for k, v in state.items() if keep_key(k)}
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise ExportError(f"streamlined weights do not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model.eval()
