"""`pruneseek search`: decide a depth-pruning mask with any registered strategy and write it out (SPEC.md §4–6).

With no weights given it runs on the bundled tsdsr-mini teacher with the built-in photographs; with
``--base``, ``--lora`` and ``--embeddings`` it runs on the real TSD-SR from local files. ``--strategy``
takes a registered name or a strategy-preset ``.toml`` path; the command's own learned-search settings
(the miniature's LoRA size, ``--mode``, ``--ema-decay``, ``--rule``, the progress bar) go only to
strategies that have those settings.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import time
from pathlib import Path

from pruneseek.commands.args import nonnegative_int, positive_int, ratio

EXAMPLES = """examples:
  pruneseek search --model tsdsr --ratio 0.5                       # tsdsr-mini, built-in photos, tinysr
  pruneseek search --model tsdsr --ratio 0.5 --strategy tinyfusion --seed 1
  pruneseek search --model tsdsr --space tsdsr-24-r33 --steps 200
  pruneseek search --model tsdsr --ratio 0.5 --strategy sensitivity
  pruneseek search --model tsdsr --ratio 0.5 --strategy strategies/random-min.toml   # a preset file
  pruneseek search --model tsdsr --ratio 0.5 --strategy tinyfusion --checkpoint-every 50   # resumable
  pruneseek search --model tsdsr --ratio 0.5 --strategy tinyfusion --resume results/search/tsdsr-mini-r0.5-tinyfusion-s0
  pruneseek search --model tsdsr --ratio 0.5 --nproc 2 --batch 8    # data parallel: 2 processes × 4 crops
  torchrun --nproc-per-node 8 -m pruneseek search --model tsdsr --ratio 0.5 --device cuda --batch 32 ...
  pruneseek search --model tsdsr --ratio 0.5 --base SD3_DIR --lora TSDSR_LORA_DIR \\
                   --embeddings EMB_DIR --data HR_IMAGES --device cuda
