"""`pruneseek search`: decide a depth-pruning mask with any registered strategy and write it out (docs/design.md §4–6).

Parses the options into :class:`~pruneseek.experiment.settings.SearchSettings`, runs
:func:`~pruneseek.experiment.search.run_search_experiment` (data parallel with ``--nproc``), or with
``--seeds N`` :func:`~pruneseek.experiment.search.run_seeds_experiment` (one search per seed and their majority
decision, §4.8), and prints what it decided. ``--rule``, ``--mode`` and ``--ema-decay`` go only to strategies
that have those settings.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from pruneseek import recipes
from pruneseek.commands.args import (MODELS, add_calibration_arguments, add_target_arguments, command_parser,
                                     nonnegative_int,
                                     positive_int, ratio, target_source)

EXAMPLES = """examples:
  pruneseek search --model tsdsr --ratio 0.5                       # tsdsr-mini, built-in photos, tinysr
  pruneseek search --model tsdsr --ratio 0.5 --strategy tinyfusion --seed 1
  pruneseek search --model tsdsr --space tsdsr-24-r33 --steps 200
  pruneseek search --model tsdsr --ratio 0.5 --strategy sensitivity
  pruneseek search --model tsdsr --ratio 0.5 --strategy strategies/random-min.toml   # a preset file
  pruneseek search --model tsdsr --ratio 0.5 --strategy tinyfusion --checkpoint-every 50   # resumable
  pruneseek search --model tsdsr --ratio 0.5 --strategy tinyfusion --resume results/search/tsdsr-mini-r0.5-tinyfusion-s0
  pruneseek search --model tsdsr --ratio 0.5 --nproc 2 --batch 8    # data parallel: 2 processes × 4 crops
  pruneseek search --model tsdsr --ratio 0.5 --seeds 3              # seeds 0, 1, 2 and their majority mask
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
    "race": "successive halving of candidate masks by short recoveries on the validation split (pruneseek)",
}
STRATEGIES_TEXT = "strategies (--strategy NAME, or a preset .toml such as strategies/NAME.toml):\n" + "\n".join(
    f"  {name:<12} {text}" for name, text in STRATEGY_HELP.items()
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = command_parser(
        sub, "search", "learn a depth-pruning mask (writes a pruneseek.mask/v1 file)",
        "Decide which layers to keep (by default learned jointly with a LoRA weight update) and write "
        "the mask file, a summary and the loss curve.", STRATEGIES_TEXT + "\n\n" + EXAMPLES)
    p.add_argument("--model", default="tsdsr", choices=MODELS,
                   help="model family (default tsdsr); sd3, flux, dit and causal-lm load from --base DIR")
    shape = p.add_mutually_exclusive_group()
    shape.add_argument("--ratio", type=ratio, help="fraction of layers removed: 0.33, 0.5 or 0.67 (bundled presets)")
    shape.add_argument("--space", help="search-space preset name or .toml path (instead of --ratio)")
    p.add_argument("--strategy", default="tinysr",
                   help="a strategy name (listed below; default tinysr) or a strategy-preset .toml path")
    p.add_argument("--rule", choices=["marginal", "next-option"], help="tinysr candidate rule (default marginal)")
    p.add_argument("--steps", type=positive_int, default=recipes.SEARCH["steps"],
                   help=f"optimisation steps of the learned strategies (default {recipes.SEARCH['steps']})")
    p.add_argument("--ema-decay", type=float, default=None,
                   help="decay of the logit EMA the decision reads (default: 0.999, or 1 - 10/steps for runs "
                        "shorter than 10,000 steps so the EMA spans the last tenth of the run)")
    p.add_argument("--batch", type=positive_int, default=recipes.SEARCH["batch"],
                   help=f"crops per step (default {recipes.SEARCH['batch']})")
    add_calibration_arguments(p)
    p.add_argument("--mode", choices=["blend", "skip"], default=None,
                   help="execution mode of the learned strategies (default blend)")
    p.add_argument("--perceptual", choices=["auto", "gmsd", "lpips"], default="auto",
                   help="perceptual term: LPIPS if its weights are local, else GMSD (auto)")
    p.add_argument("--out", type=Path,
                   help="output folder (default results/search/<model>-r<ratio>-<strategy>-s<seed>, with -seeds<N> "
                        "added for --seeds N)")
    p.add_argument("--seeds", type=positive_int, default=1, metavar="N",
                   help="run the search for seeds SEED, SEED+1, ..., SEED+N-1, each in OUT/seed-<k>/, and write "
                        "their majority decision as OUT/mask.json: the mask of the search space that keeps the "
                        "layers the seeds kept most often (docs/design.md §4.8). Not with --resume or --nproc "
                        "(default 1: one search)")
    add_target_arguments(p)
    p.add_argument("--jobs", type=positive_int, default=1, metavar="J",
                   help="with --seeds: run the seeds' searches in J processes at once, one torch thread each "
                        "(each search is the same as alone; default 1)")
    p.add_argument("--checkpoint-every", type=nonnegative_int, default=0, metavar="N",
                   help="learned strategies: save the whole search state to OUT/checkpoint/ every N steps and at "
                        "the end, atomically (default 0: off)")
    p.add_argument("--resume", type=Path, metavar="DIR",
                   help="continue the interrupted run whose output folder (or checkpoint folder) is DIR, with the "
                        "same settings; it ends exactly as an uninterrupted run would")
    p.add_argument("--nproc", type=positive_int, default=1, metavar="N",
                   help="learned strategies: run data-parallel in N processes on this machine (gloo on CPU, nccl "
                        "on CUDA); --batch is the global batch, split over the processes")
    p.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], default="fp32",
                   help="precision of the frozen weights and the forward (autocast); gates, LoRA and the optimiser "
                        "state stay float32 (default fp32; bf16 halves the weights' memory)")
    p.add_argument("--ignore-memory-check", action="store_true",
                   help="run even when the peak-memory estimate exceeds the free memory of --device cuda")
    p.add_argument("--gradient-checkpointing", action="store_true",
                   help="recompute each block's activations in the backward pass: less memory, the same numbers")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def settings_from(args: argparse.Namespace):
    """The typed settings of this run."""
    from pruneseek.experiment.settings import SearchSettings

    return SearchSettings(
        source=target_source(args), model=args.model, ratio=args.ratio, space=args.space, strategy=args.strategy,
        rule=args.rule, mode=args.mode, ema_decay=args.ema_decay, steps=args.steps, batch=args.batch,
        crops=args.crops, crop_size=args.crop_size, seed=args.seed, perceptual=args.perceptual, data=args.data,
        out=args.out, checkpoint_every=args.checkpoint_every, resume=args.resume,
        gradient_checkpointing=args.gradient_checkpointing, dtype=args.dtype,
        ignore_memory_check=args.ignore_memory_check, progress=not args.quiet,
    )


