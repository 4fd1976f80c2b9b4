"""Model families: any transformer stack pruneseek can search, export and reload (docs/design.md §11).

A :class:`Family` says, for one kind of model, how to find it in a folder, load it with its own library
(diffusers or transformers, local files only), which block stacks a depth mask covers, what calibration
inputs look like, what output to match, and how to write the pruned model back (renumbered blocks, layer
counts in the config). :func:`load_family` returns a :class:`ModelTarget`: the model with its stacks gated in
place (:mod:`pruneseek.engine.inplace`), so every forward is the model's own.

``--model NAME --base DIR`` chooses the family and the folder: a model folder (``config.json``) or a pipeline
folder with the model in its subfolder (``transformer/`` for diffusers pipelines). Families: ``sd3``
(:mod:`pruneseek.targets.sd3`), ``flux`` (:mod:`~pruneseek.targets.flux`), ``dit`` (:mod:`~pruneseek.targets.dit`),
``causal-lm`` (:mod:`~pruneseek.targets.causal_lm`). ``tsdsr`` stays the flagship SR target
(:mod:`pruneseek.targets.base`), with its LoRA, VAE and one-step setting.
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
from safetensors import SafetensorError
from torch import nn

from pruneseek.engine import MaskedStack
from pruneseek.errors import TargetError, first_line


class Family:
    """One model family; subclasses fill in the class attributes and the model-specific methods."""

    name: ClassVar[str] = ""
    #: "diffusers" (``_class_name`` in config.json) or "transformers" (``architectures``).
    library: ClassVar[str] = "diffusers"
    #: The model classes this family loads (diffusers class names; transformers: architecture suffixes).
    classes: ClassVar[tuple[str, ...]] = ()
    #: Where a pipeline folder keeps the model.
    subfolder: ClassVar[str | None] = "transformer"
    #: The config keys holding each stack's layer count, in stack order.
    layer_keys: ClassVar[tuple[str, ...]] = ("num_layers",)
    #: What the calibration loss matches (for messages and the mask file).
    objective: ClassVar[str] = "mean squared error to the unpruned model's output"

    # ----- the model --------------------------------------------------------------------------------------------
    def matches(self, config: dict) -> bool:
        return config.get("_class_name") in self.classes

    def describe_config(self, config: dict) -> str:
        return str(config.get("_class_name"))

    def load_model(self, folder: Path, config: dict) -> nn.Module:
        """The model from ``folder`` (local files only, float32); diffusers families load ``classes[0]``."""
        model, info = self._diffusers_class().from_pretrained(str(folder), local_files_only=True,
                                                              torch_dtype=torch.float32, output_loading_info=True)
        check_loading(folder, info)
        return model

    def _diffusers_class(self):
        import diffusers

        return getattr(diffusers, self.classes[0])

    def stacks(self, model: nn.Module) -> list[tuple[str, nn.ModuleList]]:
        """``[(state-dict prefix of the block list, the block list), ...]``: the layers a mask covers, in order."""
        return [("transformer_blocks", model.transformer_blocks)]

    # ----- calibration ------------------------------------------------------------------------------------------
    def synthetic_inputs(self, model: nn.Module, count: int, seed: int, size: int) -> tuple[dict, dict]:
        """``(per-sample inputs, shared inputs)`` drawn from a seeded generator (``size``: latent side / tokens)."""
        raise NotImplementedError  # pragma: no cover - interface

    def synthetic_note(self, model: nn.Module, size: int) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def output(self, model: nn.Module, inputs: dict) -> torch.Tensor:
        """The model's own output for ``inputs`` (diffusers: ``return_dict=False``, first item)."""
        return model(**inputs, return_dict=False)[0]

    def loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return (student.float() - teacher.float()).square().mean()

    # ----- export -----------------------------------------------------------------------------------------------
    def pruned_config(self, config: dict, kept_per_stack: list[list[int]]) -> dict:
        """The model config with each stack's layer count set to its kept count."""
        out = dict(config)
        for key, kept in zip(self.layer_keys, kept_per_stack):
            out[key] = len(kept)
        return out

    def prune_state(self, state: dict[str, torch.Tensor], config: dict, kept_per_stack: list[list[int]],
                    prefixes: list[str]) -> dict[str, torch.Tensor]:
        """The kept blocks' weights renumbered per stack; everything outside the stacks passes through."""
        return renumber(state, prefixes, kept_per_stack)

    def build(self, config: dict) -> nn.Module:
        """An empty model of this family from a config dict (for the pruned export)."""
        return self._diffusers_class().from_config(config)

    def check_export(self, model: nn.Module, kept_per_stack: list[list[int]]) -> None:
        """Refuse a mask the family cannot export exactly (DiT: see :mod:`pruneseek.targets.dit`)."""


