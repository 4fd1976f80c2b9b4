"""`pruneseek tune`: tune one strategy's settings with optuna against the recovery protocol's held-out metric.

Parses the options into :class:`~pruneseek.experiment.settings.TuneSettings` and runs
:func:`~pruneseek.experiment.tune.run_tuning` (the study, its trials and the preset are described there).
"""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from pruneseek import recipes
from pruneseek.experiment.compare import KEY_METRIC
from pruneseek.commands.args import (add_target_arguments, add_threads_argument, command_parser, nonnegative_int,
                                     positive_int, ratio, target_source, torch_threads)

EXAMPLES = """examples:
  pruneseek tune --strategy tinysr --model tsdsr --ratio 0.5 --trials 40     # SQLite study under results/
  pruneseek tune --strategy tinysr --model tsdsr --ratio 0.5 --trials 60     # the same study, 20 trials more
  pruneseek tune --strategy shortgpt --ratio 0.5 --trials 4 --quick          # a small smoke study
  pruneseek tune --strategy tinyfusion --ratio 0.5 --trials 40 --metric l1_teacher
  pruneseek tune --strategy tinysr --ratio 0.5 --trials 40 --save-preset tinysr-tuned   # strategies/tinysr-tuned.toml
  pruneseek tune --strategy tinysr --ratio 0.5 --trials 100 --study tinysr-r05 \\
                 --storage postgresql+psycopg2://user:pass@host/db

Several machines running the same command with the same --storage and --study share one study: each runs
trials until the study holds --trials complete ones (give each machine its own --out for the local files).
PostgreSQL needs its driver (pip install psycopg2-binary) and an existing database; SQLite suits one machine.
An interrupted study continues where it stopped when the same command is run again.
"""

#: The metrics of :data:`pruneseek.recovery.METRICS` with their directions, for --help (a test keeps them equal).
METRIC_HELP = ("psnr_teacher ↑, psnr ↑, ssim ↑, haarpsi ↑, gmsd ↓, l1_teacher ↓, lpips ↓ (LPIPS only with its weights "
               "local); scored on the validation split")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = command_parser(
        sub, "tune", "tune a strategy's settings with optuna against the held-out metric after recovery",
        "Search a strategy's settings (τ schedule, scaling, learning rates, LoRA rank, scoring budget, "
        "…) with optuna's TPE sampler; each trial searches a mask, retrains it under the fair recovery protocol "
        "and scores it on the held-out photographs. The study is kept in a database, so rerunning continues it.",
        EXAMPLES)
    p.add_argument("--strategy", required=True, help="the strategy to tune (a registered name, e.g. tinysr)")
    p.add_argument("--model", default="tsdsr", choices=["tsdsr"],
                   help="target model family (default tsdsr: the bundled tsdsr-mini)")
    p.add_argument("--ratio", type=ratio, default=0.5, help="fraction of layers removed: 0.33, 0.5 (default) or 0.67")
    p.add_argument("--space", help="search-space preset name or .toml path (instead of --ratio; for other layer counts)")
    p.add_argument("--trials", type=positive_int, default=20,
                   help="complete trials the study should hold (default 20); a rerun runs only the missing ones")
    p.add_argument("--storage", metavar="URL",
                   help="SQLAlchemy URL of the study database (default sqlite:///OUT/<study>.db)")
    p.add_argument("--study", metavar="NAME", help="study name (default tune-<strategy>-<model>-r<ratio>)")
    p.add_argument("--metric", default=KEY_METRIC,  # checked in run_tuning(): pruneseek.evaluation imports torch
                   help=f"held-out metric after recovery to optimise, in its direction (default {KEY_METRIC}): "
                   f"{METRIC_HELP}")
    p.add_argument("--seed", type=nonnegative_int, default=0,
                   help="seed of every trial's search and recovery, and of the sampler (default 0)")
    p.add_argument("--quick", action="store_true", help="compare's tiny --quick budget (for smoke tests)")
    p.add_argument("--search-steps", type=positive_int,
                   help=f"learned strategies' steps per trial (default {recipes.COMPARE_FULL['search_steps']})")
    p.add_argument("--recovery-steps", type=positive_int,
                   help=f"recovery steps per trial (default {recipes.COMPARE_FULL['recovery_steps']})")
    p.add_argument("--out", type=Path, default=Path("results"),
                   help="folder of the report, the mask files and the default SQLite study (default results)")
    p.add_argument("--save-preset", metavar="PATH_OR_NAME",
                   help="write the best trial's settings as a strategy preset: a .toml path, or a bare NAME for "
                   "strategies/NAME.toml")
    p.add_argument("--force", action="store_true",
                   help="let --save-preset overwrite a bundled strategy preset (strategies/<strategy>.toml)")
    add_target_arguments(p)
    add_threads_argument(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars (the one line per trial stays)")
    p.set_defaults(run=run)


def command_text(args: argparse.Namespace) -> str:
    """The command line of this run, in canonical form (recorded in the report)."""
    parts = ["pruneseek", "tune", "--strategy", args.strategy, "--model", args.model, "--ratio", f"{args.ratio:g}",
             "--trials", str(args.trials), "--metric", args.metric, "--seed", str(args.seed), "--out", str(args.out)]
    for flag, value in (("--space", args.space), ("--storage", args.storage and _mask(args.storage)), ("--study", args.study),
                        ("--search-steps", args.search_steps), ("--recovery-steps", args.recovery_steps),
                        ("--save-preset", args.save_preset), ("--threads", args.threads)):
        if value is not None:
            parts += [flag, str(value)]
    for flag, value in (("--weights", args.weights), ("--base", args.base), ("--lora", args.lora),
                        ("--embeddings", args.embeddings)):
        if value is not None:
            parts += [flag, str(value)]
    if args.device != "cpu":
        parts += ["--device", args.device]
    parts += [flag for flag, on in (("--quick", args.quick), ("--force", args.force), ("--quiet", args.quiet)) if on]
    return " ".join(shlex.quote(p) for p in parts)


def _mask(url: str) -> str:
    from pruneseek.tuning import mask_url

    return mask_url(url)


def settings_from(args: argparse.Namespace):
    from pruneseek.experiment.settings import Budget, TuneSettings

    budget = Budget.preset(args.quick, search_steps=args.search_steps, recovery_steps=args.recovery_steps,
                           seeds=[args.seed])
    return TuneSettings(
        strategy=args.strategy, budget=budget, source=target_source(args), model=args.model, ratio=args.ratio,
        space=args.space,
        trials=args.trials, storage=args.storage, study=args.study, metric=args.metric, seed=args.seed,
        quick=args.quick, out=args.out, save_preset=args.save_preset, force=args.force, progress=not args.quiet,
        command=command_text(args),
    )


def run(args: argparse.Namespace) -> int:
    import optuna

    from pruneseek.experiment.tune import run_tuning

    settings = settings_from(args)
    verbosity = optuna.logging.get_verbosity()
    # optuna's own INFO/WARNING lines (study created, trial finished or failed with a traceback) are replaced by
    # this command's one line per trial
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with torch_threads(args.threads):
            run_tuning(settings, report=lambda line: print(line, flush=True))
    finally:
        optuna.logging.set_verbosity(verbosity)
    return 0
