"""Export a mask as a pruned diffusers checkpoint folder, written atomically (issue 6; TinySR §3.2).

``DIR`` after :func:`export_checkpoint`::

    DIR/config.json, diffusion_pytorch_model.safetensors   the pruned SD3Transformer2DModel (plain diffusers)
    DIR/prune_mask.json                                     TinySR's prune_mask list (1 = keep, one per layer)
    DIR/mask.json                                           the pruneseek mask file it came from (if any)
    DIR/embeddings/prompt_embeds.pt, pool_embeds.pt         the fixed prompt conditioning (TSD-SR layout)
    DIR/lora/transformer.safetensors, vae.safetensors       only with lora="separate": TSD-SR's LoRA, renumbered
    DIR/streamlined/                                        only with a streamlining option (pruneseek's class)
    DIR/EXPORT.json                                         source, mask hash, options, parameters, MACs, latency

The folder is built next to ``DIR`` under a temporary name and renamed into place at the end, so an
interrupted export leaves no half folder; a folder holding a different export is refused unless ``force``.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from pruneseek import __version__
from pruneseek.export.measure import count_macs, count_params, interleaved_latency
from pruneseek.export.prune import ExportError, check_keep, prune_lora_state_dict, pruned_transformer
from pruneseek.export.streamline import ONE_STEP_T, streamline
from pruneseek.fingerprint import settings_hash
from pruneseek.io import atomic_write_bytes, atomic_write_json, building_folder as building, file_sha256
from pruneseek.mask import Mask

FORMAT = "pruneseek.export/v1"
LORA_MODES = ("merged", "separate")


@dataclass
class ExportSource:
    """What to prune: the transformer (merged weights, or the bare base when ``lora`` is given) and its conditioning.

    ``identity`` says which model this is (paths and file hashes); two exports are "the same model" when
    identity, mask and options agree. ``lora``: TSD-SR-layout transformer LoRA tensors kept separate;
    ``vae_lora_file``: TSD-SR's VAE LoRA file, copied unchanged (the VAE is not pruned).
    """

    name: str
    transformer: nn.Module
    prompt_embeds: torch.Tensor
    pooled_embeds: torch.Tensor
    identity: dict
    lora: dict[str, torch.Tensor] | None = None
    vae_lora_file: Path | None = None

    @property
    def num_layers(self) -> int:
        return len(self.transformer.transformer_blocks)


@dataclass
class ExportOptions:
    lora: str = "merged"
    precache_modulation: bool = False
    drop_text_stream: bool = False
    measure: bool = True
    #: Latent side (in latent pixels) of the input used for MACs and latency.
    measure_latent: int = 16
    rounds: int = 5
    verify: bool = True
    extra: dict = field(default_factory=dict)

    def validate(self) -> "ExportOptions":
        if self.lora not in LORA_MODES:
            raise ExportError(f"lora must be one of {list(LORA_MODES)}, got {self.lora!r}")
        return self


def read_mask(path: str | os.PathLike[str], model_name: str | None, num_layers: int):
    """``(keep, mask file or None, sha256)`` from a pruneseek mask file or a bare TinySR ``prune_mask`` JSON list."""
    from pruneseek.maskfile import MaskFile, mask_from_prune_list

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"mask file {path} does not exist; write one with 'pruneseek search' (mask.json)")
    try:
        text = path.read_bytes().decode("utf-8")
        doc = json.loads(text)
    except UnicodeDecodeError:
        raise ExportError(f"{path}: not UTF-8 text; pass a pruneseek mask file (mask.json) or a JSON prune_mask list") from None
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path}: not JSON ({exc.msg} at line {exc.lineno}); pass a pruneseek mask file") from None
    except RecursionError:
        raise ExportError(f"{path}: JSON nested too deeply; pass a pruneseek mask file (mask.json)") from None
    sha = file_sha256(path)
    if isinstance(doc, list) or (isinstance(doc, dict) and set(doc) == {"prune_mask"}):
        mask = mask_from_prune_list(doc if isinstance(doc, list) else doc["prune_mask"])
        return Mask.of(mask, num_layers, error=ExportError, what=f"{path}: the prune_mask").kept, None, sha
    mask_file = MaskFile.loads(text, where=path)
    mask_file.check_model(model_name, num_layers)
    return mask_file.mask_value.kept, mask_file, sha


def _fingerprint(source: ExportSource, keep: Sequence[int], options: ExportOptions) -> str:
    """The full sha256 (64 hex digits, as EXPORT.json files record it) of what makes two exports the same."""
    doc = {"source": source.identity, "keep": list(keep), "lora": options.lora,
           "precache_modulation": options.precache_modulation, "drop_text_stream": options.drop_text_stream}
    return settings_hash(doc, length=64)


def check_destination(out: Path, fingerprint: str, force: bool) -> None:
    """Refuse to replace a folder that holds something else than this very export (unless ``force``)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ExportError(f"--out {out} exists and is not a folder; choose another path")
    if not any(out.iterdir()) or force:
        return
    record = out / "EXPORT.json"
    try:
        previous = json.loads(record.read_text(encoding="utf-8")).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        previous = None
    if previous == fingerprint:
        return  # the same export again: replace it
    what = "a different pruneseek export" if previous else "files that are not a pruneseek export"
    raise ExportError(f"{out} already holds {what}; choose another --out, or pass --force to replace it")


