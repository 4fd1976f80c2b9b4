"""`pruneseek tune`: tune one strategy's settings with optuna against the recovery protocol's held-out metric.

Each trial is one row of ``pruneseek compare`` (:func:`pruneseek.commands.compare.run_row`: the same calibration
data, search, fair recovery and held-out evaluation, one seed) with the strategy's settings that the trial
suggests (:data:`pruneseek.tuning.TUNABLE`) on top of compare's; its value is ``--metric`` after recovery. The
study is stored in a database (SQLite under ``--out`` by default, any SQLAlchemy URL with ``--storage``), so a
rerun continues it — ``--trials`` is the number of COMPLETE trials the study should hold — and several
machines running the same command against one server share it. Trials of a killed process are failed and
retried (:mod:`pruneseek.tuning`). The best trial's full settings can be written as a strategy preset.
"""
from __future__ import annotations

import argparse
import math
import re
import shlex
import time
import warnings
from pathlib import Path
from typing import Any

from pruneseek.commands.args import nonnegative_int, positive_int, ratio
from pruneseek.errors import PruneseekError

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
METRIC_HELP = "psnr ↑, ssim ↑, haarpsi ↑, gmsd ↓, l1_teacher ↓, lpips ↓ (LPIPS only with its weights local)"

#: Settings ``pruneseek search`` derives from the run length (the EMA spans the last tenth of --steps): a saved
#: preset leaves them out unless they were tuned, so the preset suits any --steps.
RUN_LENGTH_SETTINGS = ("ema_decay",)


def add_parser(sub: argparse._SubParsersAction) -> None:
    from pruneseek.commands.compare import FULL, KEY_METRIC

    p = sub.add_parser(
        "tune",
        help="tune a strategy's settings with optuna against the held-out metric after recovery",
        description="Search a strategy's settings (τ schedule, scaling, learning rates, LoRA rank, scoring budget, "
        "…) with optuna's TPE sampler; each trial searches a mask, retrains it under the fair recovery protocol "
        "and scores it on the held-out photographs. The study is kept in a database, so rerunning continues it.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--strategy", required=True, help="the strategy to tune (a registered name, e.g. tinysr)")
    p.add_argument("--model", default="tsdsr", choices=["tsdsr"],
                   help="target model family (default tsdsr: the bundled tsdsr-mini)")
    p.add_argument("--ratio", type=ratio, default=0.5, help="fraction of layers removed: 0.33, 0.5 (default) or 0.67")
    p.add_argument("--trials", type=positive_int, default=20,
                   help="complete trials the study should hold (default 20); a rerun runs only the missing ones")
    p.add_argument("--storage", metavar="URL",
                   help="SQLAlchemy URL of the study database (default sqlite:///OUT/<study>.db)")
    p.add_argument("--study", metavar="NAME", help="study name (default tune-<strategy>-<model>-r<ratio>)")
    p.add_argument("--metric", default=KEY_METRIC,  # checked in tune(): pruneseek.recovery imports torch
                   help=f"held-out metric after recovery to optimise, in its direction (default {KEY_METRIC}): "
                   f"{METRIC_HELP}")
    p.add_argument("--seed", type=nonnegative_int, default=0,
                   help="seed of every trial's search and recovery, and of the sampler (default 0)")
    p.add_argument("--quick", action="store_true", help="compare's tiny --quick budget (for smoke tests)")
    p.add_argument("--search-steps", type=positive_int,
                   help=f"learned strategies' steps per trial (default {FULL['search_steps']})")
    p.add_argument("--recovery-steps", type=positive_int,
                   help=f"recovery steps per trial (default {FULL['recovery_steps']})")
    p.add_argument("--out", type=Path, default=Path("results"),
                   help="folder of the report, the mask files and the default SQLite study (default results)")
    p.add_argument("--save-preset", metavar="PATH_OR_NAME",
                   help="write the best trial's settings as a strategy preset: a .toml path, or a bare NAME for "
                   "strategies/NAME.toml")
    p.add_argument("--force", action="store_true",
                   help="let --save-preset overwrite a bundled strategy preset (strategies/<strategy>.toml)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=positive_int,
                   help="torch CPU threads (default: torch's choice; 1 avoids OpenMP stalls on a shared machine)")
    p.add_argument("--quiet", action="store_true", help="no progress bars (the one line per trial stays)")
    p.set_defaults(run=run)


# ----- helpers ----------------------------------------------------------------------------------------------------