def check_loading(folder: Path, info: dict) -> None:
    """Refuse weight files that lack some of the model's tensors or hold them in other shapes (``from_pretrained``'s
    loading info): the library would fill those in at random (or leave them empty) with only a warning."""
    for key, what in (("missing_keys", "lack"), ("mismatched_keys", "hold other shapes for")):
        names = sorted(k if isinstance(k, str) else str(k[0]) for k in info.get(key) or [])
        if names:
            raise TargetError(f"the weight files in {folder} {what} {len(names)} of the model's tensors "
                              f"({', '.join(names[:3])}{', ...' if len(names) > 3 else ''}); re-copy the model's weights")


@contextlib.contextmanager
def quiet_loading():
    """diffusers' and transformers' loading warnings off (their findings become one-line errors here instead)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    levels = diffusers_logging.get_verbosity(), transformers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(levels[0])
        transformers_logging.set_verbosity(levels[1])


def latent_side(model: nn.Module, size: int) -> int:
    """``size`` floored to the model's patch size (a latent side the patch embedding accepts)."""
    patch = int(model.config.patch_size)
    if size < patch:
        raise TargetError(f"--crop-size {size} is smaller than the model's patch size {patch}; use a larger --crop-size")
    return size - size % patch


def noise_latents(model: nn.Module, count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` N(0, 1) latents ``(in_channels, side, side)`` at :func:`latent_side` of ``size``."""
    side = latent_side(model, size)
    return torch.randn(count, model.config.in_channels, side, side, generator=generator)


def latents_note(model: nn.Module, size: int) -> str:
    side = latent_side(model, size)
    return f"N(0, 1) latents {model.config.in_channels}×{side}×{side}"


def renumber(state: dict[str, torch.Tensor], prefixes: list[str],
             kept_per_stack: list[list[int]]) -> dict[str, torch.Tensor]:
    """Keep ``<prefix>.<old>.*`` for kept ``old`` as ``<prefix>.<new>.*`` (kept order); other keys pass through."""
    maps = {p: {old: new for new, old in enumerate(kept)} for p, kept in zip(prefixes, kept_per_stack)}
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        for prefix, index in maps.items():
            if key.startswith(prefix + "."):
                head, _, rest = key[len(prefix) + 1:].partition(".")
                if head.isdigit():
                    if int(head) in index:
                        out[f"{prefix}.{index[int(head)]}.{rest}"] = tensor
                    break
        else:
            out[key] = tensor
    return out


# ----- the registry --------------------------------------------------------------------------------------------


def families() -> dict[str, Family]:
    """Every family by its ``--model`` name."""
    from pruneseek.targets.causal_lm import CausalLMFamily
    from pruneseek.targets.dit import DiTFamily
    from pruneseek.targets.flux import FluxFamily
    from pruneseek.targets.sd3 import SD3Family

    return {f.name: f for f in (SD3Family(), FluxFamily(), DiTFamily(), CausalLMFamily())}


def get_family(name: str) -> Family:
    known = families()
    if name not in known:
        raise TargetError(f"unknown model family {name!r}; use one of {', '.join(['tsdsr', *known])}")
    return known[name]


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TargetError(f"{path}: not a readable JSON config ({type(exc).__name__}); give a model or pipeline folder") from None
    if not isinstance(data, dict):
        raise TargetError(f"{path}: a config must be a JSON object")
    return data


def identify(config: dict) -> str | None:
    """The family a config belongs to, or None."""
    for name, fam in families().items():
        if fam.matches(config):
            return name
    return None


def model_folder(family: Family, base: Path) -> tuple[Path, dict]:
    """``(folder holding the model's config.json, that config)``: ``base`` itself or its pipeline subfolder."""
    base = Path(base)
    if not base.is_dir():
        raise TargetError(f"--base {base} is not a folder; give a local model folder (config.json) or pipeline folder")
    candidates = [base] + ([base / family.subfolder] if family.subfolder else [])
    for folder in candidates:
        if (folder / "config.json").is_file():
            config = read_json(folder / "config.json")
            if family.matches(config):
                return folder, config
            found = identify(config)
            what = family.describe_config(config) if found is None else f"a {found} model ({families()[found].describe_config(config)})"
            hint = f"use --model {found}" if found else f"--model {family.name} loads {', '.join(family.classes)}"
            raise TargetError(f"{folder / 'config.json'} describes {what}, not a {family.name} model; {hint}")
    where = " or ".join(str(c / "config.json") for c in candidates)
    raise TargetError(f"no model config at {where}; --base must be a {family.name} model folder or pipeline folder")


# ----- the loaded target ---------------------------------------------------------------------------------------


@dataclass
class ModelTarget:
    """A model of a family, its stacks gated in place as one :class:`~pruneseek.engine.MaskedStack`."""

    name: str
    family: Family
    model: nn.Module
    folder: Path
    config: dict
    prefixes: list[str]
    sizes: list[int]
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        blocks = [b for _, stack in self.family.stacks(self.model) for b in stack]
        self.stack: MaskedStack = MaskedStack.over(blocks)

    @property
    def transformer(self) -> nn.Module:
        """The model (named as the SR target's transformer, for code shared with it)."""
        return self.model

    @property
    def num_layers(self) -> int:
        return sum(self.sizes)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def lora_targets(self) -> list[str]:
        return []

    def split(self, kept: list[int]) -> list[list[int]]:
        """Global kept indices → kept indices within each stack."""
        out, start = [], 0
        for size in self.sizes:
            out.append([i - start for i in kept if start <= i < start + size])
            start += size
        return out

    def forward(self, inputs: dict, masks: torch.Tensor | None = None, mode: str = "blend") -> torch.Tensor:
        """The model's own output under ``masks`` ``(batch, N)``."""
        with self.stack.masking(masks, mode):
            return self.family.output(self.model, inputs)


def load_family(name: str, base: Path, device: str = "cpu") -> ModelTarget:
    """The model of family ``name`` in ``base`` (float32, eval mode, frozen), gated for masking."""
    family = get_family(name)
    folder, config = model_folder(family, Path(base))
    try:
        with quiet_loading():
            model = family.load_model(folder, config)
    except TargetError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, AttributeError, SafetensorError) as exc:
        raise TargetError(f"cannot load the {name} model from {folder}: {first_line(exc, 300)}; check its config and weight files") from None
    model = model.to(device).float().eval().requires_grad_(False)
    stacks = family.stacks(model)
    sizes = [len(s) for _, s in stacks]
    if not sum(sizes):
        raise TargetError(f"the {name} model in {folder} has no blocks to prune")
    info = {"family": name, "folder": str(folder), "class": type(model).__name__, "stacks": dict(zip([p for p, _ in stacks], sizes)),
            "parameters": sum(p.numel() for p in model.parameters())}
    return ModelTarget(name=name, family=family, model=model, folder=folder, config=config,
                       prefixes=[p for p, _ in stacks], sizes=sizes, info=info)
