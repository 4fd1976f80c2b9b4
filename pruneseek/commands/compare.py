"""`pruneseek compare`: every strategy × seed searched, recovered and evaluated under one protocol (docs/design.md §6).

Parses the options into :class:`~pruneseek.experiment.settings.CompareSettings` and runs
:func:`~pruneseek.experiment.compare.run_comparison` (the protocol is described there and in
:mod:`pruneseek.recovery`). Rows are written after every finished row; a rerun with the same budget settings
continues from the finished rows, and one with other settings is refused unless ``--fresh``.
"""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from pruneseek import recipes
from pruneseek.commands.args import (add_target_arguments, add_threads_argument, comma_list, command_parser,
                                     positive_float, positive_int, ratio, seed_list, target_source, torch_threads)

HELP = "search, recover and evaluate every strategy under one budget (CSV, JSON, plots)"
DESCRIPTION = (
    "Run each strategy × seed on the same calibration data, retrain every mask under the same "
    "recovery protocol and evaluate before and after on the held-out photographs. Finished rows are "
    "kept: rerunning continues where it stopped."
)
EXAMPLES = """examples:
  pruneseek compare --model tsdsr --ratio 0.5                      # all strategies × seeds 0,1,2
  pruneseek compare --ratio 0.5 --strategies tinysr,tinyfusion,shortgpt --seeds 0
  pruneseek compare --ratio 0.33 --quick                           # a small budget, one seed (smoke run)
  pruneseek compare --ratio 0.5 --fresh                            # discard earlier rows of other settings
  pruneseek compare --ratio 0.5 --base SD3_DIR --lora TSDSR_LORA_DIR --embeddings EMB_DIR --device cuda
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = command_parser(sub, "compare", HELP, DESCRIPTION, EXAMPLES)
    p.add_argument("--model", default="tsdsr", choices=["tsdsr"],
                   help="target model family (default tsdsr: the bundled tsdsr-mini)")
    p.add_argument("--ratio", type=ratio, default=0.5, help="fraction of layers removed: 0.33, 0.5 (default) or 0.67")
    p.add_argument("--space", help="search-space preset name or .toml path (instead of --ratio; for other layer counts)")
    p.add_argument("--strategies", type=comma_list, help="comma-separated strategy names (default: all registered)")
    p.add_argument("--seeds", type=seed_list,
                   help=f"comma-separated seeds (default {','.join(map(str, recipes.COMPARE_FULL['seeds']))}; --quick: 0)")
    p.add_argument("--quick", action="store_true",
                   help="a tiny budget for smoke tests (few crops and steps, 3 held-out crops)")
    p.add_argument("--out", type=Path, default=Path("results"), help="output folder (default results)")
    p.add_argument("--search-steps", type=positive_int,
                   help=f"learned strategies' steps (default {recipes.COMPARE_FULL['search_steps']})")
    p.add_argument("--recovery-steps", type=positive_int,
                   help=f"recovery steps per mask (default {recipes.COMPARE_FULL['recovery_steps']})")
    p.add_argument("--batch", type=positive_int, help=f"crops per step, search and recovery (default {recipes.COMPARE_FULL['batch']})")
    p.add_argument("--lr", type=positive_float, help=f"recovery AdamW learning rate (default {recipes.COMPARE_FULL['lr']:g})")
    p.add_argument("--crops", type=positive_int, help=f"calibration crops (default {recipes.COMPARE_FULL['crops']})")
    p.add_argument("--crop-size", type=positive_int, help=f"calibration HR crop side (default {recipes.COMPARE_FULL['crop_size']})")
    p.add_argument("--eval-crop", type=positive_int, help=f"side of the held-out grid crops (default {recipes.COMPARE_FULL['eval_crop']})")
    p.add_argument("--perceptual", choices=["auto", "gmsd", "lpips"], default="auto",
                   help="perceptual term of search and recovery loss (default auto: LPIPS if local, else GMSD)")
    add_target_arguments(p)
    add_threads_argument(p)
    p.add_argument("--fresh", action="store_true", help="discard earlier rows instead of continuing from them")
    p.add_argument("--quiet", action="store_true", help="no progress bars (the one line per row stays)")
    p.set_defaults(run=run)


def command_text(args: argparse.Namespace) -> str:
    """The command line that reproduces this run (every option the user set, in canonical form)."""
    parts = ["pruneseek", "compare", "--model", args.model, "--ratio", f"{args.ratio:g}"]
    if args.space:
        parts += ["--space", args.space]
    if args.strategies:
        parts += ["--strategies", ",".join(args.strategies)]
    if args.seeds:
        parts += ["--seeds", ",".join(map(str, args.seeds))]
    if args.quick:
        parts.append("--quick")
    parts += ["--out", str(args.out)]
    for key in ("search_steps", "recovery_steps", "batch", "lr", "crops", "crop_size", "eval_crop", "weights", "base",
                "lora", "embeddings"):
        value = getattr(args, key)
        if value is not None:
            parts += ["--" + key.replace("_", "-"), f"{value:g}" if isinstance(value, float) else str(value)]
    if args.perceptual != "auto":
        parts += ["--perceptual", args.perceptual]
    if args.device != "cpu":
        parts += ["--device", args.device]
    if args.threads:
        parts += ["--threads", str(args.threads)]
    parts += [flag for flag, on in (("--fresh", args.fresh), ("--quiet", args.quiet)) if on]
    return " ".join(shlex.quote(p) for p in parts)


def settings_from(args: argparse.Namespace):
    """The typed settings of this run: --quick or the full budget, explicit flags on top."""
    from pruneseek.experiment.settings import Budget, CompareSettings

    budget = Budget.preset(args.quick, search_steps=args.search_steps, recovery_steps=args.recovery_steps,
                           batch=args.batch, crops=args.crops, crop_size=args.crop_size, eval_crop=args.eval_crop,
                           lr=args.lr, seeds=args.seeds)
    return CompareSettings(
        budget=budget, source=target_source(args), model=args.model, ratio=args.ratio, space=args.space,
        strategies=tuple(args.strategies) if args.strategies else None, quick=args.quick, out=args.out,
        perceptual=args.perceptual, fresh=args.fresh, progress=not args.quiet, command=command_text(args),
    )


def run(args: argparse.Namespace) -> int:
    from pruneseek.experiment.compare import run_comparison

    settings = settings_from(args)
    with torch_threads(args.threads):
        run_comparison(settings, report=lambda line: print(line, flush=True))
    return 0
