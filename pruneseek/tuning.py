"""Hyper-parameter tuning of a strategy with optuna: the search ranges and the persistent study (``pruneseek tune``).

:data:`TUNABLE` names, per registered strategy, the settings a study searches and their ranges; :func:`suggest`
turns an optuna trial into those settings and :func:`params_to_settings` turns a finished trial's parameters
back into them. The objective (search, the fair recovery of :mod:`pruneseek.recovery`, the held-out metric)
lives in :mod:`pruneseek.commands.tune`.

A study lives in a relational database (optuna's ``RDBStorage``; any SQLAlchemy URL, by default a SQLite file
under ``results/``), so it survives the process: :func:`open_study` creates it or loads it, and refuses one
made with other fixed settings (model, ratio, budget, metric, …: the study's ``fixed`` user attribute).
Trials send a heartbeat every :data:`HEARTBEAT_INTERVAL` seconds; a trial left RUNNING by a killed process
is marked FAIL by the next process once its heartbeat is :data:`GRACE_PERIOD` seconds old, and re-queued
with the same parameters (optuna's ``RetryHeartbeatStaleTrialCallback``, at most :data:`MAX_RETRY` times).

Reproducibility. The sampler is ``TPESampler(seed=seed + n)`` with n the number of trials the study held when
this process opened it. Reproducible: a study run from scratch in one uninterrupted process (n = 0 throughout)
suggests the same parameters on every run, and each trial's objective is a function of its parameters (fixed
data seed, the study's seed for search and recovery, the same CPU thread count and device). Not reproducible:
a resumed study (the second process draws from ``seed + n``, so its suggestions differ from an uninterrupted
run's, though they never replay the first process's random start-up draws), several processes sharing a
study (what TPE conditions on depends on which trials finished first), and nondeterministic GPU kernels.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from pruneseek.errors import TuneError, first_line
from pruneseek.fingerprint import differences, jsonable

#: Seconds between a running trial's heartbeats, and the silence after which it counts as dead (3 missed beats).
HEARTBEAT_INTERVAL = 60
GRACE_PERIOD = 180
#: How often a trial whose process died is re-queued with the same parameters.
MAX_RETRY = 2
#: Format tag of the JSON report.
REPORT_FORMAT = "pruneseek.tune/v1"



# ----- search ranges ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Float:
    """A float setting in ``[low, high]``, log-uniform if ``log``; ``when``: suggested only if that setting is
    truthy."""

    low: float
    high: float
    log: bool = False
    when: str | None = None

    def suggest(self, trial, param: str, limit: int | None = None) -> float:
        return trial.suggest_float(param, self.low, self.high, log=self.log)

    def describe(self) -> str:
        return f"float [{self.low:g}, {self.high:g}]{' log' if self.log else ''}"


@dataclass(frozen=True)
class Int:
    """An integer setting in ``[low, high]``; ``capped``: the high end is lowered to the budget's limit (annealing)."""

    low: int
    high: int
    log: bool = False
    when: str | None = None
    capped: bool = False

    def bounds(self, limit: int | None) -> tuple[int, int]:
        high = self.high if limit is None or not self.capped else max(0, min(self.high, int(limit)))
        return min(self.low, high), high

    def suggest(self, trial, param: str, limit: int | None = None) -> int:
        low, high = self.bounds(limit)
        return trial.suggest_int(param, low, high, log=self.log and low > 0)

    def describe(self, limit: int | None = None) -> str:
        low, high = self.bounds(limit)
        return f"int [{low}, {high}]{' log' if self.log and low > 0 else ''}"


@dataclass(frozen=True)
class Choice:
    """One of ``values`` (booleans, numbers or strings)."""

    values: tuple
    when: str | None = None

    def suggest(self, trial, param: str, limit: int | None = None):
        return trial.suggest_categorical(param, list(self.values))

    def describe(self) -> str:
        return f"one of {list(self.values)}"


@dataclass(frozen=True)
class Tau:
    """The Gumbel-softmax temperature schedule ``{"kind": "linear", "start", "end"}`` from two parameters
    ``tau_start`` and ``tau_end``."""

    start: Float
    end: Float
    when: str | None = None

    def describe(self) -> str:
        return f"linear, start {self.start.describe()}, end {self.end.describe()}"


#: The learned strategies' shared ranges (defaults: τ 4 → 0.1, scaling 100, gate lr 5e-4 or 1e-3, weight lr 5e-5
#: or 1e-4, LoRA rank 64 or 8).
_LEARNED = {
    "tau": Tau(Float(1.0, 8.0, log=True), Float(0.05, 0.5, log=True)),
    "scaling": Choice((10.0, 100.0, 1000.0)),
    "gate_lr": Float(1e-4, 1e-1, log=True),
    "weight_lr": Float(1e-5, 1e-3, log=True),
    "lora_rank": Choice((4, 8, 16)),
}
_SCORE_BATCHES = Int(1, 16, log=True)
_SCORED = {"score_batches": _SCORE_BATCHES, "scope": Choice(("global", "space"))}

