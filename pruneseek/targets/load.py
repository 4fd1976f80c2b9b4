"""The one target loader: which model a run prunes, from the same options in every command.

``search``, ``export``, ``compare`` and ``tune`` all name their model the same way: nothing (the bundled
tsdsr-mini teacher), ``--weights FILE`` (other tsdsr-mini weights), or ``--base``, ``--lora`` and
``--embeddings`` together (the real TSD-SR from local files, :mod:`pruneseek.targets.tsdsr`). A pruned model
folder written by ``pruneseek export`` (``pruned=DIR``) loads the same way: its transformer and prompt
embeddings from the folder, its latent space from its source (tsdsr-mini's pixel shuffle, or the real
TSD-SR's VAE from ``--base``/``--lora``). A :class:`TargetSource` holds that choice, checks it, loads the
:class:`~pruneseek.targets.base.SRTarget`, and says what identifies the weights (for fingerprints and records).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pruneseek.errors import TargetError, first_line


@dataclass(frozen=True)
class TargetSource:
    """Where a run's model comes from: tsdsr-mini weights (default: the bundled file) or the real TSD-SR's folders."""

    weights: Path | None = None
    base: Path | None = None
    lora: Path | None = None
    embeddings: Path | None = None
    device: str = "cpu"
    #: A pruned model folder written by ``pruneseek export`` (its ``EXPORT.json`` names the source model).
    pruned: Path | None = None
    #: The model family (``--model``): "tsdsr" (the SR target above) or a family of
    #: :mod:`pruneseek.targets.family` ("sd3", "flux", "dit", "causal-lm"), loaded from ``base``.
    family: str = "tsdsr"

    def __post_init__(self) -> None:
        if self.family != "tsdsr":
            from pruneseek.targets.family import get_family

            get_family(self.family)
            if self.base is None:
                raise TargetError(f"--model {self.family} needs --base DIR: a local {self.family} model or pipeline folder")
            extra = [flag for flag, v in (("--lora", self.lora), ("--embeddings", self.embeddings),
                                          ("--weights", self.weights)) if v is not None]
            if extra:
                raise TargetError(f"{', '.join(extra)} belong(s) to --model tsdsr; --model {self.family} reads "
                                  "everything from --base")
            return
        real = [self.base, self.lora, self.embeddings]
        if any(real) and not all(real):
            raise TargetError("the real TSD-SR needs all of --base, --lora and --embeddings (local folders)")
        if any(real) and self.weights is not None:
            raise TargetError("--weights names tsdsr-mini weights; it cannot be combined with --base/--lora/--embeddings")
        if self.pruned is not None and self.weights is not None:
            raise TargetError("--weights names full tsdsr-mini weights; a pruned folder carries its own weights")

    @property
    def is_real(self) -> bool:
        """True for the real TSD-SR (``--base/--lora/--embeddings``), False for tsdsr-mini and other families."""
        return self.base is not None and not self.is_family

    @property
    def is_family(self) -> bool:
        """True for a model family other than TSD-SR (``--model sd3|flux|dit|causal-lm --base DIR``)."""
        return self.family != "tsdsr"

    @property
    def mini_weights(self) -> Path:
        """The tsdsr-mini weights file this source names (the bundled one by default)."""
        from pruneseek.targets.mini import WEIGHTS

        return Path(self.weights) if self.weights is not None else WEIGHTS

    def load(self, merge_lora: bool = True):
        """The :class:`~pruneseek.targets.base.SRTarget` (TSD-SR's LoRA merged unless ``merge_lora`` is False)."""
        if self.is_family:
            from pruneseek.targets.family import load_family

            return load_family(self.family, Path(self.base), self.device)
        if self.pruned is not None:
            return load_pruned(Path(self.pruned), self)
        if self.is_real:
            from pruneseek.targets.tsdsr import load_tsdsr

            return load_tsdsr(self.base, self.lora, self.embeddings, device=self.device, merge=merge_lora)
        from pruneseek.targets.mini import load_mini

        return load_mini(self.weights, device=self.device)

    def weights_fingerprint(self) -> Any:
        """What identifies the weights in a run's fingerprint: the mini file's sha256, or the real folders' paths."""
        from pruneseek.io import file_sha256

        if self.is_family:
            return self.identity()
        if self.is_real:
            return {"base": str(Path(self.base).resolve()), "lora": str(Path(self.lora).resolve()),
                    "embeddings": str(Path(self.embeddings).resolve())}
        return file_sha256(self.mini_weights)

    def identity(self) -> dict[str, Any]:
        """The weights' identity recorded in an export (file names and content hashes)."""
        from pruneseek.io import file_sha256

        if self.is_family:
            from pruneseek.targets.family import get_family, model_folder

            folder, _ = model_folder(get_family(self.family), Path(self.base))
            return {"family": self.family, "base": str(Path(self.base).resolve()),
                    "config_sha256": file_sha256(folder / "config.json")}
        if self.is_real:
            from pruneseek.targets.tsdsr import POOLED_FILE, PROMPT_FILE, TRANSFORMER_FILE

            emb = Path(self.embeddings)
            return {"base": str(Path(self.base).resolve()), "lora_sha256": file_sha256(Path(self.lora) / TRANSFORMER_FILE),
                    "embeddings_sha256": [file_sha256(emb / PROMPT_FILE), file_sha256(emb / POOLED_FILE)]}
        return {"weights": self.mini_weights.name, "weights_sha256": file_sha256(self.mini_weights)}


def export_record(folder: Path) -> dict[str, Any]:
    """The ``EXPORT.json`` of a pruned model folder (a clear error when the folder is not one)."""
    import json

    record_path = folder / "EXPORT.json"
    if not folder.is_dir():
        raise TargetError(f"{folder} is not a folder; give a folder written by 'pruneseek export'")
    if not record_path.is_file():
        raise TargetError(f"{folder} has no EXPORT.json: not a folder written by 'pruneseek export'")
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        record["source"]["model"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TargetError(f"{record_path}: not a readable export record ({type(exc).__name__}: {exc}); export again")
    return record


def check_sr_export(folder: Path, record: dict) -> None:
    """Refuse an export of another model family where an SR target is needed (retrain, evaluate, upscale)."""
    model = record["source"]["model"]
    if record["source"].get("family") or model not in ("tsdsr", "tsdsr-mini"):
        raise TargetError(f"{folder} holds a pruned {model} model: retrain, evaluate and upscale run on TSD-SR exports; "
                          "load this one with its library's from_pretrained")
    mask = record.get("mask")
    n, keep = (mask.get("num_layers"), mask.get("keep")) if isinstance(mask, dict) else (None, None)
    if not (_is_int(n) and isinstance(keep, list) and keep and all(_is_int(i) for i in keep)
            and keep == sorted(set(keep)) and 0 <= keep[0] and keep[-1] < n):
        raise TargetError(f"{folder / 'EXPORT.json'}: field 'mask' must give num_layers and the sorted kept layer "
                          f"indices below it, got {str(mask)[:80]}; export the folder again")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def load_pruned(folder: Path, source: TargetSource, latent=None, merge_lora: bool = True):
    """A pruned folder as an :class:`~pruneseek.targets.base.SRTarget`: the folder's transformer (plain diffusers
    ``from_pretrained``) and prompt embeddings, in the latent space of the model it was exported from.

    ``latent``: an already loaded full target whose encoder/decoder to share (saves loading the source model, a
    2 B-parameter transformer for the real TSD-SR, a second time). ``merge_lora=False`` keeps a separate export's
    TSD-SR LoRA as a live adapter (peft's ``default``) instead of merging it."""
    import torch
    from diffusers import SD3Transformer2DModel

    from pruneseek.targets.base import SRTarget
    from pruneseek.targets.family import check_loading, quiet_loading

    record = export_record(folder)
    check_sr_export(folder, record)
    model = record["source"]["model"]
    if model == "tsdsr" and not source.is_real:
        raise TargetError(f"{folder} was exported from the real TSD-SR; give --base, --lora and --embeddings for its "
                          "VAE (the transformer comes from the folder)")
    if latent is not None and latent.name != model:
        raise TargetError(f"{folder} was exported from {model}, not from {latent.name}; give that model's options")
    if latent is not None:
        full = latent
    elif model == "tsdsr":
        full = replace(source, pruned=None).load()
    else:
        full = TargetSource(device=source.device).load()
    try:
        with quiet_loading():
            transformer, loading = SD3Transformer2DModel.from_pretrained(str(folder), output_loading_info=True)
        prompt = torch.load(folder / "embeddings" / "prompt_embeds.pt", map_location="cpu", weights_only=True)
        pooled = torch.load(folder / "embeddings" / "pool_embeds.pt", map_location="cpu", weights_only=True)
    except (OSError, ValueError, RuntimeError, TypeError, KeyError) as exc:
        raise TargetError(f"{folder}: cannot load the pruned model ({type(exc).__name__}: "
                          f"{first_line(exc, 300, default='')}); export again") from None
    check_loading(folder, loading)
    transformer = transformer.to(source.device).eval()
    if len(transformer.transformer_blocks) != len(record["mask"]["keep"]):
        raise TargetError(f"{folder}: config.json gives {len(transformer.transformer_blocks)} layers, but EXPORT.json "
                          f"keeps {len(record['mask']['keep'])}; export the folder again")
    lora_file = folder / "lora" / "transformer.safetensors"
    if lora_file.is_file():  # an export with --lora-format separate: TSD-SR's renumbered LoRA, merged on load
        from pruneseek.targets.tsdsr import TSDSR_TRANSFORMER_TARGETS, _apply_lora, _merge_lora, read_tsdsr_lora

        tensors, rank = read_tsdsr_lora(lora_file)
        _apply_lora(transformer, TSDSR_TRANSFORMER_TARGETS, tensors, rank, lora_file, folder)
        if merge_lora:
            _merge_lora(transformer)
    info = {"pruned": str(folder), "export": {k: record.get(k) for k in ("source", "mask", "params")},
            "lora_merged_on_load": lora_file.is_file() and merge_lora,
            "lora_separate": lora_file.is_file() and not merge_lora}
    return SRTarget(name=f"{full.name}-pruned", transformer=transformer, prompt_embeds=prompt.to(source.device),
                    pooled_embeds=pooled.to(source.device), encoder=full.encoder, decoder=full.decoder,
                    lora_targets=[], info=info)