def run(args: argparse.Namespace) -> int:
    from pruneseek.engine.launcher import launch, under_launcher, without_option

    settings = settings_from(args)
    if args.seeds > 1:
        from pruneseek.experiment.search import check_seeds

        check_seeds(settings, seeds_of(args), args.nproc)
    if args.nproc > 1 and not under_launcher():
        from pruneseek.experiment.search import check_parallel_and_resume
        from pruneseek.experiment.strategy import build_strategy

        strategy = build_strategy(settings.strategy, settings.steps, mini=not settings.source.is_real,
                                  rule=settings.rule, mode=settings.mode,
                                  ema_decay=settings.ema_decay)
        check_parallel_and_resume(settings, strategy, args.nproc)
        return launch(without_option(args.argv, "--nproc"), args.nproc)
    from pruneseek.engine.distributed import init_from_env, shutdown

    parallel = init_from_env(settings.source.device)
    try:
        if args.seeds > 1:
            return search_seeds(settings, parallel, seeds_of(args), args.jobs)
        if parallel.is_main:
            return search(settings, parallel)
        import contextlib

        with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):  # rank 0 speaks and writes
            return search(settings, parallel)
    finally:
        shutdown()


def search(settings, parallel) -> int:
    from pruneseek.experiment.search import run_search_experiment

    outcome = run_search_experiment(settings, parallel)
    if not parallel.is_main:
        return 0
    result, target, strategy, out = outcome.result, outcome.target, outcome.strategy, outcome.out
    print(f"kept {len(result.kept)} of {target.num_layers} layers: {result.kept}")
    if outcome.learned:
        per_block = result.block_confidence
        print(f"decision probability per block (EMA logits at the final scaling): "
              f"mean {sum(per_block) / len(per_block):.3f}, min {min(per_block):.3f} "
              f"(uniform: {1 / max(len(o) for o in result.probabilities):.3f})")
        print(f"{result.steps} steps in {result.seconds:.0f} s ({outcome.summary['seconds']:.0f} s in all)")
    else:
        cost = result.cost
        passes = (f"{cost.get('forward_passes', 0):,} forward and {cost.get('backward_passes', 0):,} backward "
                  "passes, counted in samples")
        print(f"{strategy.name} decided in {result.seconds:.1f} s ({outcome.summary['seconds']:.0f} s in all; {passes})")
    if outcome.notes:
        print(f"note: {outcome.notes}")
    overrides = strategy.recovery_overrides()
    if overrides:
        print(f"recovery settings this strategy asks for: {overrides}")
    print(f"wrote {outcome.mask_path}, {out / 'summary.json'} and {out / 'loss.png'}")
    if result.nonfinite_steps:
        print(f"note: {result.nonfinite_steps} steps had a non-finite loss and were skipped")
    return 0


def seeds_of(args: argparse.Namespace) -> list[int]:
    """The seeds of ``--seeds N``: ``--seed`` and the N - 1 after it."""
    return list(range(args.seed, args.seed + args.seeds))


def search_seeds(settings, parallel, seeds: list[int], jobs: int = 1) -> int:
    from pruneseek.experiment.search import run_seeds_experiment

    outcome = run_seeds_experiment(settings, parallel, seeds, jobs=jobs)
    n, layers = len(seeds), outcome.num_layers
    for seed, one in zip(seeds, outcome.outcomes):
        print(f"seed {seed}: kept {one.result.kept}")
    print(f"majority over {n} seeds: kept {list(outcome.mask.keep)}")
    print(f"all {n} seeds agree on {outcome.agree_all} of {layers} layers "
          f"(kept by all: {len(outcome.kept_by_all)}, dropped by all: {len(outcome.dropped_by_all)})")
    counts = [round(f * n) for f in outcome.keep_frequency]
    space = outcome.mask.space_object()
    groups = [counts[b.start:b.stop] for b in space.blocks] if space is not None and space.num_blocks > 1 else [counts]
    print(f"keep frequency per layer, in seeds of {n} (blocks split by |): "
          + " | ".join(" ".join(str(c) for c in group) for group in groups))
    if outcome.notes:
        print(f"note: {outcome.notes}")
    print(f"wrote {outcome.mask_path} and {outcome.out / 'summary.json'} (each seed's search in "
          f"{outcome.out / 'seed-<k>'})")
    return 0