#: Per strategy, setting → range. Every key is a setting of that strategy (tests check it); ``bk-sdm`` is a fixed
#: rule without settings. snapfusion's LoRA settings matter only with robust training, so they are suggested
#: only when ``robust_steps`` > 0. annealing's T is capped by the budget (at most ⌊ANNEAL_FRACTION · recovery
#: steps⌋ of it anneal, as in ``pruneseek compare``).
TUNABLE: dict[str, dict[str, Any]] = {
    "tinysr": {**_LEARNED, "rule": Choice(("marginal", "next-option"))},
    "tinyfusion": dict(_LEARNED),
    "random-min": {"num_masks": Int(10, 400, log=True), "score_batches": _SCORE_BATCHES},
    "optuna-tpe": {"n_trials": Int(20, 400, log=True), "score_batches": _SCORE_BATCHES},
    "shortgpt": {**_SCORED, "keep_last": Choice((True, False))},
    "flux-lite": dict(_SCORED),
    "sensitivity": dict(_SCORED),
    "snapfusion": {
        **_SCORED,
        "robust_steps": Int(0, 16),
        "robust_skip_prob": Float(0.0, 0.3, when="robust_steps"),
        "lora_rank": Choice((4, 8, 16), when="robust_steps"),
        "weight_lr": Float(1e-5, 1e-3, log=True, when="robust_steps"),
    },
    "annealing": {"anneal_steps": Int(0, 8000, capped=True)},
    "bk-sdm": {},
    "race": {"candidates": Int(4, 32, log=True), "screen": Int(16, 400, log=True), "first_steps": Int(5, 50, log=True),
             "eta": Int(2, 4)},
}


def tunable(name: str) -> dict[str, Any]:
    """The ranges of strategy ``name``; a :class:`TuneError` for an unknown strategy or one with nothing to tune."""
    from pruneseek.strategies import available

    if name not in available():
        raise TuneError(f"unknown strategy {name!r}; tunable strategies: {', '.join(n for n in TUNABLE if TUNABLE[n])}")
    if name not in TUNABLE:
        raise TuneError(f"strategy {name!r} has no search ranges in pruneseek.tuning.TUNABLE; add them there")
    if not TUNABLE[name]:
        raise TuneError(f"{name} has no tunable settings (a fixed rule without data or settings); tune one of "
                        f"{', '.join(n for n in TUNABLE if TUNABLE[n])}")
    return TUNABLE[name]


def _active(spec: Any, settings: Mapping[str, Any]) -> bool:
    return spec.when is None or bool(settings.get(spec.when))


def suggest(trial, name: str, limit: int | None = None) -> dict[str, Any]:
    """The settings of strategy ``name`` that ``trial`` (an optuna ``Trial`` or ``FixedTrial``) suggests.

    ``limit`` caps capped ranges (annealing's T: the annealing steps the recovery budget allows).
    """
    settings: dict[str, Any] = {}
    for key, spec in tunable(name).items():
        if not _active(spec, settings):
            continue
        if isinstance(spec, Tau):
            settings[key] = {"kind": "linear", "start": spec.start.suggest(trial, f"{key}_start"),
                             "end": spec.end.suggest(trial, f"{key}_end")}
        else:
            settings[key] = spec.suggest(trial, key, limit)
    return settings


def params_to_settings(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a finished trial's ``params`` stand for (the inverse of :func:`suggest`'s naming)."""
    settings: dict[str, Any] = {}
    for key, spec in tunable(name).items():
        if isinstance(spec, Tau):
            if f"{key}_start" in params and f"{key}_end" in params:
                settings[key] = {"kind": "linear", "start": float(params[f"{key}_start"]),
                                 "end": float(params[f"{key}_end"])}
        elif key in params:
            settings[key] = params[key]
    return settings


def describe_space(name: str, limit: int | None = None) -> dict[str, str]:
    """Setting → its range in words (recorded with the study: other ranges make another study)."""
    out = {}
    for key, spec in tunable(name).items():
        text = spec.describe(limit) if isinstance(spec, Int) else spec.describe()
        out[key] = text + (f" (when {spec.when} > 0)" if spec.when else "")
    return out


# ----- names, storage, study -------------------------------------------------------------------------------------

def study_name(strategy: str, model: str, ratio: float) -> str:
    """``tune-<strategy>-<model>-r<ratio>`` (ratio as ``pruneseek compare`` writes it: 0.33, 0.5, 0.67)."""
    return f"tune-{strategy}-{model}-r{float(ratio):.2g}"


def default_storage(out_dir: str | Path, strategy: str, model: str, ratio: float) -> str:
    """``sqlite:///<out_dir>/tune-<strategy>-<model>-r<ratio>.db`` (relative to the working folder if out_dir is)."""
    return f"sqlite:///{Path(out_dir) / (study_name(strategy, model, ratio) + '.db')}"


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and reports)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy parses: hide whatever sits between ':' and '@' after '//'
        return re.sub(r"(//[^/:@]*:)[^@/]*@", r"\1***@", url)


_URL_HELP = ("give an SQLAlchemy URL such as sqlite:///results/tune.db (its folder must exist) or "
             "postgresql+psycopg2://user:pass@host/db (the server reachable, the database created, its driver "
             "installed: pip install psycopg2-binary)")