def preset_target(text: str, force: bool) -> Path:
    """Where ``--save-preset`` writes: a ``.toml`` path as given, a bare name as ``strategies/<name>.toml``; a
    bundled strategy's own preset only with ``--force``."""
    from pruneseek import tuning
    from pruneseek.strategies import available
    from pruneseek.strategies import presets

    if text.endswith(".toml") or "/" in text or "\\" in text:
        path = Path(text)
        if path.suffix != ".toml":
            raise tuning.TuneError(f"--save-preset {text!r}: a preset path ends in .toml; give e.g. {text}.toml")
    elif re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", text):
        path = presets.strategy_presets_dir() / f"{text}.toml"
    else:
        raise tuning.TuneError(f"--save-preset {text!r}: a preset name uses letters, digits, '.', '_' and '-' "
                               "(or give a path ending in .toml)")
    if path.is_dir():
        raise tuning.TuneError(f"--save-preset {text!r}: {path} is a folder; give a file name ending in .toml")
    bundled = presets.strategy_presets_dir().resolve()
    if path.resolve().parent == bundled and path.stem in available() and not force:
        raise tuning.TuneError(
            f"--save-preset would overwrite {path}, the bundled preset of the {path.stem} strategy (its class "
            f"defaults); save under another name such as --save-preset {path.stem}-tuned, or pass --force"
        )
    return path


def full_settings(strategy: str, params: dict[str, Any], search_steps: int, quick: bool) -> dict[str, Any]:
    """Every setting of ``strategy`` in the trial with ``params``: compare's settings for tsdsr-mini, the trial's
    on top, the rest the class defaults; ``progress`` (a display switch) back at its default."""
    from pruneseek.commands.compare import strategy_settings_for
    from pruneseek.strategies import get_strategy, strategy_class
    from pruneseek.tuning import params_to_settings

    name, base = strategy_settings_for(strategy, search_steps, quick)
    settings = get_strategy(name, **{**base, **params_to_settings(name, params)}).settings
    defaults = strategy_class(name).defaults
    if "progress" in defaults:
        settings["progress"] = defaults["progress"]
    if isinstance(settings.get("select_settings"), dict):
        settings["select_settings"] = {k: v for k, v in settings["select_settings"].items() if k != "progress"}
    return settings


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return repr(value) if isinstance(value, str) else str(value)


def params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_value(v)}" for k, v in params.items()) or "(no parameters)"


