"""A search as a library call: load the target, build the problem, run the strategy, write the mask file.

:func:`run_search_experiment` is ``pruneseek search`` without the printing: from :class:`SearchSettings` it
loads the target (:class:`~pruneseek.targets.load.TargetSource`), resolves the search space, builds the
calibration data and the :class:`~pruneseek.strategies.base.SearchProblem`, runs the strategy (with exact
resume and data parallelism for the learned strategies) and writes ``mask.json``, ``summary.json`` and
``loss.png``. It returns a :class:`SearchOutcome`; the command prints it. :func:`run_seeds_experiment` runs it
once per seed (``--seeds N``) and writes the majority decision over the seeds (docs/design.md §4.8).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pruneseek.errors import PruneseekError, first_line
from pruneseek.experiment.settings import SearchSettings
from pruneseek.fingerprint import jsonable


def resolve_space(model: str, ratio: float | None, space: str | None, num_layers: int, preset=None):
    """The search-space preset: ``space`` (a name or .toml path) or the bundled one for ``model`` and ``ratio``
    (``preset``: one already chosen, only checked against the model's layer count)."""
    from pruneseek.spaces import find_preset, load_preset

    if preset is None:
        preset = load_preset(space) if space else find_preset(model, 0.5 if ratio is None else ratio)
    if preset.space.num_layers != num_layers:
        raise PruneseekError(
            f"search space {preset.name} is for {preset.space.num_layers} layers, but the model has {num_layers}; "
            "choose a preset for this model"
        )
    return preset


def check_parallel_and_resume(settings: SearchSettings, strategy, processes: int) -> None:
    """Refuse --nproc / --checkpoint-every / --resume where they cannot apply, before any work is done."""
    from pruneseek.strategies.base import LearnedMaskStrategy

    learned = isinstance(strategy, LearnedMaskStrategy)
    for flag, used in (("--nproc", processes > 1), ("--checkpoint-every", settings.checkpoint_every > 0),
                       ("--resume", settings.resume is not None)):
        if used and not learned:
            raise PruneseekError(
                f"{flag} applies to the learned strategies (tinysr, tinyfusion), whose search trains for many steps; "
                f"{strategy.name} decides by a rule in one pass: run it without {flag}"
            )
    if processes > 1 and settings.batch % processes:
        raise PruneseekError(
            f"--batch {settings.batch} (the global batch) does not split over {processes} processes; "
            f"use a multiple of {processes}, e.g. --batch {processes * max(1, settings.batch // processes)}"
        )


def checkpoint_folder(resume: Path) -> Path:
    """The folder holding ``checkpoint.pt`` for ``--resume DIR`` (the run's output folder or the folder itself)."""
    from pruneseek.engine.checkpoint import FILE

    return resume if (resume / FILE).is_file() else resume / "checkpoint"


def search_fingerprint(settings: SearchSettings, target, preset, strategy, spec, perceptual_note: str,
                       processes: int) -> dict:
    """What a search checkpoint must agree on to be resumed (settings that change the run's numbers)."""
    return jsonable({
        "model": target.name, "weights": settings.source.weights_fingerprint(), "space": preset.name,
        "strategy": strategy.name, "settings": strategy.settings, "steps": settings.steps, "batch": settings.batch,
        "seed": settings.seed,
        "data": {"images": [Path(p).name for p in spec.images], "crops": spec.count, "crop_size": spec.hr_size},
        "perceptual": perceptual_note, "processes": processes, "device": str(settings.source.device),
    })


def result_mask_file(result, strategy_name: str, target, preset, seed: int, metrics: dict | None = None,
                     data_note: str | None = None):
    """The ``pruneseek.mask/v1`` file of a search result, and a note when the mask had to be recorded in the
    full space C(N, M) because it lies outside the preset's block space (rule-based strategies may choose so)."""
    from pruneseek.maskfile import MaskFile
    from pruneseek.spaces import BlockSpace

    transfer = {"k": preset.transfer_k or 1, "topology": preset.topology} if result.transfer is not None else None
    space, notes = preset.space, None
    if transfer is None and not preset.space.contains(result.mask):
        space = BlockSpace.full(target.num_layers, sum(result.mask))
        notes = (f"{strategy_name} chose a mask outside the block space of {preset.name} ({preset.space.describe()}); "
                 f"it is recorded in the full space C({target.num_layers}, {sum(result.mask)})")
    if data_note:  # a family model: say what the calibration inputs were (docs/design.md §11.2)
        notes = f"calibration inputs: {data_note}" + (f"; {notes}" if notes else "")
    mask = MaskFile.from_mask(
        result.mask, model_name=target.name, strategy_name=strategy_name, settings=result.settings,
        space=space, preset=preset.name if space is preset.space and preset.path is not None else None,
        transfer=transfer,
        probabilities=result.probabilities if space is preset.space and result.probabilities else None,
        marginals=result.marginals, seed=seed, steps=result.steps, confidence=result.confidence,
        metrics=metrics or {}, notes=notes,
    )
    return mask, notes


@dataclass
class SearchOutcome:
    """What a finished search produced (the command prints it; ``result`` is None on a non-main rank)."""

    target: Any
    preset: Any
    strategy: Any
    perceptual_note: str
    out: Path
    result: Any = None
    summary: dict = field(default_factory=dict)
    mask_path: Path | None = None
    notes: str | None = None

    @property
    def learned(self) -> bool:
        return self.result is not None and self.result.steps > 0 and bool(self.result.probabilities)


def output_folder(settings: SearchSettings, target, preset, strategy) -> tuple[Path, Path]:
    """``(output folder, checkpoint folder)``: ``--out``, the resumed run's folder, or the default name."""
    if settings.resume is not None:
        folder = checkpoint_folder(settings.resume)
        return settings.out or (folder.parent if folder.name == "checkpoint" else folder), folder
    ratio_text = f"{float(preset.space.ratio):.2g}"
    default = Path("results") / "search" / f"{target.name}-r{ratio_text}-{strategy.name}-s{settings.seed}"
    out = settings.out or default
    return out, out / "checkpoint"


def build_search(settings: SearchSettings, parallel, report: Callable[[str], None] = print, place=None):
    """Target, space, strategy, calibration data and problem of a search (checked before any training).

    ``place(settings, target, preset, strategy) -> (output folder, checkpoint folder)`` replaces :func:`output_folder`
    (``--seeds`` puts each seed's search in a subfolder).
    """
    import torch

    from pruneseek.experiment.strategy import build_strategy
    from pruneseek.io import check_writable

    torch.manual_seed(settings.seed)
    target = settings.source.load()
    target.stack.checkpointing = settings.gradient_checkpointing
    if settings.source.is_family:
        from pruneseek.spaces.presets import family_preset

        preset = family_preset(settings.model, settings.ratio, settings.space, target.sizes)
        resolve_space(settings.model, None, None, target.num_layers, preset=preset)
    else:
        preset = resolve_space(settings.model, settings.ratio, settings.space, target.num_layers)
    strategy = build_strategy(settings.strategy, settings.steps, mini=not settings.source.is_real, rule=settings.rule,
                              mode=settings.mode,
                              ema_decay=settings.ema_decay)
    check_parallel_and_resume(settings, strategy, parallel.world)
    out, folder = (place or output_folder)(settings, target, preset, strategy)
    check_writable(out)
    report(f"target: {target.name} ({target.num_layers} layers); space: {preset.name} ({preset.space.describe()})")
    if settings.memory_check:
        check_memory(settings, target, strategy, report)
    if settings.source.is_family:
        outcome, problem, spec = _family_problem(settings, target, preset, strategy, out, report)
    else:
        outcome, problem, spec = _sr_problem(settings, target, preset, strategy, out, report, parallel)
    problem.parallel = parallel if parallel.active else None
    problem.progress = settings.progress and parallel.is_main
    set_precision(problem, target, settings.dtype)
    if settings.dtype != "fp32":
        report(f"precision: {settings.dtype} weights and autocast; gates, LoRA and optimiser state float32")
    if settings.checkpoint_every or settings.resume is not None:
        from pruneseek.engine import Checkpointing

        fingerprint = search_fingerprint(settings, target, preset, strategy, spec, outcome.perceptual_note,
                                         parallel.world)
        problem.checkpointing = Checkpointing(folder, every=settings.checkpoint_every,
                                              resume=settings.resume is not None, fingerprint=fingerprint)
        every = f" every {settings.checkpoint_every} steps" if settings.checkpoint_every else " at the end"
        report(f"resuming from {folder / 'checkpoint.pt'}" if settings.resume is not None
               else f"checkpoints go to {folder / 'checkpoint.pt'}{every}")
    if parallel.active:
        report(f"data parallel: {parallel.world} processes, global batch {settings.batch} "
               f"({settings.batch // parallel.world} crops each)")
    return outcome, problem, spec


def search_estimate(settings: SearchSettings, target, strategy):
    """The peak-memory estimate of this search (:mod:`pruneseek.memory`), or None for a strategy that trains no
    weights (its peak is the model and one forward)."""
    from pruneseek.memory import family_estimate, sd3_estimate
    from pruneseek.training import DTYPES

    rank = strategy.settings.get("lora_rank")
    if not rank:
        return None
    kwargs = dict(dtype=DTYPES[settings.dtype], batch=settings.batch, checkpointing=settings.gradient_checkpointing,
                  lora_targets=strategy.settings.get("lora_targets") or list(target.lora_targets) or None,
                  lora_rank=int(rank))
    if settings.source.is_family:
        return family_estimate(target, settings.crop_size, **kwargs)
    from pruneseek.targets.mini import SHUFFLE

    side = max(1, settings.crop_size // (8 if settings.source.is_real else SHUFFLE))  # the SD3 VAE, the mini's unshuffle
    return sd3_estimate(target.transformer, side, int(target.prompt_embeds.shape[1]), **kwargs)


def check_memory(settings: SearchSettings, target, strategy, report) -> None:
    """Before any calibration or training: print the estimate; on CUDA refuse a run the free memory cannot hold
    (unless ``ignore_memory_check``). A model whose forward cannot run on the meta device gets no estimate."""
    from pruneseek.memory import GB, cuda_free_bytes

    try:
        estimate = search_estimate(settings, target, strategy)
    except (RuntimeError, NotImplementedError, TypeError) as exc:
        report(f"no memory estimate for this model: its forward does not run on the meta device "
               f"({first_line(exc, 120)})")
        return
    if estimate is None:
        return
    report(estimate.describe())
    free = cuda_free_bytes(settings.source.device)
    if free is not None and estimate.total > free and not settings.ignore_memory_check:
        raise PruneseekError(
            f"this search needs about {estimate.total / GB:.1f} GB but {settings.source.device} has {free / GB:.1f} GB "
            "free; add --gradient-checkpointing or --dtype bf16, lower --batch or --crop-size, or pass "
            "--ignore-memory-check to try anyway")


def set_precision(problem, target, dtype: str) -> None:
    """Cast the target's (frozen) weights to ``dtype`` and run the problem's loss under autocast; the calibration
    data was computed at full precision before. Float16 adds loss scaling to the learned search."""
    import torch

    from pruneseek.training import DTYPES, autocast_loss, quiet_cast

    if dtype == "fp32":
        return
    quiet_cast(target.transformer, DTYPES[dtype])
    problem.loss_fn = autocast_loss(problem.loss_fn, DTYPES[dtype], torch.device(target.device).type)
    problem.loss_scaling = dtype == "fp16"


def _sr_problem(settings: SearchSettings, target, preset, strategy, out: Path, report, parallel):
    """TSD-SR's problem: calibration latents of the train photographs, L1 to the teacher + perceptual (TinySR A.3)."""
    from pruneseek.experiment.strategy import candidate_scorer
    from pruneseek.latents import calibration_latents, check_finite, select_images, target_pairs
    from pruneseek.losses import perceptual_loss
    from pruneseek.sr_problem import sr_search_problem

    perceptual, note = perceptual_loss(settings.perceptual)
    report(f"strategy: {strategy.name}; loss: L1 to the teacher's latent + {note}")
    spec = target_pairs(target, select_images("train", settings.data), settings.crops, settings.crop_size,
                        settings.seed)
    data = calibration_latents(target, spec, progress=settings.progress and parallel.is_main)
    for key in ("z_lr", "z_tea"):
        check_finite(key, data[key])
    problem = sr_search_problem(target, data, preset.space, settings.steps, settings.batch, settings.seed, perceptual,
                                topology=preset.topology, k=preset.transfer_k or 1)
    problem.candidate_score = candidate_scorer(target, data, perceptual)
    return SearchOutcome(target, preset, strategy, note, out), problem, spec


def _family_problem(settings: SearchSettings, target, preset, strategy, out: Path, report):
    """A family model's problem: match the full model's outputs on calibration inputs (:mod:`pruneseek.matching`);
    a quarter of the inputs is held out to score ``race``'s candidates."""
    from pruneseek import recipes
    from pruneseek.matching import CalibrationSpec, calibration, matching_problem, matching_scorer

    calib = calibration(target, settings.crops, settings.seed, settings.crop_size, settings.data)
    train, validation = calib.split()
    report(f"strategy: {strategy.name}; loss: {target.family.objective}")
    problem = matching_problem(target, train, preset.space, settings.steps, min(settings.batch, len(train)),
                               settings.seed, topology=preset.topology, k=preset.transfer_k or 1)
    problem.candidate_score = matching_scorer(target, train, validation, settings.batch, recipes.RECOVERY["lr"])
    spec = CalibrationSpec(images=[settings.data] if settings.data else [], count=settings.crops,
                           hr_size=settings.crop_size, note=calib.note)
    return SearchOutcome(target, preset, strategy, target.family.objective, out), problem, spec


def search_summary(outcome: SearchOutcome, settings: SearchSettings, spec, seconds: float) -> dict:
    """The ``summary.json`` of a finished search."""
    result, target = outcome.result, outcome.target
    summary = {
        "mask_file": str(outcome.mask_path), "model": target.name, "num_layers": target.num_layers,
        "kept": result.kept, "dropped": [i for i, v in enumerate(result.mask) if not v],
        "confidence": result.confidence, "block_confidence": result.block_confidence, "transfer": result.transfer,
        "strategy": outcome.strategy.name, "space": outcome.preset.name,
        "loss": {"description": f"L1(z_stu, z_tea) + {outcome.perceptual_note}", "history": result.loss_history},
        "nonfinite_steps": result.nonfinite_steps, "steps": result.steps, "seed": settings.seed,
        "data": {"images": [Path(p).name for p in spec.images], "crops": spec.count, "crop_size": spec.hr_size},
        "seconds": seconds, "search_seconds": result.seconds, "cost": result.cost,
        "recovery_overrides": outcome.strategy.recovery_overrides(),
    }
    if result.scores is not None:
        summary["scores"] = result.scores
    if result.trajectory:
        summary["trajectory"] = result.trajectory
    if result.logits:
        summary["gates"] = {"ema_logits": result.logits,
                            "transfer_q": result.transfer["q"] if result.transfer is not None else None}
    if outcome.notes:
        summary["notes"] = outcome.notes
    return summary


def run_search_experiment(settings: SearchSettings, parallel, report: Callable[[str], None] = print,
                          place=None) -> SearchOutcome:
    """Run the search of ``settings`` and write its outputs (rank 0 only); see the module docstring.
    ``place`` as for :func:`build_search`."""
    from pruneseek.experiment.plots import plot_loss
    from pruneseek.io import atomic_write_json, rescued

    started = time.perf_counter()
    outcome, problem, spec = build_search(settings, parallel, report, place)
    result = outcome.strategy.search(problem, seed=settings.seed)
    if not parallel.is_main:
        return outcome
    outcome.result = result
    metrics = {}
    if outcome.learned:
        metrics["final_loss"] = float(sum(result.loss_history[-20:]) / max(1, len(result.loss_history[-20:])))
    mask, outcome.notes = result_mask_file(result, outcome.strategy.name, outcome.target, outcome.preset,
                                           settings.seed, metrics, getattr(spec, "note", None))

    def write(folder: Path) -> None:
        outcome.mask_path = mask.save(folder / "mask.json")
        outcome.summary = search_summary(outcome, settings, spec, time.perf_counter() - started)
        atomic_write_json(folder / "summary.json", outcome.summary)
        plot_loss(result.loss_history, folder / "loss.png",
                  f"{outcome.strategy.name} on {outcome.target.name}, {outcome.preset.name}, seed {settings.seed}")

    rescued(outcome.out, write, "search results")
    return outcome


@dataclass
class SeedsOutcome:
    """What ``pruneseek search --seeds N`` produced: each seed's search and the majority decision over them."""

    out: Path
    seeds: list[int]
    outcomes: list[SearchOutcome]
    mask: Any = None
    keep_frequency: tuple[float, ...] = ()
    kept_by_all: list[int] = field(default_factory=list)
    dropped_by_all: list[int] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    mask_path: Path | None = None
    notes: str | None = None

    @property
    def num_layers(self) -> int:
        return len(self.keep_frequency)

    @property
    def agree_all(self) -> int:
        """Layers on which every seed agrees (all kept or all dropped)."""
        return len(self.kept_by_all) + len(self.dropped_by_all)


def check_seeds(settings: SearchSettings, seeds: list[int], processes: int) -> None:
    """Refuse what ``--seeds`` cannot combine with (before any work): an empty list, --resume and --nproc."""
    if not seeds:
        raise PruneseekError("--seeds needs at least one seed")
    if len(seeds) > 1 and settings.resume is not None:
        raise PruneseekError(
            "--resume continues one interrupted search and cannot be combined with --seeds; resume a seed's own "
            "folder (OUT/seed-K) with --seed K and without --seeds, then run --seeds again for the majority")
    if len(seeds) > 1 and processes > 1:
        raise PruneseekError(
            "--seeds runs its searches one after another in one process and cannot be combined with --nproc; "
            "drop --nproc, or run each seed on its own with --nproc and --seed K")


def majority_space(preset, outcomes: list[SearchOutcome]):
    """``(space for the majority, transfer record or None, note or None)``: the preset's transfer space when the
    searches used transfers, else its block space when every seed's mask lies in it, else the full space."""
    from pruneseek.spaces import BlockSpace, TransferSpace

    masks = [o.result.mask for o in outcomes]
    kept = {sum(m) for m in masks}
    if len(kept) != 1:
        raise PruneseekError(f"the seeds' masks keep different numbers of layers ({sorted(kept)}); "
                             "a majority needs one kept count")
    if any(o.result.transfer is not None for o in outcomes):
        transfer = {"k": preset.transfer_k or 1, "topology": preset.topology}
        return TransferSpace(preset.space, transfer["k"], transfer["topology"]), transfer, None
    if all(preset.space.contains(m) for m in masks):
        return preset.space, None, None
    num_layers, num_kept = len(masks[0]), kept.pop()
    note = (f"some seeds chose masks outside the block space of {preset.name} ({preset.space.describe()}); "
            f"the majority is taken in the full space C({num_layers}, {num_kept})")
    return BlockSpace.full(num_layers, num_kept), None, note


def run_seeds_experiment(settings: SearchSettings, parallel, seeds: list[int],
                         report: Callable[[str], None] = print, jobs: int = 1) -> SeedsOutcome:
    """``pruneseek search --seeds N``: one ordinary search per seed, each in ``<out>/seed-<k>/`` (its own
    mask.json, summary.json and loss.png), then the majority decision
    (:func:`~pruneseek.experiment.majority.majority_mask`) as ``<out>/mask.json`` and ``<out>/summary.json``.
    ``settings.seed`` is ignored (the seeds are ``seeds``); ``settings.out`` is the folder of the whole run
    (default: the single-seed name of the first seed with ``-seeds<N>`` added). ``jobs`` > 1 runs the seeds' searches
    in that many processes at once (:func:`run_seeds_in_processes`); each search is the same as alone."""
    import dataclasses

    from pruneseek.experiment.majority import agreement, majority_mask
    from pruneseek.io import check_writable, rescued
    from pruneseek.maskfile import MaskFile

    check_seeds(settings, seeds, parallel.world)
    if settings.out is not None:
        check_writable(settings.out)
    started = time.perf_counter()
    root: list[Path] = []

    def place(seed_settings, target, preset, strategy):
        if not root:
            first = dataclasses.replace(seed_settings, seed=seeds[0], out=None)
            default, _ = output_folder(first, target, preset, strategy)
            root.append(settings.out or default.with_name(f"{default.name}-seeds{len(seeds)}"))
        out = root[0] / f"seed-{seed_settings.seed}"
        return out, out / "checkpoint"

    if jobs > 1:
        outcomes = run_seeds_in_processes(settings, seeds, jobs, report)
        root.append(outcomes[0].out.parent)
    else:
        outcomes = []
        for i, seed in enumerate(seeds):
            report(f"search {i + 1} of {len(seeds)}: seed {seed}")
            one = dataclasses.replace(settings, seed=seed, out=None, memory_check=i == 0)
            outcomes.append(run_search_experiment(one, parallel, report, place))
    first = outcomes[0]
    outcome = SeedsOutcome(out=root[0], seeds=list(seeds), outcomes=outcomes)
    masks = [list(o.result.mask) for o in outcomes]
    space, transfer, outcome.notes = majority_space(first.preset, outcomes)
    majority, outcome.keep_frequency = majority_mask(masks, space)
    outcome.kept_by_all, outcome.dropped_by_all = agreement(masks)
    block_space = getattr(space, "space", space)
    in_preset = block_space is first.preset.space
    notes = f"majority decision over seeds {list(seeds)} (docs/design.md §4.8)"
    if first.notes and first.notes.startswith("calibration inputs:"):  # a family model: what the seeds calibrated on
        notes += "; " + first.notes.split("; ")[0]
    mask = MaskFile.from_mask(
        majority, model_name=first.target.name, strategy_name=first.strategy.name, settings=first.result.settings,
        space=block_space, preset=first.preset.name if in_preset and first.preset.path is not None else None,
        transfer=transfer,
        marginals=outcome.keep_frequency, seed=seeds[0], steps=first.result.steps,
        metrics={"seeds": list(seeds), "per_seed_masks": masks, "agree_all": outcome.agree_all,
                 "kept_by_all": outcome.kept_by_all, "dropped_by_all": outcome.dropped_by_all},
        notes=f"{notes}; {outcome.notes}" if outcome.notes else notes,
    )
    outcome.mask = mask
    rescued(outcome.out, lambda folder: _write_majority(outcome, seeds, masks, majority, folder, started),
            "majority decision")
    return outcome


@dataclass(frozen=True)
class TargetInfo:
    """What the majority needs of a target searched in another process (the model itself stays there)."""

    name: str
    num_layers: int


def _seed_worker(settings: SearchSettings, seed: int, root: str) -> tuple[SearchOutcome, list[str]]:
    """One seed's search in a worker process, its report lines collected; the target is sent back as its name."""
    import dataclasses

    import torch

    from pruneseek.engine import DataParallel

    torch.set_num_threads(1)
    lines: list[str] = []
    out = Path(root) / f"seed-{seed}"
    outcome = run_search_experiment(dataclasses.replace(settings, seed=seed, out=None, progress=False),
                                    DataParallel(), lines.append, lambda *a: (out, out / "checkpoint"))
    outcome.target = TargetInfo(outcome.target.name, outcome.target.num_layers)
    return outcome, lines


def run_seeds_in_processes(settings: SearchSettings, seeds: list[int], jobs: int,
                           report: Callable[[str], None]) -> list[SearchOutcome]:
    """The seeds' searches in ``jobs`` fresh processes (one torch thread each), reported in seed order."""
    import dataclasses
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from pruneseek.experiment.strategy import build_strategy
    from pruneseek.spaces import load_preset

    if settings.out is not None:
        root = settings.out
    else:  # the single-seed default name of the first seed, with -seeds<N>, without loading the model here
        strategy = build_strategy(settings.strategy, settings.steps, mini=not settings.source.is_real,
                                  rule=settings.rule, mode=settings.mode, ema_decay=settings.ema_decay)
        model = settings.model if settings.source.is_family else ("tsdsr" if settings.source.is_real else "tsdsr-mini")
        ratio = load_preset(settings.space).space.ratio if settings.space else (settings.ratio or 0.5)
        root = (Path("results") / "search"
                / f"{model}-r{float(ratio):.2g}-{strategy.name}-s{seeds[0]}-seeds{len(seeds)}")
    report(f"{len(seeds)} searches in {jobs} processes: seeds {', '.join(map(str, seeds))}")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_seed_worker, dataclasses.replace(settings, memory_check=i == 0), seed, str(root))
                   for i, seed in enumerate(seeds)]  # the memory estimate is the same for every seed: the first's
        outcomes = []
        for i, future in enumerate(futures):
            outcome, lines = future.result()
            if i == 0:  # what every seed's search says before it starts (target, loss, memory), once
                for line in lines:
                    report(line)
            outcomes.append(outcome)
    return outcomes


