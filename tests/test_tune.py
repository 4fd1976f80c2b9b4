"""`pruneseek tune`: search ranges, the preset writer, a quick study end to end (resume, dead trials, interrupt,
--save-preset) and one-line refusals."""
from __future__ import annotations

import contextlib
import io
import json
import shutil
import tomllib
from datetime import datetime, timedelta, timezone

import optuna
import pytest
import torch
from optuna.trial import TrialState

from pruneseek.cli import main
from pruneseek.experiment import compare
from pruneseek.strategies import available, get_strategy, strategy_class
from pruneseek.strategies import presets
from pruneseek.strategies.presets import (
    list_strategy_presets,
    load_strategy_preset,
    preset_text,
    save_strategy_preset,
    strategy_presets_dir,
)
from pruneseek.tuning import (
    TUNABLE,
    TuneError,
    default_storage,
    describe_space,
    mask_url,
    open_storage,
    params_to_settings,
    study_name,
    suggest,
    tunable,
)

STUDY = "tune-shortgpt-tsdsr-mini-r0.5"
QUICK = ["--strategy", "shortgpt", "--model", "tsdsr", "--ratio", "0.5", "--quick", "--quiet", "--seed", "0"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core machine: one thread avoids OpenMP contention stalls
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("PRUNESEEK_CACHE", str(tmp_path_factory.getbasetemp() / "tune-cache"))


def _tune(out, *extra):
    """``pruneseek tune`` in this process: (exit status, stdout, stderr)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["tune", *QUICK, "--out", str(out), *extra])
    return code, stdout.getvalue(), stderr.getvalue()


def _report(out):
    return json.loads((out / f"{STUDY}.json").read_text())


def _url(out):
    return f"sqlite:///{out / (STUDY + '.db')}"


def _load(out):
    storage = open_storage(_url(out))
    return optuna.load_study(study_name=STUDY, storage=storage), storage


@pytest.fixture(scope="module")
def study3(tmp_path_factory):
    """A quick shortgpt study run as ``--trials 2`` and then continued with ``--trials 3`` (outputs kept)."""
    out = tmp_path_factory.mktemp("tune") / "results"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PRUNESEEK_CACHE", str(tmp_path_factory.getbasetemp() / "tune-cache"))
        first = _tune(out, "--trials", "2")
        report2 = _report(out)
        second = _tune(out, "--trials", "3")
    return out, first, report2, second


def _copy(study3, tmp_path):
    out = tmp_path / "results"
    shutil.copytree(study3[0], out)
    return out


# ----- (a) ranges -------------------------------------------------------------------------------------------------

def test_every_tunable_key_is_a_real_setting_and_suggestions_build_the_strategy(tmp_path):
    assert set(TUNABLE) == set(available())
    for name, ranges in TUNABLE.items():
        defaults = strategy_class(name).defaults
        assert set(ranges) <= set(defaults), name
        if not ranges:
            continue
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
        for _ in range(6):
            trial = study.ask()
            settings = suggest(trial, name, limit=100)
            assert set(settings) <= set(defaults)
            strategy = get_strategy(name, **settings)  # the strategy accepts them
            assert params_to_settings(name, trial.params) == settings
            # and a preset of them loads back to the same settings
            path = save_strategy_preset(tmp_path / f"{name}.toml", name, strategy.settings)
            assert load_strategy_preset(path) == (name, {k: v for k, v in strategy.settings.items() if v is not None})
            study.tell(trial, 0.0)
    fixed = optuna.trial.FixedTrial({"tau_start": 2.0, "tau_end": 0.2, "scaling": 10.0, "gate_lr": 0.01,
                                     "weight_lr": 1e-4, "lora_rank": 4, "rule": "next-option"})
    assert suggest(fixed, "tinysr") == {"tau": {"kind": "linear", "start": 2.0, "end": 0.2}, "scaling": 10.0,
                                        "gate_lr": 0.01, "weight_lr": 1e-4, "lora_rank": 4, "rule": "next-option"}
    # snapfusion's LoRA settings only with robust training; annealing's T capped by the budget
    assert suggest(optuna.trial.FixedTrial({"score_batches": 2, "scope": "space", "robust_steps": 0}),
                   "snapfusion") == {"score_batches": 2, "scope": "space", "robust_steps": 0}
    assert describe_space("annealing", limit=1) == {"anneal_steps": "int [0, 1]"}
    assert describe_space("annealing")["anneal_steps"] == "int [0, 8000]"
    assert describe_space("snapfusion")["lora_rank"] == "one of [4, 8, 16] (when robust_steps > 0)"


def test_help_lists_every_metric_with_its_direction():
    from pruneseek.commands.tune import METRIC_HELP
    from pruneseek.evaluation import METRICS

    listed = dict(item.split(" (")[0].split() for item in METRIC_HELP.split(", "))
    assert listed == {m: "↑" if d == "up" else "↓" for m, (d, _) in METRICS.items()}


def test_tunable_refusals_and_names():
    with pytest.raises(TuneError, match="unknown strategy 'nope'; tunable strategies: tinysr"):
        tunable("nope")
    with pytest.raises(TuneError, match="bk-sdm has no tunable settings"):
        tunable("bk-sdm")
    assert study_name("tinysr", "tsdsr-mini", 1 / 3) == "tune-tinysr-tsdsr-mini-r0.33"
    assert default_storage("results", "tinysr", "tsdsr-mini", 0.5) == "sqlite:///results/tune-tinysr-tsdsr-mini-r0.5.db"
    assert mask_url("postgresql+psycopg2://user:s3cret@host:5432/db") == "postgresql+psycopg2://user:***@host:5432/db"
    assert mask_url("sqlite:///results/x.db") == "sqlite:///results/x.db"


# ----- the preset writer -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list_strategy_presets())
def test_preset_text_round_trips_every_bundled_preset(name, tmp_path):
    loaded, settings = load_strategy_preset(name)
    text = preset_text(loaded, settings, comment_lines=["a comment"])
    assert text.startswith("# a comment\n")
    assert tomllib.loads(text) == tomllib.loads((strategy_presets_dir() / f"{name}.toml").read_text())
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    assert load_strategy_preset(path) == (name, settings)


def test_preset_text_escapes_strings_and_leaves_out_none(tmp_path):
    settings = {**strategy_class("tinysr").defaults, "mode": "skip", "lora_targets": None}
    text = preset_text("tinysr", settings, source='a "quoted"\\ source\twith\nlines\x7f', description="d")
    assert "# Left out (default None, TOML has no null): lora_targets." in text
    data = tomllib.loads(text)
    assert data["source"] == 'a "quoted"\\ source\twith\nlines\x7f' and data["description"] == "d"
    assert "lora_targets" not in data["settings"] and data["settings"]["tau"]["start"] == 4.0
    snap = preset_text("snapfusion", {"latency": [1, 2.5], "scope": "space"})
    assert tomllib.loads(snap)["settings"] == {"latency": [1, 2.5], "scope": "space"}
    with pytest.raises(presets.StrategyPresetError, match="no setting"):
        save_strategy_preset(tmp_path / "bad.toml", "shortgpt", {"colour": "red"})
    with pytest.raises(presets.StrategyPresetError, match="cannot write"):
        preset_text("shortgpt", {"scope": object()})
    assert not (tmp_path / "bad.toml").exists()


# ----- (b) a study end to end, resumed ----------------------------------------------------------------------------

def test_tune_runs_a_study_and_resumes_it(study3):
    out, (code1, text1, err1), report2, (code2, text2, err2) = study3
    assert code1 == 0 and code2 == 0, err1 + err2
    assert f"study: {STUDY} in sqlite:///" in text1 and "2 complete wanted: 2 to run" in text1
    assert "[1/2] trial 0: psnr_teacher " in text1 and "[2/2] trial 1: psnr_teacher " in text1 and "best: trial " in text1
    assert [t["state"] for t in report2["trials"]] == ["COMPLETE"] * 2
    # the rerun continues the stored study: exactly one more trial
    assert "(2 complete, 0 failed, 0 running, 0 queued); 3 complete wanted: 1 to run" in text2
    assert "[3/3] trial 2: psnr_teacher" in text2 and "trial 0:" not in text2 and "1 trials run" in text2
    report = _report(out)
    assert report["format"] == "pruneseek.tune/v1" and report["study"] == STUDY
    assert report["storage"] == _url(out) and report["metric"] == "psnr_teacher" and report["direction"] == "maximize"
    assert [t["number"] for t in report["trials"]] == [0, 1, 2] and report["counts"] == {"COMPLETE": 3}
    assert report["trials"][:2] == report2["trials"]
    values = [t["value"] for t in report["trials"]]
    assert report["best"]["value"] == max(values)
    best = report["trials"][values.index(max(values))]
    assert report["best"]["params"] == best["params"] and set(best["params"]) == {"score_batches", "scope", "keep_last"}
    assert best["metrics_after"]["psnr_teacher"] == best["value"] and len(best["kept"]) == 12
    assert report["fixed"]["protocol"]["recovery"]["steps"] == 3 and report["fixed"]["ratio"] == "0.5"
    study, storage = _load(out)
    assert len(study.trials) == 3 and study.user_attrs["fixed"] == report["fixed"]
    storage.engine.dispose()


# ----- (c) a trial of a killed process, and an interrupted one ----------------------------------------------------

@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_a_dead_trial_is_failed_and_retried(study3, tmp_path):
    out = _copy(study3, tmp_path)
    study, storage = _load(out)
    trial = study.ask()  # as a process killed mid-trial leaves it: RUNNING, with parameters and a stale heartbeat
    suggest(trial, "shortgpt")
    storage.record_heartbeat(trial._trial_id)
    from optuna.storages._rdb import models
    from sqlalchemy.orm import Session

    with Session(storage.engine) as session:
        beat = session.query(models.TrialHeartbeatModel).filter_by(trial_id=trial._trial_id).one()
        beat.heartbeat = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(hours=1)
        session.commit()
    storage.engine.dispose()
    assert trial.number == 3

    code, text, err = _tune(out, "--trials", "4")
    assert code == 0, err
    assert "(3 complete, 0 failed, 1 running, 0 queued); 4 complete wanted: 1 to run" in text
    assert "[4/4] trial 4 (retry of trial 3): psnr_teacher" in text
    study, storage = _load(out)
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE] * 3 + [TrialState.FAIL, TrialState.COMPLETE]
    assert study.trials[4].params == study.trials[3].params and study.trials[4].system_attrs["failed_trial"] == 3
    storage.engine.dispose()
    assert [t["state"] for t in _report(out)["trials"]] == ["COMPLETE"] * 3 + ["FAIL", "COMPLETE"]


def test_an_interrupted_trial_is_queued_again(study3, tmp_path, monkeypatch):
    out = _copy(study3, tmp_path)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(compare, "run_row", interrupted)
    code, text, err = _tune(out, "--trials", "4")
    assert code == 130 and "interrupted during trial 3 (queued to run again first)" in text
    study, storage = _load(out)
    assert [t.state for t in study.trials][3:] == [TrialState.FAIL, TrialState.WAITING]
    assert study.trials[4].params == study.trials[3].params
    storage.engine.dispose()


def test_failing_trials_are_recorded_and_a_run_of_only_failures_is_an_error(study3, tmp_path, monkeypatch):
    from pruneseek.errors import PruneseekError

    out = _copy(study3, tmp_path)

    def failing(*args, **kwargs):
        raise PruneseekError("the loss is not finite")

    monkeypatch.setattr(compare, "run_row", failing)
    code, text, err = _tune(out, "--trials", "4")
    _one_line_error(code, err, "all 1 trials of this run failed", "trial 3: PruneseekError: the loss is not finite")
    assert "[3/4] trial 3 FAIL: PruneseekError: the loss is not finite; score_batches=" in text
    failed = _report(out)["trials"][3]
    assert failed["state"] == "FAIL" and failed["error"] == "PruneseekError: the loss is not finite"


# ----- (d) --save-preset ------------------------------------------------------------------------------------------

def test_save_preset_writes_a_preset_search_accepts(study3, tmp_path, monkeypatch):
    out = _copy(study3, tmp_path)
    path = tmp_path / "tuned" / "shortgpt-best.toml"
    code, text, err = _tune(out, "--trials", "3", "--save-preset", str(path))
    assert code == 0, err
    assert "3 complete wanted: 0 to run" in text and str(path) in text
    best = _report(out)["best"]
    name, settings = load_strategy_preset(path)
    assert name == "shortgpt" and settings == best["settings"]
    assert {k: settings[k] for k in best["params"]} == best["params"]
    assert f"trial {best['number']}" in path.read_text() and "pruneseek search --strategy" in path.read_text()

    search_out = tmp_path / "search"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["search", "--model", "tsdsr", "--ratio", "0.5", "--strategy", str(path), "--crops", "8",
                     "--crop-size", "32", "--batch", "2", "--steps", "1", "--quiet", "--out", str(search_out)])
    assert code == 0 and "strategy: shortgpt" in stdout.getvalue()
    summary = json.loads((search_out / "summary.json").read_text())
    assert summary["strategy"] == "shortgpt" and len(summary["kept"]) == 12

    # a bare name goes to strategies/<name>.toml; a bundled strategy's own preset only with --force
    monkeypatch.setattr(presets, "strategy_presets_dir", lambda: tmp_path / "strategies")
    (tmp_path / "strategies").mkdir()
    (tmp_path / "strategies" / "shortgpt.toml").write_text("bundled")
    code, _, err = _tune(out, "--trials", "3", "--save-preset", "shortgpt")
    assert code == 2 and "bundled preset of the shortgpt strategy" in err and "--force" in err
    assert (tmp_path / "strategies" / "shortgpt.toml").read_text() == "bundled"
    assert _tune(out, "--trials", "3", "--save-preset", "shortgpt-tuned")[0] == 0
    assert load_strategy_preset(tmp_path / "strategies" / "shortgpt-tuned.toml") == (name, settings)
    assert _tune(out, "--trials", "3", "--save-preset", "shortgpt", "--force")[0] == 0
    assert load_strategy_preset(tmp_path / "strategies" / "shortgpt.toml") == (name, settings)


# ----- (e) refusals -------------------------------------------------------------------------------------------------

def _one_line_error(code, err, *needles):
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and err.startswith("pruneseek tune: error:")
    for needle in needles:
        assert needle in err


def test_bad_input_is_one_line_exit_2(study3, tmp_path):
    fresh = tmp_path / "fresh"
    code, _, err = _tune(fresh, "--strategy", "nope")
    _one_line_error(code, err, "unknown strategy 'nope'", "tunable strategies:")
    code, _, err = _tune(fresh, "--strategy", "bk-sdm")
    _one_line_error(code, err, "bk-sdm has no tunable settings")
    missing = f"sqlite:///{tmp_path / 'no' / 'such' / 'folder' / 'x.db'}"
    code, _, err = _tune(fresh, "--storage", missing)
    _one_line_error(code, err, f"cannot open the study storage {missing}", "its folder must exist")
    code, _, err = _tune(fresh, "--storage", "nosuchdb://host/x")
    _one_line_error(code, err, "cannot open the study storage nosuchdb://host/x", "SQLAlchemy URL")
    code, _, err = _tune(fresh, "--storage", "postgresql+psycopg2://user:s3cret@127.0.0.1:1/db")
    _one_line_error(code, err, "user:***@127.0.0.1:1/db", "psycopg2")
    assert "s3cret" not in err
    code, _, err = _tune(fresh, "--save-preset", "x/y")
    _one_line_error(code, err, "a preset path ends in .toml")
    assert not fresh.exists()

    out = _copy(study3, tmp_path)
    code, _, err = _tune(out, "--trials", "4", "--recovery-steps", "4")
    _one_line_error(code, err, "other fixed settings", "protocol.recovery.steps (3 → 4)", "--study")
    code, _, err = _tune(out, "--trials", "4", "--metric", "gmsd")
    _one_line_error(code, err, "metric ('psnr_teacher' → 'gmsd')", "direction ('maximize' → 'minimize')")
    study, storage = _load(out)
    assert len(study.trials) == 3  # nothing ran
    storage.engine.dispose()
    code, _, err = _tune(out, "--metric", "sharpness")
    _one_line_error(code, err, "unknown --metric 'sharpness'", "psnr_teacher")
    with pytest.raises(SystemExit) as exc, contextlib.redirect_stderr(io.StringIO()):
        main(["tune", "--strategy", "shortgpt", "--trials", "0"])
    assert exc.value.code == 2