def _inputs(source: ExportSource, side: int, device) -> dict[str, torch.Tensor]:
    cfg = source.transformer.config
    g = torch.Generator().manual_seed(0)
    dtype = next(source.transformer.parameters()).dtype
    z = torch.randn(1, cfg.in_channels, side, side, generator=g).to(device, dtype)
    return {
        "hidden_states": z,
        "encoder_hidden_states": source.prompt_embeds.to(device, dtype),
        "pooled_projections": source.pooled_embeds.to(device, dtype),
        "timestep": torch.full((1,), ONE_STEP_T, device=device),
    }


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def _copy_lora(source: ExportSource, keep: Sequence[int], folder: Path) -> dict:
    from safetensors.torch import save

    from pruneseek.targets.tsdsr import TRANSFORMER_FILE, VAE_FILE

    if source.lora is None:
        raise ExportError(
            f"{source.name} has no separate LoRA to write; use --lora-format merged (or load TSD-SR with --base/--lora)"
        )
    pruned = prune_lora_state_dict(source.lora, source.num_layers, keep)
    atomic_write_bytes(folder / TRANSFORMER_FILE, save({k: v.contiguous() for k, v in pruned.items()}, metadata={"format": "pt"}))
    if source.vae_lora_file is not None:
        shutil.copyfile(source.vae_lora_file, folder / VAE_FILE)
    return {"tensors_before": len(source.lora), "tensors_after": len(pruned),
            "params_after": int(sum(v.numel() for v in pruned.values()))}


def export_checkpoint(
    source: ExportSource,
    keep: Sequence[int],
    out: str | os.PathLike[str],
    options: ExportOptions | None = None,
    mask_file=None,
    mask_sha256: str | None = None,
    force: bool = False,
    command: str = "",
) -> dict:
    """Write the export folder (module docstring) and return its ``EXPORT.json`` record."""
    from diffusers import SD3Transformer2DModel  # noqa: F401 (fail early when diffusers is missing)

    options = (options or ExportOptions()).validate()
    keep = check_keep(keep, source.num_layers)
    out = Path(out)
    fingerprint = _fingerprint(source, keep, options)
    check_destination(out, fingerprint, force)
    with building(out) as tmp:
        full = source.transformer.eval()
        device = next(full.parameters()).device
        dropped = [i for i in range(source.num_layers) if i not in keep]
        pruned = pruned_transformer(full, keep)
        source_mask, lora_record = _write_model_files(source, keep, pruned, tmp, mask_file, options)
        record = _base_record(source, keep, dropped, options, fingerprint, source_mask, mask_sha256, lora_record,
                              full, pruned, command)

        x = _inputs(source, options.measure_latent, device)
        variants: dict[str, Any] = {"full": lambda: full(**x, return_dict=False)[0],
                                    "pruned": lambda: pruned(**x, return_dict=False)[0]}
        if options.verify:
            record["verify"] = _verify(full, tmp, x, dropped, device, options)
        if options.precache_modulation or options.drop_text_stream:
            record["streamlined"] = _streamline(source, pruned, tmp, x, variants, options)
        if options.measure:
            record["measure"] = _measure(source, full, pruned, variants, record, device, options)
        atomic_write_json(tmp / "EXPORT.json", record)
    return record


