"""Export a mask on a model family (sd3, flux, dit, causal-lm) as a plain model folder, written atomically.

``DIR`` after :func:`export_family`::

    DIR/config.json, *.safetensors      the pruned model: the family's own class (diffusers or transformers)
                                        with the kept blocks renumbered per stack and the layer counts set
    DIR/tokenizer files, generation_config.json
                                        causal-lm only: copied from the source folder when present
    DIR/prune_mask.json                 one 0/1 per global layer (1 = keep), all stacks in model order
    DIR/mask.json                       the pruneseek mask file it came from (if any), byte for byte
    DIR/EXPORT.json                     source, mask, per-stack kept blocks, layer counts, parameters, verification

The folder is built next to ``DIR`` under a temporary name and renamed into place at the end (the helpers of
:mod:`pruneseek.export.folder`); a folder holding a different export is refused unless ``force``.

Verification reloads the written folder with the family's plain ``from_pretrained`` (local files only) and
compares its output with the full model's own forward under the hard mask in *skip* mode (dropped blocks not
computed), on the family's synthetic inputs (two samples, seed 0): they must agree to 1e-4 (float32; scaled by
the output's magnitude when that exceeds 1, e.g. an LLM's logits).
"""
from __future__ import annotations

import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from pruneseek import __version__
from pruneseek.errors import ExportError, first_line
from pruneseek.export.folder import FORMAT, building, check_destination
from pruneseek.export.measure import count_params
from pruneseek.export.prune import check_keep
from pruneseek.fingerprint import settings_hash
from pruneseek.io import atomic_write_json

#: Float32 agreement the reloaded export must reach (times max(1, |output|max)).
TOLERANCE = 1e-4
#: Synthetic-input size of the verification: latent side (sd3, dit; flux packs it 2×2) or tokens (causal-lm).
VERIFY_SIZE = {"causal-lm": 16}
DEFAULT_VERIFY_SIZE = 8
#: Files of a causal LM's folder that the pruned model shares unchanged (copied when present).
LM_SIDE_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.json",
    "merges.txt", "vocab.txt", "tokenizer.model", "spiece.model", "chat_template.jinja", "chat_template.json",
    "generation_config.json",
)


def model_config(target) -> dict:
    """The source config.json as a build config: diffusers' private keys (``_class_name``, ``_diffusers_version``,
    ``_name_or_path``, ``_use_default_values``...) dropped; a transformers config passes unchanged."""
    if target.family.library == "diffusers":
        return {k: v for k, v in target.config.items() if not str(k).startswith("_")}
    return dict(target.config)


def _fingerprint(target, identity: dict, keep: Sequence[int]) -> str:
    return settings_hash({"source": identity, "family": target.name, "keep": list(keep)}, length=64)


def _config_value(model: nn.Module, key: str) -> Any:
    config = model.config
    return getattr(config, key) if not isinstance(config, dict) else config[key]


def _load_hint(target) -> str:
    if target.family.library == "transformers":
        return "transformers.AutoModelForCausalLM.from_pretrained(DIR)"
    return f"diffusers.{type(target.model).__name__}.from_pretrained(DIR)"


def build_pruned(target, kept_per_stack: list[list[int]]) -> tuple[dict, nn.Module]:
    """``(config, model)``: the pruned model of the family's class holding the kept blocks' weights (strict load)."""
    family = target.family
    config = family.pruned_config(model_config(target), kept_per_stack)
    state = family.prune_state(target.model.state_dict(), target.config, kept_per_stack, target.prefixes)
    try:
        model = family.build(config)
    except (TypeError, ValueError, AttributeError, KeyError) as exc:  # a config field the library cannot build from
        raise ExportError(f"cannot build the pruned {target.name} model from {target.folder}/config.json "
                          f"({first_line(exc, 200)}); "
                          "check the config's fields") from None
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        lines = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
        raise ExportError(f"the pruned {target.name} weights do not fit the pruned model ({len(lines)} mismatches, "
                          f"e.g. {'; '.join(lines[:2])[:400]}); this is a pruneseek bug") from None
    if missing or unexpected:  # a bug in the family's export, not a user error: say exactly what failed
        raise ExportError(
            f"the pruned {target.name} weights do not fit the pruned model ({len(missing)} missing, e.g. "
            f"{list(missing)[:3]}; {len(unexpected)} unexpected, e.g. {list(unexpected)[:3]}); this is a pruneseek bug")
    return config, _like(model, target.model).eval().requires_grad_(False)


def _like(model: nn.Module, reference: nn.Module) -> nn.Module:
    """``model`` on ``reference``'s device and dtype (moved only when it differs: diffusers warns on a cast)."""
    param, ref = next(model.parameters()), next(reference.parameters())
    if param.dtype != ref.dtype:
        model = model.to(dtype=ref.dtype)
    if param.device != ref.device:
        model = model.to(ref.device)
    return model


def _hard_masks(keep: Sequence[int], num_layers: int, batch: int, device) -> torch.Tensor:
    row = torch.zeros(num_layers)
    row[list(keep)] = 1.0
    return row.expand(batch, -1).to(device)


def _to(inputs: dict, device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}


