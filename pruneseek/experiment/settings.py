"""Typed settings of the experiments: a search, a comparison's budget, a comparison and a tuning study.

Commands parse their options into these objects and hand them to the experiment functions; nothing below
the commands sees an ``argparse.Namespace``. Defaults come from :mod:`pruneseek.recipes`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pruneseek import recipes
from pruneseek.targets.load import TargetSource


@dataclass(frozen=True)
class SearchSettings:
    """One ``pruneseek search`` run: model, space, strategy and its flags, data, run length, outputs."""

    source: TargetSource = field(default_factory=TargetSource)
    model: str = "tsdsr"
    ratio: float | None = None
    space: str | None = None
    strategy: str = "tinysr"
    rule: str | None = None
    mode: str | None = None
    ema_decay: float | None = None
    steps: int = recipes.SEARCH["steps"]
    batch: int = recipes.SEARCH["batch"]
    crops: int = recipes.SEARCH["crops"]
    crop_size: int = recipes.SEARCH["crop_size"]
    seed: int = recipes.SEARCH["seed"]
    perceptual: str = "auto"
    data: Path | None = None
    out: Path | None = None
    checkpoint_every: int = 0
    resume: Path | None = None
    #: Recompute each block's activations in the backward pass (less memory, same numbers).
    gradient_checkpointing: bool = False
    #: The frozen weights' precision and the forward's autocast ("fp32", "bf16", "fp16"); gates, their EMA, LoRA
    #: adapters and the optimiser state stay float32.
    dtype: str = "fp32"
    #: Run even when the memory estimate exceeds the free CUDA memory.
    ignore_memory_check: bool = False
    #: Estimate the peak memory (and on CUDA check it) before the run; ``--seeds`` does it for the first seed only,
    #: since every seed's run has the same shape.
    memory_check: bool = True
    progress: bool = True


@dataclass(frozen=True)
class Budget:
    """A comparison's budget: search and recovery steps, data, held-out set, seeds and recovery lr."""

    search_steps: int
    recovery_steps: int
    batch: int
    crops: int
    crop_size: int
    eval_crop: int
    eval_seeds: tuple[int, ...]
    seeds: tuple[int, ...]
    lr: float
    #: At most this many held-out squares per photograph (None: all of the grid).
    eval_per_image: int | None = None

    @classmethod
    def preset(cls, quick: bool = False, **overrides: Any) -> "Budget":
        """The full budget (or ``--quick``'s), with the ``overrides`` that are not None on top."""
        base = dict(recipes.COMPARE_QUICK if quick else recipes.COMPARE_FULL)
        base.update({k: (tuple(v) if k in ("seeds", "eval_seeds") else v) for k, v in overrides.items() if v is not None})
        return cls(**base)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class CompareSettings:
    """One ``pruneseek compare`` run: which strategies and seeds, under which budget, written where."""

    budget: Budget
    source: TargetSource = field(default_factory=TargetSource)
    model: str = "tsdsr"
    ratio: float = 0.5
    #: A search-space preset name or .toml path instead of the bundled preset for ``ratio`` (other layer counts).
    space: str | None = None
    strategies: tuple[str, ...] | None = None
    quick: bool = False
    out: Path = Path("results")
    perceptual: str = "auto"
    fresh: bool = False
    progress: bool = True
    #: The command line that reproduces the run (recorded in the JSON).
    command: str = ""


@dataclass(frozen=True)
class TuneSettings:
    """One ``pruneseek tune`` run: the strategy, the study, the objective and the per-trial budget."""

    strategy: str
    budget: Budget
    source: TargetSource = field(default_factory=TargetSource)
    model: str = "tsdsr"
    ratio: float = 0.5
    space: str | None = None
    trials: int = 20
    storage: str | None = None
    study: str | None = None
    metric: str = "psnr_teacher"
    seed: int = 0
    quick: bool = False
    out: Path = Path("results")
    save_preset: str | None = None
    force: bool = False
    progress: bool = True
    command: str = ""