def _write_model_files(source: ExportSource, keep: Sequence[int], pruned: nn.Module, tmp: Path, mask_file,
                       options: ExportOptions) -> tuple[str | None, dict | None]:
    """The pruned weights, ``prune_mask.json``, the mask file, the embeddings and (separate) the LoRA.

    Returns the mask file's original path (or None) and the LoRA record (or None).
    """
    pruned.save_pretrained(tmp, safe_serialization=True)
    atomic_write_json(tmp / "prune_mask.json", [1 if i in keep else 0 for i in range(source.num_layers)])
    source_mask = str(mask_file.path) if mask_file is not None and mask_file.path else None
    if mask_file is not None:
        mask_file.save(tmp / "mask.json")  # (this sets mask_file.path to the copy)
    (tmp / "embeddings").mkdir()
    for name, tensor in (("prompt_embeds.pt", source.prompt_embeds), ("pool_embeds.pt", source.pooled_embeds)):
        _save_tensor(tensor, tmp / "embeddings" / name)
    lora_record = _copy_lora(source, keep, tmp / "lora") if options.lora == "separate" else None
    return source_mask, lora_record


def _save_tensor(tensor: torch.Tensor, path: Path) -> None:
    """``torch.save`` through :func:`atomic_write_bytes`: a full disk is an ``OSError`` naming the path (torch's own
    file writer reports it as an unexplained ``RuntimeError`` and leaves a partial file)."""
    import io

    buf = io.BytesIO()
    torch.save(tensor.detach().cpu().clone(), buf)
    atomic_write_bytes(path, buf.getvalue())


def _base_record(source: ExportSource, keep: Sequence[int], dropped: list[int], options: ExportOptions,
                 fingerprint: str, source_mask: str | None, mask_sha256: str | None, lora_record: dict | None,
                 full: nn.Module, pruned: nn.Module, command: str) -> dict[str, Any]:
    """``EXPORT.json`` before verification, streamlining and measurement."""
    record: dict[str, Any] = {
        "format": FORMAT,
        "fingerprint": fingerprint,
        "source": {"model": source.name, **source.identity},
        "mask": {
            "file": source_mask,
            "sha256": mask_sha256,
            "num_layers": source.num_layers,
            "keep": list(keep),
            "dropped": dropped,
        },
        "lora": {"format": options.lora, **(lora_record or {})},
        "params": {"before": count_params(full), "after": count_params(pruned)},
        "load": "diffusers.SD3Transformer2DModel.from_pretrained(DIR)",
        "streamlined": None,
        "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "pruneseek_version": __version__,
        "command": command,
        **options.extra,
    }
    if options.lora == "separate":
        record["params"]["note"] = "the transformer weights are the bare base; the LoRA is in lora/ (TSD-SR layout)"
    return record


def _verify(full: nn.Module, tmp: Path, x: dict[str, torch.Tensor], dropped: list[int], device,
            options: ExportOptions) -> dict[str, Any]:
    """Reload the written folder with plain diffusers and compare it with the full model skipping ``dropped``."""
    from diffusers import SD3Transformer2DModel

    reloaded = SD3Transformer2DModel.from_pretrained(tmp, torch_dtype=next(full.parameters()).dtype).to(device).eval()
    with torch.no_grad():
        ref = full(**x, skip_layers=dropped, return_dict=False)[0]
        got = reloaded(**x, return_dict=False)[0]
    result = {"max_abs_diff_vs_skip_layers": _max_diff(ref, got), "latent_side": options.measure_latent}
    del reloaded
    return result