def verify_inputs(target, size: int | None = None) -> tuple[dict, int]:
    """The verification inputs (two samples, seed 0; per-sample and shared merged) and their size."""
    size = size or VERIFY_SIZE.get(target.name, DEFAULT_VERIFY_SIZE)
    samples, shared = target.family.synthetic_inputs(target.model, 2, seed=0, size=size)
    return _to({**samples, **shared}, target.device), size


def _verify(target, folder: Path, config: dict, keep: Sequence[int], size: int | None) -> dict[str, Any]:
    """Reload ``folder`` with the family's plain ``from_pretrained``; compare with the full model under the mask."""
    family = target.family
    try:
        reloaded = family.load_model(folder, config)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
        raise ExportError(f"the written {target.name} folder does not load with from_pretrained: "
                          f"{first_line(exc, 300)}") from None
    reloaded = _like(reloaded, target.model).eval().requires_grad_(False)
    inputs, size = verify_inputs(target, size)
    masks = _hard_masks(keep, target.num_layers, 2, target.device)
    with torch.no_grad():
        ref = target.forward(inputs, masks, "skip").float()
        got = family.output(reloaded, inputs).float()
    del reloaded
    if ref.shape != got.shape:
        raise ExportError(f"the reloaded {target.name} export gives output of shape {tuple(got.shape)}, the masked "
                          f"full model {tuple(ref.shape)}; this is a pruneseek bug")
    diff = float((ref - got).abs().max())
    scale = float(ref.abs().max())
    tolerance = TOLERANCE * max(1.0, scale)
    result = {"max_abs_diff_vs_masked": diff, "output_abs_max": scale, "tolerance": tolerance,
              "compared": "reloaded export vs the full model's forward under the hard mask (skip mode)",
              "inputs": {"samples": 2, "seed": 0, "size": size, "note": family.synthetic_note(target.model, size)},
              "dtype": "float32"}
    if not diff <= tolerance:
        raise ExportError(f"the reloaded {target.name} export differs from the masked full model by {diff:.3g} "
                          f"(max |output| {scale:.3g}, tolerance {tolerance:.3g}); this is a pruneseek bug")
    return result


def _copy_side_files(target, tmp: Path) -> list[str]:
    if target.family.library != "transformers":
        return []
    copied = []
    for name in LM_SIDE_FILES:
        src = Path(target.folder) / name
        if src.is_file():
            shutil.copyfile(src, tmp / name)
            copied.append(name)
    return copied


def export_family(
    target,
    keep: Sequence[int],
    out: str | os.PathLike[str],
    mask_file=None,
    identity: dict | None = None,
    force: bool = False,
    verify: bool = True,
    mask_sha256: str | None = None,
    command: str = "",
    verify_size: int | None = None,
) -> dict:
    """Write the pruned model of ``target`` (a :class:`~pruneseek.targets.family.ModelTarget`) keeping the global
    block indices ``keep`` to ``out`` (module docstring); return the ``EXPORT.json`` record."""
    keep = check_keep(keep, target.num_layers)
    identity = dict(identity or {})
    out = Path(out)
    kept_per_stack = target.split(keep)
    target.family.check_export(target.model, kept_per_stack)
    fingerprint = _fingerprint(target, identity, keep)
    check_destination(out, fingerprint, force)
    with building(out) as tmp:
        config, pruned = build_pruned(target, kept_per_stack)
        pruned.save_pretrained(str(tmp))
        atomic_write_json(tmp / "prune_mask.json", [1 if i in keep else 0 for i in range(target.num_layers)])
        source_mask = None
        if mask_file is not None:
            source_mask = str(mask_file.path) if mask_file.path else None
            if mask_file.path and Path(mask_file.path).is_file():
                shutil.copyfile(mask_file.path, tmp / "mask.json")  # byte for byte: its sha256 is the recorded one
            else:
                (tmp / "mask.json").write_text(mask_file.to_text(), encoding="utf-8")
        side_files = _copy_side_files(target, tmp)
        dropped = [i for i in range(target.num_layers) if i not in keep]
        stacks = {}
        for prefix, size, kept, key in zip(target.prefixes, target.sizes, kept_per_stack, target.family.layer_keys):
            stacks[prefix] = {"layers": size, "kept": kept, "dropped": [i for i in range(size) if i not in kept],
                              "config_key": key}
        record: dict[str, Any] = {
            "format": FORMAT,
            "fingerprint": fingerprint,
            "source": {"model": target.name, **identity},
            "family": {"name": target.name, "library": target.family.library, "class": type(target.model).__name__,
                       "pruned_class": type(pruned).__name__},
            "mask": {"file": source_mask, "sha256": mask_sha256, "num_layers": target.num_layers,
                     "keep": list(keep), "dropped": dropped, "stacks": stacks},
            "config": {key: int(_config_value(pruned, key)) for key in target.family.layer_keys},
            "params": {"before": count_params(target.model), "after": count_params(pruned)},
            "files": {"copied": side_files},
            "load": _load_hint(target),
            "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
            "pruneseek_version": __version__,
            "command": command,
        }
        del pruned
        record["verified"] = _verify(target, tmp, config, keep, verify_size) if verify else None
        atomic_write_json(tmp / "EXPORT.json", record)
    return record


__all__ = ["build_pruned", "export_family", "model_config", "verify_inputs"]
