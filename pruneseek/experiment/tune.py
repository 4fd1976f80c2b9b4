"""Tuning a strategy as a library: an optuna study whose trials are comparison rows.

Each trial is one row of the comparison (:func:`pruneseek.experiment.compare.run_row`: the same calibration
data, search, fair recovery and evaluation on the validation split, one seed) with the strategy's settings that the trial
suggests (:data:`pruneseek.tuning.TUNABLE`) on top of the comparison's; its value is the chosen metric after
recovery. The study is stored in a database (:mod:`pruneseek.tuning`: SQLite under the output folder by
default, any SQLAlchemy URL otherwise), so a rerun continues it — ``trials`` is the number of COMPLETE trials
the study should hold — and several machines running the same settings against one server share it. Trials of
a killed process are failed and retried. The best trial's full settings can be written as a strategy preset.
"""
from __future__ import annotations

import math
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pruneseek import recipes
from pruneseek.errors import PruneseekError, TuneError
from pruneseek.experiment.settings import TuneSettings

#: Settings ``pruneseek search`` derives from the run length (the EMA spans the last tenth of --steps): a saved
#: preset leaves them out unless they were tuned, so the preset suits any --steps.
RUN_LENGTH_SETTINGS = ("ema_decay",)


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


def full_settings(strategy: str, params: dict[str, Any], search_steps: int, quick: bool, mini: bool = True
                  ) -> dict[str, Any]:
    """Every setting of ``strategy`` in the trial with ``params``: compare's settings, the trial's on top, the rest
    the class defaults."""
    from pruneseek.experiment.strategy import build_strategy
    from pruneseek.tuning import params_to_settings

    return build_strategy(strategy, search_steps, mini=mini, quick=quick,
                          overrides=params_to_settings(strategy, params)).settings


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return repr(value) if isinstance(value, str) else str(value)


def params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_value(v)}" for k, v in params.items()) or "(no parameters)"