def safe_stem(name: str) -> str:
    """A file name stem for a study name (characters other than letters, digits, '.', '_', '-' become '_')."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "study"


def command_text(args: argparse.Namespace) -> str:
    """The command line of this run, in canonical form (recorded in the report)."""
    parts = ["pruneseek", "tune", "--strategy", args.strategy, "--model", args.model, "--ratio", f"{args.ratio:g}",
             "--trials", str(args.trials), "--metric", args.metric, "--seed", str(args.seed), "--out", str(args.out)]
    for flag, value in (("--storage", args.storage and _mask(args.storage)), ("--study", args.study),
                        ("--search-steps", args.search_steps), ("--recovery-steps", args.recovery_steps),
                        ("--save-preset", args.save_preset), ("--threads", args.threads)):
        if value is not None:
            parts += [flag, str(value)]
    if args.device != "cpu":
        parts += ["--device", args.device]
    parts += [flag for flag, on in (("--quick", args.quick), ("--force", args.force), ("--quiet", args.quiet)) if on]
    return " ".join(shlex.quote(p) for p in parts)


def _mask(url: str) -> str:
    from pruneseek.tuning import mask_url

    return mask_url(url)


# ----- the command ------------------------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> int:
    import optuna
    import torch

    threads = torch.get_num_threads()
    verbosity = optuna.logging.get_verbosity()
    if args.threads:
        torch.set_num_threads(args.threads)
    # optuna's own INFO/WARNING lines (study created, trial finished or failed with a traceback) are replaced by
    # this command's one line per trial
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        return tune(args)
    finally:
        optuna.logging.set_verbosity(verbosity)
        torch.set_num_threads(threads)


def tune(args: argparse.Namespace) -> int:
    import optuna
    from optuna.trial import TrialState

    from pruneseek.commands.compare import (ANNEAL_FRACTION, budget, comparison_settings, row_context, run_row,
                                            settings_hash)
    from pruneseek.io import atomic_write_json
    from pruneseek.losses import lpips_status, perceptual_loss
    from pruneseek.recovery import METRICS
    from pruneseek.spaces import find_preset
    from pruneseek.strategies import presets
    from pruneseek.targets.mini import WEIGHTS, load_mini
    from pruneseek.tuning import (TuneError, best_trial, count_complete, default_storage, describe_space, mask_url,
                                  open_study, params_to_settings, study_name, study_report, suggest, tunable)

    started = time.perf_counter()
    strategy = args.strategy
    tunable(strategy)
    target_path = preset_target(args.save_preset, args.force) if args.save_preset else None
    if args.metric not in METRICS:
        raise TuneError(f"unknown --metric {args.metric!r}; choose one of {', '.join(METRICS)}")
    if args.metric == "lpips" and not lpips_status()[0]:
        raise TuneError(f"--metric lpips needs LPIPS, which cannot run here ({lpips_status()[1]}); choose another "
                        "--metric")
    preset = find_preset(args.model, args.ratio)
    b = budget(argparse.Namespace(quick=args.quick, search_steps=args.search_steps,
                                  recovery_steps=args.recovery_steps, batch=None, crops=None, crop_size=None,
                                  eval_crop=None, lr=None, seeds=[args.seed]))
    teacher = load_mini(WEIGHTS, device=args.device)
    if preset.space.num_layers != teacher.num_layers:
        raise TuneError(f"search space {preset.name} is for {preset.space.num_layers} layers, but the model has "
                        f"{teacher.num_layers}")
    perceptual, perceptual_note = perceptual_loss("auto")
    limit = int(ANNEAL_FRACTION * b["recovery_steps"])
    direction = "maximize" if METRICS[args.metric][0] == "up" else "minimize"
    ratio_text = f"{float(preset.space.ratio):.2g}"
    fixed = {
        "strategy": strategy, "model": teacher.name, "ratio": ratio_text, "metric": args.metric,
        "direction": direction, "seed": args.seed, "quick": bool(args.quick), "ranges": describe_space(strategy, limit),
        "protocol": comparison_settings(teacher, WEIGHTS, preset, b, args.quick, perceptual_note),
    }
    name = args.study or study_name(strategy, teacher.name, preset.space.ratio)
    if args.storage:
        url = args.storage
    else:
        args.out.mkdir(parents=True, exist_ok=True)
        url = default_storage(args.out, strategy, teacher.name, preset.space.ratio)
    study = open_study(url, name, direction, fixed, args.seed)
    report_path = args.out / f"{safe_stem(name)}.json"
    command = command_text(args)

    def best_settings() -> dict[str, Any] | None:
        best = best_trial(study)
        return None if best is None else full_settings(strategy, best.params, b["search_steps"], args.quick)

    def write_report() -> None:
        doc = study_report(study, url, strategy, args.metric, direction, args.trials, best_settings())
        doc["command"] = command
        atomic_write_json(report_path, doc)

    done = count_complete(study)
    todo = max(0, args.trials - done)
    stored = study.get_trials(deepcopy=False)
    states = {s: sum(1 for t in stored if t.state == s) for s in (TrialState.FAIL, TrialState.RUNNING,
                                                                      TrialState.WAITING)}
    print(f"target: {teacher.name}; space: {preset.name} ({preset.space.describe()}); strategy: {strategy}; "
          f"objective: {args.metric} after recovery ({direction})")
    print(f"study: {name} in {mask_url(url)}: {len(stored)} trials stored ({done} complete, "
          f"{states[TrialState.FAIL]} failed, {states[TrialState.RUNNING]} running, {states[TrialState.WAITING]} "
          f"queued); {args.trials} complete wanted: {todo} to run")
    print(f"budget: search {b['search_steps']} steps (learned), recovery {b['recovery_steps']} steps, batch "
          f"{b['batch']}, {b['crops']} crops of {b['crop_size']} px; held-out {b['eval_crop']} px crops × "
          f"{len(b['eval_seeds'])} degradations; seed {args.seed}")
    print("ranges: " + "; ".join(f"{k} {v}" for k, v in fixed["ranges"].items()))
    ran: list[int] = []
    if todo:
        ctx = row_context(teacher, preset, b, perceptual, settings_hash(fixed), args.quick, progress=not args.quiet)

        def objective(trial) -> float:
            ran.append(trial.number)
            trial_started = time.perf_counter()
            settings = suggest(trial, strategy, limit)
            trial_ctx = {**ctx, "masks_dir": args.out / safe_stem(name) / f"trial-{trial.number}"}
            try:
                row = run_row(strategy, args.seed, trial_ctx, settings)
                value = row.get(f"{args.metric}_after")
                if value is None or not math.isfinite(value):
                    raise TuneError(f"{args.metric} after recovery is {value!r} for trial {trial.number}")
            except PruneseekError as exc:
                trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
                trial.set_user_attr("seconds", time.perf_counter() - trial_started)
                raise
            for when in ("before", "after"):
                trial.set_user_attr(f"metrics_{when}", {m: row[f"{m}_{when}"] for m in METRICS
                                                        if f"{m}_{when}" in row})
            for key in ("kept", "search_seconds", "recovery_seconds", "mask_file"):
                trial.set_user_attr(key, row[key])
            trial.set_user_attr("seconds", time.perf_counter() - trial_started)
            return float(value)

        def on_trial(study_, trial) -> None:
            complete = count_complete(study_)
            seconds = trial.user_attrs.get("seconds", 0.0)
            retry = (f" (retry of trial {trial.system_attrs['failed_trial']})"
                     if "failed_trial" in trial.system_attrs else "")
            if trial.state == TrialState.COMPLETE:
                best = study_.best_trial
                print(f"[{complete}/{args.trials}] trial {trial.number}{retry}: {args.metric} {trial.value:.4f} "
                      f"(best {best.value:.4f}, trial {best.number}); {params_text(trial.params)}; {seconds:.1f} s",
                      flush=True)
            else:
                print(f"[{complete}/{args.trials}] trial {trial.number}{retry} {trial.state.name}: "
                      f"{trial.user_attrs.get('error', 'no value')}; {params_text(trial.params)}", flush=True)
            write_report()

        callbacks = [on_trial, optuna.study.MaxTrialsCallback(args.trials, states=(TrialState.COMPLETE,))]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.optimize(objective, n_trials=todo, catch=(PruneseekError,), callbacks=callbacks,
                               gc_after_trial=False)
        except KeyboardInterrupt:
            requeued = _requeue_interrupted(study, ran)
            write_report()
            print(f"interrupted during trial {ran[-1] if ran else '?'}"
                  f"{' (queued to run again first)' if requeued else ''}; {count_complete(study)} complete trials "
                  f"are kept in {mask_url(url)}; rerun the same command to continue", flush=True)
            raise
    write_report()
    complete = count_complete(study)
    failed_now = [t for t in study.get_trials(deepcopy=False) if t.number in ran and t.state == TrialState.FAIL]
    if ran and len(failed_now) == len(ran):
        first = failed_now[0].user_attrs.get("error", "no value")
        raise TuneError(f"all {len(ran)} trials of this run failed (first: trial {failed_now[0].number}: {first}); "
                        f"fix the cause and rerun; the report is {report_path}")
    if complete < args.trials:
        print(f"note: the study holds {complete} of {args.trials} complete trials ({len(failed_now)} of this run "
              "failed; see the report); rerun the same command to run the rest")
    best = best_trial(study)
    if best is not None:
        print(f"best: trial {best.number}, {args.metric} {best.value:.4f} ({direction}); {params_text(best.params)}")
    written = [report_path]
    if target_path is not None:
        if best is None:
            raise TuneError(f"--save-preset: study {name} has no complete trial yet; run trials first")
        settings = best_settings()
        derived = [k for k in RUN_LENGTH_SETTINGS if k in settings and k not in params_to_settings(strategy,
                                                                                                  best.params)]
        settings = {k: v for k, v in settings.items() if k not in derived}
        comment = [
            f"Strategy preset: {strategy}, tuned by pruneseek tune (best of study {name}: trial {best.number}, "
            f"{args.metric} after recovery {best.value:.6g}, {direction}).",
            f"Tuned on {teacher.name}, space {preset.name}, seed {args.seed}: search {b['search_steps']} steps, "
            f"recovery {b['recovery_steps']} steps, batch {b['batch']}, {b['crops']} crops of {b['crop_size']} px"
            f"{' (--quick)' if args.quick else ''}.",
            f"Tuned settings: {params_text(best.params)}; the others are pruneseek compare's for {teacher.name}.",
            f"Use it with: pruneseek search --strategy {target_path}",
        ]
        if derived:
            comment.insert(3, f"Left to the command: {', '.join(derived)} (pruneseek search sets it from --steps).")
        presets.save_strategy_preset(
            target_path, strategy, settings, comment_lines=comment,
            description=f"tuned: study {name}, trial {best.number}, {args.metric} after recovery {best.value:.6g}",
        )
        written.append(target_path)
    print(f"{len(ran)} trials run in {time.perf_counter() - started:.0f} s; wrote {', '.join(map(str, written))}")
    return 0


def _requeue_interrupted(study, ran: list[int]) -> bool:
    """Queue the trial a Ctrl-C stopped (optuna marked it FAIL) to run again with the same parameters."""
    import optuna
    from optuna.trial import TrialState

    from pruneseek.tuning import MAX_RETRY

    if not ran:
        return False
    trial = next((t for t in study.get_trials(deepcopy=False) if t.number == ran[-1]), None)
    if trial is None or trial.state != TrialState.FAIL or "error" in trial.user_attrs:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)(study, trial)
    return True