def _streamline(source: ExportSource, pruned: nn.Module, tmp: Path, x: dict[str, torch.Tensor],
                variants: dict[str, Any], options: ExportOptions) -> dict[str, Any]:
    """Write ``streamlined/``, check each option against the pruned model, add them to ``variants``; its record."""
    streamlined = streamline(pruned, source.pooled_embeds, precache_modulation=options.precache_modulation,
                             text_stream=not options.drop_text_stream)
    streamlined.save_pretrained(tmp / "streamlined", safe_serialization=True)
    options_record: dict[str, Any] = {}
    with torch.no_grad():
        ref = pruned(**x, return_dict=False)[0]
        for key, kwargs in (("precache_modulation", {"precache_modulation": True, "text_stream": True}),
                            ("drop_text_stream", {"precache_modulation": False, "text_stream": False})):
            if not getattr(options, key):
                continue
            variant = streamline(pruned, source.pooled_embeds, **kwargs)
            diff = _max_diff(ref, variant(**x, return_dict=False)[0])
            options_record[key] = {
                "exact": key == "precache_modulation",
                "requires_retraining": key == "drop_text_stream",
                "max_abs_diff_vs_pruned": diff,
                "params": count_params(variant),
            }
            variants[key] = (lambda v: (lambda: v(**x, return_dict=False)[0]))(variant)
        combined_diff = _max_diff(ref, streamlined(**x, return_dict=False)[0])
    if options.precache_modulation and options.drop_text_stream:
        variants["streamlined"] = lambda: streamlined(**x, return_dict=False)[0]
    return {
        "folder": "streamlined",
        "load": "pruneseek.export.StreamlinedSD3Transformer2DModel.from_pretrained(DIR / 'streamlined')",
        "precache_modulation": options.precache_modulation,
        "text_stream": not options.drop_text_stream,
        "timestep": ONE_STEP_T if options.precache_modulation else None,
        "exact": not options.drop_text_stream,
        "requires_retraining": options.drop_text_stream,
        "max_abs_diff_vs_pruned": combined_diff,
        "params": count_params(streamlined),
        "options": options_record,
    }


def _measure(source: ExportSource, full: nn.Module, pruned: nn.Module, variants: dict[str, Any],
             record: dict[str, Any], device, options: ExportOptions) -> dict[str, Any]:
    """Parameters, MACs and interleaved latency of every variant, and their ratios to the full model."""
    macs = {name: count_macs(fn) for name, fn in variants.items()}
    latency = interleaved_latency(variants, rounds=options.rounds, device=str(device))
    return {
        "input": {"latent_side": options.measure_latent, "batch": 1,
                  "context_tokens": int(source.prompt_embeds.shape[1]), "device": str(device),
                  "dtype": str(next(full.parameters()).dtype).replace("torch.", "")},
        "params": {"full": count_params(full), "pruned": count_params(pruned),
                   **{k: v["params"] for k, v in (record["streamlined"] or {}).get("options", {}).items()},
                   **({"streamlined": record["streamlined"]["params"]} if "streamlined" in variants else {})},
        "macs": macs,
        "latency": latency,
        "latency_over_full": {k: v["median_s"] / latency["full"]["median_s"] for k, v in latency.items()},
        "macs_over_full": {k: v / macs["full"] for k, v in macs.items()},
    }


def base_and_lora(model: nn.Module, adapter: str = "default") -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Split a peft-wrapped diffusers model into its bare base state dict and its TSD-SR-layout LoRA tensors."""
    from pruneseek.targets.tsdsr import tsdsr_lora_state_dict

    lora = tsdsr_lora_state_dict(model, adapter)
    base = {}
    for key, value in model.state_dict().items():
        if ".lora_" in key:
            continue
        base[key.replace(".base_layer.", ".")] = value
    return base, lora


def bare_copy(model: nn.Module, adapter: str = "default") -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A plain ``SD3Transformer2DModel`` with the base weights of a LoRA-wrapped one, and the LoRA tensors."""
    from diffusers import SD3Transformer2DModel

    base, lora = base_and_lora(model, adapter)
    plain = SD3Transformer2DModel.from_config(dict(model.config))
    missing, unexpected = plain.load_state_dict(base, strict=False)
    if missing or unexpected:
        raise ExportError(f"could not separate the base weights from the LoRA: missing {missing[:3]}, unexpected {unexpected[:3]}")
    param = next(model.parameters())
    return plain.to(device=param.device, dtype=param.dtype).eval(), lora


__all__ = ["ExportOptions", "ExportSource", "base_and_lora", "bare_copy", "export_checkpoint", "read_mask"]