def _write_majority(outcome: SeedsOutcome, seeds: list[int], masks: list, majority, folder: Path,
                    started: float) -> None:
    """The majority's ``mask.json`` and ``summary.json`` in ``folder``."""
    from pruneseek.io import atomic_write_json

    outcome.mask_path = outcome.mask.save(folder / "mask.json")
    first, outcomes = outcome.outcomes[0], outcome.outcomes
    kept = [i for i, v in enumerate(majority) if v]
    outcome.summary = {
        "mask_file": str(outcome.mask_path), "model": first.target.name, "num_layers": first.target.num_layers,
        "strategy": first.strategy.name, "space": first.preset.name, "decision": "majority over seeds",
        "seeds": list(seeds), "kept": kept, "dropped": [i for i, v in enumerate(majority) if not v],
        "keep_frequency": list(outcome.keep_frequency), "agree_all": outcome.agree_all,
        "kept_by_all": outcome.kept_by_all, "dropped_by_all": outcome.dropped_by_all,
        "per_seed": [{"seed": s, "folder": str(o.out), "mask_file": str(o.mask_path), "kept": o.result.kept,
                      "mask": m} for s, o, m in zip(seeds, outcomes, masks)],
        "per_seed_masks": masks, "seconds": time.perf_counter() - started,
    }
    if outcome.notes:
        outcome.summary["notes"] = outcome.notes
    atomic_write_json(folder / "summary.json", outcome.summary)