def safe_stem(name: str) -> str:
    """A file name stem for a study name (characters other than letters, digits, '.', '_', '-' become '_')."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "study"


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


@dataclass
class TuningRun:
    """One ``pruneseek tune`` run against its study: opened by :func:`open_tuning`, run by :meth:`run`."""

    settings: TuneSettings
    study: Any
    url: str
    name: str
    fixed: dict
    direction: str
    limit: int
    teacher: Any
    preset: Any
    perceptual: Any
    report_path: Path
    report: Callable[[str], None]

    def best_settings(self) -> dict[str, Any] | None:
        from pruneseek.tuning import best_trial

        best = best_trial(self.study)
        s = self.settings
        return None if best is None else full_settings(s.strategy, best.params, s.budget.search_steps, s.quick,
                                                       not s.source.is_real)

    def write_report(self) -> None:
        from pruneseek.io import atomic_write_json
        from pruneseek.tuning import study_report

        s = self.settings
        doc = study_report(self.study, self.url, s.strategy, s.metric, self.direction, s.trials, self.best_settings())
        doc["command"] = s.command
        atomic_write_json(self.report_path, doc)

    def header(self) -> int:
        """Report the study and budget; the number of trials still to run."""
        from optuna.trial import TrialState

        from pruneseek.tuning import count_complete, mask_url

        s, b = self.settings, self.settings.budget
        done = count_complete(self.study)
        todo = max(0, s.trials - done)
        stored = self.study.get_trials(deepcopy=False)
        states = {st: sum(1 for t in stored if t.state == st) for st in (TrialState.FAIL, TrialState.RUNNING,
                                                                          TrialState.WAITING)}
        self.report(f"target: {self.teacher.name}; space: {self.preset.name} ({self.preset.space.describe()}); "
                    f"strategy: {s.strategy}; objective: {s.metric} after recovery ({self.direction})")
        self.report(f"study: {self.name} in {mask_url(self.url)}: {len(stored)} trials stored ({done} complete, "
                    f"{states[TrialState.FAIL]} failed, {states[TrialState.RUNNING]} running, "
                    f"{states[TrialState.WAITING]} queued); {s.trials} complete wanted: {todo} to run")
        self.report(f"budget: search {b.search_steps} steps (learned), recovery {b.recovery_steps} steps, batch "
                    f"{b.batch}, {b.crops} crops of {b.crop_size} px; validation {b.eval_crop} px grid crops × "
                    f"{len(b.eval_seeds)} degradations; seed {s.seed}")
        self.report("ranges: " + "; ".join(f"{k} {v}" for k, v in self.fixed["ranges"].items()))
        return todo

    def objective(self, ctx, ran: list[int]) -> Callable:
        """The optuna objective: one comparison row with the trial's settings; its metric after recovery."""
        from dataclasses import replace

        from pruneseek.evaluation import METRICS
        from pruneseek.experiment.compare import run_row
        from pruneseek.tuning import suggest

        s = self.settings

        def objective(trial) -> float:
            ran.append(trial.number)
            started = time.perf_counter()
            params = suggest(trial, s.strategy, self.limit)
            trial_ctx = replace(ctx, masks_dir=s.out / safe_stem(self.name) / f"trial-{trial.number}")
            try:
                row = run_row(s.strategy, s.seed, trial_ctx, params)
                value = row.get(f"{s.metric}_after")
                if value is None or not math.isfinite(value):
                    raise TuneError(f"{s.metric} after recovery is {value!r} for trial {trial.number}")
            except PruneseekError as exc:
                trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
                trial.set_user_attr("seconds", time.perf_counter() - started)
                raise
            for when in ("before", "after"):
                trial.set_user_attr(f"metrics_{when}", {m: row[f"{m}_{when}"] for m in METRICS
                                                        if f"{m}_{when}" in row})
            for key in ("kept", "search_seconds", "recovery_seconds", "mask_file"):
                trial.set_user_attr(key, row[key])
            trial.set_user_attr("seconds", time.perf_counter() - started)
            return float(value)

        return objective

    def on_trial(self, study, trial) -> None:
        """After every trial: one line, and the report rewritten."""
        from optuna.trial import TrialState

        from pruneseek.tuning import count_complete

        s = self.settings
        complete = count_complete(study)
        seconds = trial.user_attrs.get("seconds", 0.0)
        retry = f" (retry of trial {trial.system_attrs['failed_trial']})" if "failed_trial" in trial.system_attrs else ""
        if trial.state == TrialState.COMPLETE:
            best = study.best_trial
            self.report(f"[{complete}/{s.trials}] trial {trial.number}{retry}: {s.metric} {trial.value:.4f} "
                        f"(best {best.value:.4f}, trial {best.number}); {params_text(trial.params)}; {seconds:.1f} s")
        else:
            self.report(f"[{complete}/{s.trials}] trial {trial.number}{retry} {trial.state.name}: "
                        f"{trial.user_attrs.get('error', 'no value')}; {params_text(trial.params)}")
        self.write_report()

    def run_trials(self, todo: int) -> list[int]:
        """Run ``todo`` trials (an interrupt re-queues the running one and keeps the finished ones)."""
        import optuna
        from optuna.trial import TrialState

        from pruneseek.experiment.compare import row_context
        from pruneseek.fingerprint import settings_hash
        from pruneseek.tuning import count_complete, mask_url

        s, ran = self.settings, []
        ctx = row_context(self.teacher, self.preset, s.budget, self.perceptual, settings_hash(self.fixed),
                          s.out / safe_stem(self.name), s.quick, s.progress, mini=not s.source.is_real,
                          split="validation")
        callbacks = [self.on_trial, optuna.study.MaxTrialsCallback(s.trials, states=(TrialState.COMPLETE,))]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self.study.optimize(self.objective(ctx, ran), n_trials=todo, catch=(PruneseekError,),
                                    callbacks=callbacks, gc_after_trial=False)
        except KeyboardInterrupt:
            requeued = _requeue_interrupted(self.study, ran)
            self.write_report()
            self.report(f"interrupted during trial {ran[-1] if ran else '?'}"
                        f"{' (queued to run again first)' if requeued else ''}; {count_complete(self.study)} complete "
                        f"trials are kept in {mask_url(self.url)}; rerun the same command to continue")
            raise
        return ran

    def save_preset(self, path: Path) -> None:
        """The best trial's full settings as a strategy preset at ``path`` (run-length settings left out)."""
        from pruneseek.strategies import presets
        from pruneseek.tuning import best_trial, params_to_settings

        s, b = self.settings, self.settings.budget
        best = best_trial(self.study)
        if best is None:
            raise TuneError(f"--save-preset: study {self.name} has no complete trial yet; run trials first")
        settings = self.best_settings()
        tuned = params_to_settings(s.strategy, best.params)
        derived = [k for k in RUN_LENGTH_SETTINGS if k in settings and k not in tuned]
        settings = {k: v for k, v in settings.items() if k not in derived}
        comment = [
            f"Strategy preset: {s.strategy}, tuned by pruneseek tune (best of study {self.name}: trial {best.number}, "
            f"{s.metric} after recovery {best.value:.6g}, {self.direction}).",
            f"Tuned on {self.teacher.name}, space {self.preset.name}, seed {s.seed}: search {b.search_steps} steps, "
            f"recovery {b.recovery_steps} steps, batch {b.batch}, {b.crops} crops of {b.crop_size} px"
            f"{' (--quick)' if s.quick else ''}.",
            f"Tuned settings: {params_text(best.params)}; the others are pruneseek compare's for {self.teacher.name}.",
            f"Use it with: pruneseek search --strategy {path}",
        ]
        if derived:
            comment.insert(3, f"Left to the command: {', '.join(derived)} (pruneseek search sets it from --steps).")
        presets.save_strategy_preset(
            path, s.strategy, settings, comment_lines=comment,
            description=f"tuned: study {self.name}, trial {best.number}, {s.metric} after recovery {best.value:.6g}",
        )

    def finish(self, ran: list[int]) -> None:
        """After the trials: refuse a run whose every trial failed, report what is missing and the best trial."""
        from optuna.trial import TrialState

        from pruneseek.tuning import best_trial, count_complete

        s = self.settings
        self.write_report()
        complete = count_complete(self.study)
        failed_now = [t for t in self.study.get_trials(deepcopy=False) if t.number in ran and t.state == TrialState.FAIL]
        if ran and len(failed_now) == len(ran):
            first = failed_now[0].user_attrs.get("error", "no value")
            raise TuneError(f"all {len(ran)} trials of this run failed (first: trial {failed_now[0].number}: {first}); "
                            f"fix the cause and rerun; the report is {self.report_path}")
        if complete < s.trials:
            self.report(f"note: the study holds {complete} of {s.trials} complete trials ({len(failed_now)} of this "
                        "run failed; see the report); rerun the same command to run the rest")
        best = best_trial(self.study)
        if best is not None:
            self.report(f"best: trial {best.number}, {s.metric} {best.value:.4f} ({self.direction}); "
                        f"{params_text(best.params)}")