def _storage_error(url: str, exc: BaseException) -> TuneError:
    first = first_line(exc, default="")
    cause = exc.__cause__ or exc.__context__
    cause_text = first_line(cause, default="") if cause is not None else ""
    if cause_text and cause_text not in first:  # optuna wraps a missing driver's ImportError in its own
        first += f": {cause_text}"
    if len(first) > 300:
        first = first[:297] + "..."
    return TuneError(f"cannot open the study storage {mask_url(url)} ({type(exc).__name__}: {first}); {_URL_HELP}")


def _storage_errors() -> tuple[type[BaseException], ...]:
    import optuna
    import sqlalchemy.exc

    return (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.OptunaError, ImportError, ValueError, RuntimeError,
            OSError)


def open_storage(url: str, heartbeat_interval: int = HEARTBEAT_INTERVAL, grace_period: int = GRACE_PERIOD,
                 max_retry: int = MAX_RETRY):
    """optuna's ``RDBStorage`` at ``url`` with heartbeats and retries of dead trials (module docstring);
    a :class:`TuneError` naming the (password-masked) URL and the fix when it cannot be opened."""
    import optuna

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry),
            )
    except _storage_errors() as exc:
        raise _storage_error(url, exc) from None


def open_study(url: str, name: str, direction: str, fixed: Mapping[str, Any], seed: int = 0, *, storage=None):
    """The study ``name`` at ``url``, created if absent (``optuna.create_study(load_if_exists=True)``).

    ``fixed`` (JSON-able: model, ratio, budget, metric, …) is stored as the study's ``fixed`` user attribute when
    the study is new; an existing study with other fixed settings is refused, naming what differs. The sampler is
    ``TPESampler(seed=seed + number of stored trials)`` (module docstring). ``storage``: an opened storage
    (default :func:`open_storage` of ``url``).
    """
    import optuna

    fixed = jsonable(dict(fixed))
    storage = storage if storage is not None else open_storage(url)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study = optuna.create_study(storage=storage, study_name=name, direction=direction, load_if_exists=True,
                                        sampler=optuna.samplers.TPESampler(seed=seed))
            old = study.user_attrs.get("fixed")
            trials = study.get_trials(deepcopy=False)
            if old is None and trials:
                raise TuneError(
                    f"study {name!r} in {mask_url(url)} holds {len(trials)} trials but was not made by pruneseek tune "
                    "(no fixed settings recorded); choose another --study name or --storage"
                )
            if old is None:
                study.set_user_attr("fixed", fixed)
    except TuneError:
        raise
    except _storage_errors() as exc:
        raise _storage_error(url, exc) from None
    if old is not None and old != fixed:
        changed = differences(old, fixed) or ["(unrecorded)"]
        raise TuneError(
            f"study {name!r} in {mask_url(url)} was made with other fixed settings (changed: {'; '.join(changed)}); "
            "rerun with the same settings to continue it, or give another --study name (or --storage) to start a "
            "new study"
        )
    wanted = optuna.study.StudyDirection[direction.upper()]
    if study.direction != wanted:
        raise TuneError(f"study {name!r} in {mask_url(url)} is to {study.direction.name.lower()}, not {direction}; "
                        "give another --study name")
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(trials))
    return study


def count_complete(study) -> int:
    """How many trials of ``study`` finished with a value."""
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def best_trial(study):
    """The best COMPLETE trial, or None while there is none."""
    return study.best_trial if count_complete(study) else None


_REPORTED_ATTRS = ("metrics_after", "metrics_before", "kept", "seconds", "search_seconds", "recovery_seconds",
                   "mask_file", "error")


def trial_record(trial) -> dict[str, Any]:
    """One trial for the report: number, state, params, value, what the objective recorded, retry origin."""
    record = {"number": trial.number, "state": trial.state.name, "params": dict(trial.params), "value": trial.value}
    record.update({k: trial.user_attrs[k] for k in _REPORTED_ATTRS if k in trial.user_attrs})
    if "failed_trial" in trial.system_attrs:
        record["retry_of"] = trial.system_attrs["failed_trial"]
    for key in ("datetime_start", "datetime_complete"):
        when = getattr(trial, key)
        record[key] = when.isoformat(timespec="seconds") if when is not None else None
    return record


def study_report(study, url: str, strategy: str, metric: str, direction: str, target: int,
                 best_settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON report of a study: its name, storage (password masked), fixed settings, best trial, all trials."""
    import time

    trials = study.get_trials(deepcopy=False)
    best = best_trial(study)
    states: dict[str, int] = {}
    for t in trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    return {
        "format": REPORT_FORMAT,
        "study": study.study_name,
        "storage": mask_url(url),
        "strategy": strategy,
        "metric": metric,
        "metric_when": "after recovery",
        "direction": direction,
        "target_complete_trials": target,
        "fixed": study.user_attrs.get("fixed"),
        "counts": states,
        "best": None if best is None else {"number": best.number, "value": best.value, "params": dict(best.params),
                                           "settings": best_settings},
        "trials": [trial_record(t) for t in trials],
        "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