"""
#: One line per registered strategy for --help (tests check it lists exactly the registry).
STRATEGY_HELP = {
    "tinysr": "learned block gates + inter-block transfers (TinySR; the default)",
    "tinyfusion": "learned block-local masks with LoRA (TinyFusion)",
    "random-min": "lowest calibration loss of random masks from the space (perturbation)",
    "shortgpt": "remove the lowest Block Influence 1 - cos(x_i, x_i+1) (ShortGPT; similarity)",
    "flux-lite": "remove the lowest input/output MSE (FLUX.1-Lite; similarity)",
    "sensitivity": "remove the smallest drop-one loss rise (metric)",
    "snapfusion": "greedy: least loss rise per latency saved, repeated (SnapFusion; metric)",
    "bk-sdm": "fixed rule: first of each encoder group, last of each decoder group (experience)",
    "optuna-tpe": "optuna TPE over per-block options, objective the calibration loss (black box)",
    "annealing": "a rule's mask, removed by annealing over T recovery steps (PocketSR)",
}
STRATEGIES_TEXT = "strategies (--strategy NAME, or a preset .toml such as strategies/NAME.toml):\n" + "\n".join(
    f"  {name:<12} {text}" for name, text in STRATEGY_HELP.items()
)
#: Search defaults for the bundled miniature (its width is 64, so LoRA rank 8 as in TinyFusion).
MINI_SETTINGS = {"lora_rank": 8, "lora_alpha": 16.0, "weight_lr": 1e-4, "gate_lr": 1e-3}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help="learn a depth-pruning mask (writes a pruneseek.mask/v1 file)",
        description="Decide which layers to keep (by default learned jointly with a LoRA weight update) and write "
        "the mask file, a summary and the loss curve.",
        epilog=STRATEGIES_TEXT + "\n\n" + EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", default="tsdsr", choices=["tsdsr"], help="target model family (default tsdsr)")
    shape = p.add_mutually_exclusive_group()
    shape.add_argument("--ratio", type=ratio, help="fraction of layers removed: 0.33, 0.5 or 0.67 (bundled presets)")
    shape.add_argument("--space", help="search-space preset name or .toml path (instead of --ratio)")
    p.add_argument("--strategy", default="tinysr",
                   help="a strategy name (listed below; default tinysr) or a strategy-preset .toml path")
    p.add_argument("--rule", choices=["marginal", "next-option"], help="tinysr candidate rule (default marginal)")
    p.add_argument("--steps", type=positive_int, default=600,
                   help="optimisation steps of the learned strategies (default 600)")
    p.add_argument("--ema-decay", type=float, default=None,
                   help="decay of the logit EMA the decision reads (default: 0.999, or 1 - 10/steps for runs "
                        "shorter than 10,000 steps so the EMA spans the last tenth of the run)")
    p.add_argument("--batch", type=positive_int, default=4, help="crops per step (default 4)")
    p.add_argument("--crops", type=positive_int, default=192, help="calibration crops (default 192)")
    p.add_argument("--crop-size", type=positive_int, default=64, help="HR crop side in pixels (default 64)")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--mode", choices=["blend", "skip"], default=None,
                   help="execution mode of the learned strategies (default blend)")
    p.add_argument("--perceptual", choices=["auto", "gmsd", "lpips"], default="auto",
                   help="perceptual term: LPIPS if its weights are local, else GMSD (auto)")
    p.add_argument("--out", type=Path, help="output folder (default results/search/<model>-r<ratio>-<strategy>-s<seed>)")
    p.add_argument("--data", type=Path, help="folder of HR images (default: the built-in photographs, train split)")
    p.add_argument("--weights", type=Path, help="tsdsr-mini weights (default: the bundled ones)")
    p.add_argument("--base", type=Path, help="real TSD-SR: SD3-medium folder in diffusers layout")
    p.add_argument("--lora", type=Path, help="real TSD-SR: LoRA folder (transformer.safetensors, vae.safetensors)")
    p.add_argument("--embeddings", type=Path, help="real TSD-SR: folder with prompt_embeds.pt and pool_embeds.pt")
    p.add_argument("--checkpoint-every", type=nonnegative_int, default=0, metavar="N",
                   help="learned strategies: save the whole search state to OUT/checkpoint/ every N steps and at "
                        "the end, atomically (default 0: off)")
    p.add_argument("--resume", type=Path, metavar="DIR",
                   help="continue the interrupted run whose output folder (or checkpoint folder) is DIR, with the "
                        "same settings; it ends exactly as an uninterrupted run would")
    p.add_argument("--nproc", type=positive_int, default=1, metavar="N",
                   help="learned strategies: run data-parallel in N processes on this machine (gloo on CPU, nccl "
                        "on CUDA); --batch is the global batch, split over the processes")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def load_target(args: argparse.Namespace):
    from pruneseek.errors import PruneseekError

    real = [args.base, args.lora, args.embeddings]
    if any(real):
        if not all(real):
            raise PruneseekError("the real TSD-SR needs all of --base, --lora and --embeddings (local folders)")
        from pruneseek.targets.tsdsr import load_tsdsr

        return load_tsdsr(args.base, args.lora, args.embeddings, device=args.device), False
    from pruneseek.targets.mini import load_mini

    return load_mini(args.weights, device=args.device), True


def resolve_space(args: argparse.Namespace, num_layers: int):
    from pruneseek.errors import PruneseekError
    from pruneseek.spaces import find_preset, load_preset

    if args.space:
        preset = load_preset(args.space)
    else:
        preset = find_preset(args.model, 0.5 if args.ratio is None else args.ratio)
    if preset.space.num_layers != num_layers:
        raise PruneseekError(
            f"search space {preset.name} is for {preset.space.num_layers} layers, but the model has {num_layers}; "
            "choose a preset for this model"
        )
    return preset


def strategy_settings(args: argparse.Namespace, is_mini: bool) -> tuple[str, dict]:
    """The strategy name and its settings: command defaults < preset file < explicit flags.

    The command's defaults (the miniature's LoRA size, the EMA decay for the run length, the progress
    bar) apply only to settings the strategy has; an explicit flag for a setting it lacks is an error.
    """
    from pruneseek.errors import PruneseekError
    from pruneseek.strategies import strategy_class
    from pruneseek.strategies.presets import is_preset_path, load_strategy_preset

    if is_preset_path(args.strategy):
        name, from_file = load_strategy_preset(args.strategy)
    else:
        name, from_file = args.strategy, {}
    defaults = strategy_class(name).defaults
    settings = {k: v for k, v in MINI_SETTINGS.items() if k in defaults} if is_mini else {}
    if "ema_decay" in defaults:
        settings["ema_decay"] = min(0.999, max(0.0, 1 - 10 / args.steps))
    settings.update(from_file)
    for flag, key, value in (("--rule", "rule", args.rule), ("--mode", "mode", args.mode),
                             ("--ema-decay", "ema_decay", args.ema_decay)):
        if value is None:
            continue
        if key not in defaults:
            having = ", ".join(n for n in STRATEGY_HELP if key in strategy_class(n).defaults)
            raise PruneseekError(f"{flag} applies to strategies with a '{key}' setting ({having}), not to {name}")
        settings[key] = value
    if "ema_decay" in settings and not 0 <= settings["ema_decay"] < 1:
        raise PruneseekError(f"--ema-decay must lie in [0, 1), got {settings['ema_decay']}")
    if "progress" in defaults and (args.quiet or "progress" not in from_file):
        settings["progress"] = not args.quiet
    if args.quiet and "select_settings" in defaults:  # annealing: quiet its selecting strategy too
        select = settings.get("select", defaults.get("select"))
        if select in STRATEGY_HELP and "progress" in strategy_class(select).defaults:
            settings["select_settings"] = {**settings.get("select_settings", {}), "progress": False}
    return name, settings


def search_fingerprint(args, target, preset, strategy, spec, perceptual_note: str, processes: int) -> dict:
    """What a search checkpoint must agree on to be resumed (settings that change the run's numbers)."""
    from pruneseek.io import file_sha256
    from pruneseek.targets.mini import WEIGHTS

    if args.base is not None:
        weights = {"base": str(args.base.resolve()), "lora": str(args.lora.resolve()),
                   "embeddings": str(args.embeddings.resolve())}
    else:
        weights = file_sha256(args.weights or WEIGHTS)
    settings = {k: v for k, v in strategy.settings.items() if k != "progress"}
    return json.loads(json.dumps({
        "model": target.name, "weights": weights, "space": preset.name, "strategy": strategy.name,
        "settings": settings, "steps": args.steps, "batch": args.batch, "seed": args.seed,
        "data": {"images": [Path(p).name for p in spec.images], "crops": spec.count, "crop_size": spec.hr_size},
        "perceptual": perceptual_note, "processes": processes, "device": str(args.device),
    }, default=repr))


def result_mask_file(result, strategy_name: str, target, preset, seed: int, metrics: dict | None = None):
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
    mask = MaskFile.from_mask(
        result.mask, model_name=target.name, strategy_name=strategy_name, settings=result.settings,
        space=space, preset=preset.name if space is preset.space else None, transfer=transfer,
        probabilities=result.probabilities if space is preset.space and result.probabilities else None,
        marginals=result.marginals, seed=seed, steps=result.steps, confidence=result.confidence,
        metrics=metrics or {}, notes=notes,
    )
    return mask, notes


def plot_loss(history: list[float], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from pruneseek.io import atomic_write_bytes

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=110)
    x = np.arange(len(history))
    ax.plot(x, history, lw=0.6, alpha=0.5, label="loss")
    if len(history) >= 10:
        w = max(5, len(history) // 20)
        smooth = np.convolve(history, np.ones(w) / w, mode="valid")
        ax.plot(x[w - 1 :], smooth, lw=1.6, label=f"moving mean ({w})")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def check_parallel_and_resume(args: argparse.Namespace, strategy, processes: int) -> None:
    """Refuse --nproc / --checkpoint-every / --resume where they cannot apply, before any work is done."""
    from pruneseek.errors import PruneseekError
    from pruneseek.strategies.base import LearnedMaskStrategy

    learned = isinstance(strategy, LearnedMaskStrategy)
    for flag, used in (("--nproc", processes > 1), ("--checkpoint-every", args.checkpoint_every > 0),
                       ("--resume", args.resume is not None)):
        if used and not learned:
            raise PruneseekError(
                f"{flag} applies to the learned strategies (tinysr, tinyfusion), whose search trains for many steps; "
                f"{strategy.name} decides by a rule in one pass: run it without {flag}"
            )
    if processes > 1 and args.batch % processes:
        raise PruneseekError(
            f"--batch {args.batch} (the global batch) does not split over {processes} processes; "
            f"use a multiple of {processes}, e.g. --batch {processes * max(1, args.batch // processes)}"
        )


def checkpoint_folder(resume: Path) -> Path:
    """The folder holding ``checkpoint.pt`` for ``--resume DIR`` (the run's output folder or the folder itself)."""
    from pruneseek.engine.checkpoint import FILE

    return resume if (resume / FILE).is_file() else resume / "checkpoint"


def run(args: argparse.Namespace) -> int:
    from pruneseek.commands.launcher import launch, under_launcher, without_option

    if args.nproc > 1 and not under_launcher():
        name, settings = strategy_settings(args, is_mini=not any([args.base, args.lora, args.embeddings]))
        from pruneseek.strategies import get_strategy

        check_parallel_and_resume(args, get_strategy(name, **settings), args.nproc)
        return launch(without_option(args.argv, "--nproc"), args.nproc)
    from pruneseek.engine.distributed import init_from_env, shutdown

    parallel = init_from_env(args.device)
    try:
        if parallel.is_main:
            return search(args, parallel)
        import contextlib

        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):  # rank 0 speaks and writes
            return search(args, parallel)
    finally:
        shutdown()


def search(args: argparse.Namespace, parallel) -> int:
    import torch

    from pruneseek.io import atomic_write_json
    from pruneseek.latents import PairSpec, as_tuple, calibration_latents, check_finite, select_images
    from pruneseek.losses import perceptual_loss
    from pruneseek.sr_problem import sr_search_problem
    from pruneseek.strategies import get_strategy

    started = time.perf_counter()
    torch.manual_seed(args.seed)
    target, is_mini = load_target(args)
    preset = resolve_space(args, target.num_layers)
    name, settings = strategy_settings(args, is_mini)
    if not parallel.is_main:
        settings.update({k: False for k in ("progress",) if k in settings})
    strategy = get_strategy(name, **settings)
    check_parallel_and_resume(args, strategy, parallel.world)
    ratio_text = f"{float(preset.space.ratio):.2g}"
    default_out = Path("results") / "search" / f"{target.name}-r{ratio_text}-{strategy.name}-s{args.seed}"
    if args.resume is not None:
        folder = checkpoint_folder(args.resume)
        out = args.out or (folder.parent if folder.name == "checkpoint" else folder)
    else:
        out = args.out or default_out
        folder = out / "checkpoint"

    perceptual, perceptual_note = perceptual_loss(args.perceptual)
    print(f"target: {target.name} ({target.num_layers} layers); space: {preset.name} ({preset.space.describe()})")
    print(f"strategy: {strategy.name}; loss: L1 to the teacher's latent + {perceptual_note}")
    images = select_images("train", args.data)
    spec = PairSpec(images=as_tuple(images), count=args.crops, hr_size=args.crop_size, seed=args.seed)
    data = calibration_latents(target, spec, progress=not args.quiet and parallel.is_main)
    for key in ("z_lr", "z_tea"):
        check_finite(key, data[key])
    problem = sr_search_problem(
        target, data, preset.space, args.steps, args.batch, args.seed, perceptual,
        topology=preset.topology, k=preset.transfer_k or 1,
    )
    problem.parallel = parallel if parallel.active else None
    if args.checkpoint_every or args.resume is not None:
        from pruneseek.engine import Checkpointing

        fingerprint = search_fingerprint(args, target, preset, strategy, spec, perceptual_note, parallel.world)
        problem.checkpointing = Checkpointing(folder, every=args.checkpoint_every, resume=args.resume is not None,
                                              fingerprint=fingerprint)
        action = "resuming from" if args.resume is not None else "checkpoints go to"
        every = f" every {args.checkpoint_every} steps" if args.checkpoint_every else " at the end"
        print(f"{action} {folder / 'checkpoint.pt'}" + ("" if args.resume is not None else every))
    if parallel.active:
        print(f"data parallel: {parallel.world} processes, global batch {args.batch} "
              f"({args.batch // parallel.world} crops each)")
    result = strategy.search(problem, seed=args.seed)
    if not parallel.is_main:
        return 0
    learned = result.steps > 0 and bool(result.probabilities)
    metrics = {}
    if learned:
        metrics["final_loss"] = float(sum(result.loss_history[-20:]) / max(1, len(result.loss_history[-20:])))
    mask, notes = result_mask_file(result, strategy.name, target, preset, args.seed, metrics)
    mask_path = mask.save(out / "mask.json")
    summary = {
        "mask_file": str(mask_path),
        "model": target.name,
        "num_layers": target.num_layers,
        "kept": result.kept,
        "dropped": [i for i, v in enumerate(result.mask) if not v],
        "confidence": result.confidence,
        "block_confidence": result.block_confidence,
        "transfer": result.transfer,
        "strategy": strategy.name,
        "space": preset.name,
        "loss": {"description": f"L1(z_stu, z_tea) + {perceptual_note}", "history": result.loss_history},
        "nonfinite_steps": result.nonfinite_steps,
        "steps": result.steps,
        "seed": args.seed,
        "data": {"images": [Path(p).name for p in spec.images], "crops": spec.count, "crop_size": spec.hr_size},
        "seconds": time.perf_counter() - started,
        "search_seconds": result.seconds,
        "cost": result.cost,
        "recovery_overrides": strategy.recovery_overrides(),
    }
    if result.scores is not None:
        summary["scores"] = result.scores
    if result.trajectory:
        summary["trajectory"] = result.trajectory
    if result.logits:
        summary["gates"] = {"ema_logits": result.logits,
                            "transfer_q": result.transfer["q"] if result.transfer is not None else None}
    if notes:
        summary["notes"] = notes
    atomic_write_json(out / "summary.json", summary)
    plot_loss(result.loss_history, out / "loss.png", f"{strategy.name} on {target.name}, {preset.name}, seed {args.seed}")
    print(f"kept {len(result.kept)} of {target.num_layers} layers: {result.kept}")
    cost = result.cost
    passes = (f"{cost.get('forward_passes', 0):,} forward and {cost.get('backward_passes', 0):,} backward passes, "
              "counted in samples")
    if learned:
        per_block = result.block_confidence
        print(f"decision probability per block (EMA logits at the final scaling): "
              f"mean {sum(per_block) / len(per_block):.3f}, min {min(per_block):.3f} "
              f"(uniform: {1 / max(len(o) for o in result.probabilities):.3f})")
        print(f"{result.steps} steps in {result.seconds:.0f} s ({summary['seconds']:.0f} s in all)")
    else:
        print(f"{strategy.name} decided in {result.seconds:.1f} s ({summary['seconds']:.0f} s in all; {passes})")
    if notes:
        print(f"note: {notes}")
    overrides = strategy.recovery_overrides()
    if overrides:
        print(f"recovery settings this strategy asks for: {overrides}")
    print(f"wrote {mask_path}, {out / 'summary.json'} and {out / 'loss.png'}")
    if result.nonfinite_steps:
        print(f"note: {result.nonfinite_steps} steps had a non-finite loss and were skipped")
    return 0