def check_tune_settings(s: TuneSettings) -> Path | None:
    """Refuse bad settings before anything loads; the preset path ``--save-preset`` names (or None)."""
    from pruneseek.evaluation import METRICS
    from pruneseek.io import check_writable
    from pruneseek.losses import lpips_status
    from pruneseek.tuning import tunable

    tunable(s.strategy)
    target_path = preset_target(s.save_preset, s.force) if s.save_preset else None
    if s.metric not in METRICS:
        raise TuneError(f"unknown --metric {s.metric!r}; choose one of {', '.join(METRICS)}")
    if s.metric == "lpips" and not lpips_status()[0]:
        raise TuneError(f"--metric lpips needs LPIPS, which cannot run here ({lpips_status()[1]}); choose another "
                        "--metric")
    check_writable(s.out)  # the report, the trials' masks and (by default) the study go there
    return target_path


def open_tuning(s: TuneSettings, report: Callable[[str], None] = print) -> TuningRun:
    """Load the target, fix what the study depends on, and open (or create) the study."""
    from pruneseek.evaluation import METRICS
    from pruneseek.experiment.compare import comparison_settings
    from pruneseek.losses import perceptual_loss
    from pruneseek.experiment.search import resolve_space
    from pruneseek.tuning import default_storage, describe_space, open_study, study_name

    teacher = s.source.load()
    preset = resolve_space(s.model, s.ratio, s.space, teacher.num_layers)
    perceptual, note = perceptual_loss("auto")
    limit = int(recipes.ANNEAL_FRACTION * s.budget.recovery_steps)
    direction = "maximize" if METRICS[s.metric][0] == "up" else "minimize"
    fixed = {
        "strategy": s.strategy, "model": teacher.name, "ratio": f"{float(preset.space.ratio):.2g}",
        "metric": s.metric, "direction": direction, "seed": s.seed, "quick": bool(s.quick),
        "ranges": describe_space(s.strategy, limit),
        "protocol": comparison_settings(teacher, s.source, preset, s.budget, s.quick, note, split="validation"),
    }
    name = s.study or study_name(s.strategy, teacher.name, preset.space.ratio)
    if s.storage:
        url = s.storage
    else:
        s.out.mkdir(parents=True, exist_ok=True)
        url = default_storage(s.out, s.strategy, teacher.name, preset.space.ratio)
    study = open_study(url, name, direction, fixed, s.seed)
    return TuningRun(s, study, url, name, fixed, direction, limit, teacher, preset, perceptual,
                     s.out / f"{safe_stem(name)}.json", report)


def run_tuning(s: TuneSettings, report: Callable[[str], None] = print) -> list[Path]:
    """The whole tuning run of ``s``; the files written (report, and the preset when asked)."""
    started = time.perf_counter()
    target_path = check_tune_settings(s)
    run = open_tuning(s, report)
    todo = run.header()
    ran = run.run_trials(todo) if todo else []
    run.finish(ran)
    written = [run.report_path]
    if target_path is not None:
        run.save_preset(target_path)
        written.append(target_path)
    report(f"{len(ran)} trials run in {time.perf_counter() - started:.0f} s; wrote {', '.join(map(str, written))}")
    return written
