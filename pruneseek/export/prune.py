"""Physically remove dropped blocks from SD3 transformer weights (TinySR §3.2; docs/design.md §2, §7).

Everything here works on state dicts and configs, so the same functions prune merged weights, an
unmerged base and a TSD-SR LoRA file alike:

- the kept blocks are renumbered in order (old index ``keep[j]`` becomes ``j``) and ``num_layers``
  becomes ``len(keep)``;
- SD3 builds its last block with ``context_pre_only=True`` (``SD3Transformer2DModel.__init__``). If the
  last *kept* block was an ordinary joint block it is converted: its context adaLN (``AdaLayerNormZero``,
  ``linear`` rows ``[shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp]``) becomes the
  ``AdaLayerNormContinuous`` that chunks ``(scale, shift)``, i.e. rows ``[scale_msa; shift_msa]``; its
  context output projection ``attn.to_add_out`` and context MLP ``ff_context`` go. This is exact: the
  block's image output reads the context only through the normalised keys and values of the joint
  attention, which the conversion keeps, and after the last block nothing reads the context.
"""
from __future__ import annotations

import re
from typing import Mapping, Sequence

import torch

from pruneseek.errors import ExportError
from pruneseek.mask import Mask

_BLOCK = re.compile(r"^(?P<prefix>(?:.*\.)?transformer_blocks\.)(?P<index>\d+)\.(?P<rest>.+)$")
#: Parameters of a joint block that a ``context_pre_only`` block does not have.
CONTEXT_ONLY_PREFIXES = ("attn.to_add_out.", "ff_context.", "norm2_context.")
CONTEXT_NORM = "norm1_context.linear."



def check_keep(keep: Sequence[int], num_layers: int) -> list[int]:
    """Sorted, distinct kept indices inside ``[0, num_layers)``; at least one block."""
    return Mask.from_keep(keep, num_layers, error=ExportError).kept


def pruned_config(config: Mapping, keep: Sequence[int]) -> dict:
    """The transformer config with ``num_layers = len(keep)`` (diffusers' private keys dropped) and SD3.5's
    ``dual_attention_layers`` (block indices) renumbered to the kept blocks."""
    out = {k: v for k, v in dict(config).items() if not k.startswith("_")}
    keep = check_keep(keep, int(out["num_layers"]))
    out["num_layers"] = len(keep)
    dual = set(out.get("dual_attention_layers") or ())
    if dual:
        out["dual_attention_layers"] = [new for new, old in enumerate(keep) if old in dual]
    return out


def _context_norm_rows(tensor: torch.Tensor, key: str) -> torch.Tensor:
    """AdaLayerNormZero's 6·d rows (or a LoRA B's) → AdaLayerNormContinuous's ``[scale; shift]`` 2·d rows."""
    if tensor.shape[0] % 6:
        raise ExportError(f"{key}: {tensor.shape[0]} rows is not 6·dim; is this an SD3 joint block's context adaLN?")
    d = tensor.shape[0] // 6
    shift, scale = tensor[:d], tensor[d : 2 * d]
    return torch.cat([scale, shift], dim=0).contiguous()


def prune_block_keys(
    state: Mapping[str, torch.Tensor], num_layers: int, keep: Sequence[int], lora: bool = False
) -> dict[str, torch.Tensor]:
    """Renumber the kept blocks' keys and convert the new last block (module docstring).

    ``lora``: keys are LoRA matrices (``….lora_A.weight`` / ``….lora_B.weight``): only ``lora_B`` of the
    context adaLN has rows to reorder, ``lora_A`` maps the same input. Keys outside the blocks pass through.
    """
    keep = check_keep(keep, num_layers)
    new_index = {old: new for new, old in enumerate(keep)}
    last_old = keep[-1]
    convert = last_old != num_layers - 1
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        m = _BLOCK.match(key)
        if m is None:
            out[key] = tensor
            continue
        old = int(m["index"])
        if old >= num_layers:
            raise ExportError(f"weight {key!r} belongs to block {old}, but the model has {num_layers} blocks")
        if old not in new_index:
            continue
        rest = m["rest"]
        if convert and old == last_old:
            if rest.startswith(CONTEXT_ONLY_PREFIXES):
                continue
            if rest.startswith(CONTEXT_NORM) and (not lora or ".lora_B." in rest):
                tensor = _context_norm_rows(tensor, key)
        out[f"{m['prefix']}{new_index[old]}.{rest}"] = tensor
    return out


def prune_state_dict(
    state: Mapping[str, torch.Tensor], config: Mapping, keep: Sequence[int]
) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config, state dict) of the pruned ``SD3Transformer2DModel``."""
    num_layers = int(config["num_layers"])
    return pruned_config(config, keep), prune_block_keys(state, num_layers, keep)


def prune_lora_state_dict(
    lora: Mapping[str, torch.Tensor], num_layers: int, keep: Sequence[int]
) -> dict[str, torch.Tensor]:
    """A TSD-SR LoRA file's tensors (``transformer.transformer_blocks.<i>.….lora_{A,B}.weight``) for the pruned model."""
    return prune_block_keys(lora, num_layers, keep, lora=True)


def pruned_transformer(transformer, keep: Sequence[int], share: bool = True):
    """A new ``SD3Transformer2DModel`` holding only the kept blocks, renumbered.

    ``share`` (default): the new model's tensors *are* the source's (built on the meta device and loaded
    with ``assign=True``), so pruning a 2 B-parameter model costs no second copy; only the converted
    context norm of a new last block is new memory. Don't train one and expect the other unchanged.
    """
    from diffusers import SD3Transformer2DModel

    config, state = prune_state_dict(transformer.state_dict(), transformer.config, keep)
    param = next(transformer.parameters())
    if share:
        with torch.device("meta"):
            model = SD3Transformer2DModel.from_config(config)
        model.load_state_dict(state, strict=True, assign=True)
        return model.eval()
    model = SD3Transformer2DModel.from_config(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:  # a bug here, not a user error; say exactly what failed
        raise ExportError(f"pruned weights do not fit the pruned model: missing {missing[:3]}, unexpected {unexpected[:3]}")
    if param.dtype != torch.float32:
        model.to(dtype=param.dtype)
    return model.to(param.device).eval()
