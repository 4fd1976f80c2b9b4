"""Fault injection for pruneseek (issue 18, part 2: reliability as figures).

    .venv/bin/python scripts/reliability/faults.py [--kills-per-command N] [--seed S] [--out results/reliability-faults.json]

1. **Kills.** Real ``python -m pruneseek`` processes of ``search``, ``compare``, ``tune``, ``export`` and ``retrain``
   (tsdsr-mini, tiny budgets) are SIGKILLed at seeded random moments spread over each command's whole run (one
   moment drawn in each of N-1 equal slices of the uninterrupted run's duration, the last kill fired the instant
   the final write starts). After each kill every result file present must load with the project's own loaders
   (MaskFile.load, from_pretrained, torch.load, optuna, json, PIL) and temporary files must be hidden temporaries;
   then the command is resumed (search ``--resume``, retrain ``--resume``, compare and tune by rerunning, export by
   rerunning) and the end state is compared: search and retrain bit-identical to an uninterrupted run (gates,
   weights, loss history, mask), export the same weights, compare keeps every row finished before the kill
   unchanged, tune keeps every completed trial.
2. **Disk full.** Inside ``unshare -rm`` a size-limited tmpfs holds earlier results and the output of ``search``,
   ``export``, ``retrain`` and ``compare``; a filler leaves too little room for the final writes. Expected: exit 2,
   one line naming the path / the full disk and the rescue folder (whose result must load), the earlier results
   byte-identical, nothing in the output folder that could be read as a finished result, no temporary left. Where
   ``unshare`` is not permitted, ``OSError(ENOSPC)`` is injected in-process instead (recorded as ``method``).
3. **Unwritable output** (a read-only tmpfs): all five commands must refuse with one line before any long work;
   the time to the refusal is recorded. Without ``unshare``, ``os.access`` is patched to say no.

Writes the JSON report atomically (:func:`pruneseek.io.atomic_write_json`).
"""
from __future__ import annotations

import argparse
import csv
import errno
import glob
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import commit  # this folder's report.py (the script's folder is on sys.path)

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
SMALL = ["--crops", "8", "--crop-size", "32", "--batch", "2"]
STEM = "compare-tsdsr-mini-r0.5"
STUDY = "tune-shortgpt-tsdsr-mini-r0.5"
TEMP_MARKS = (".tmp", ".tmp-", ".old-", ".pruneseek-probe-")


# ----- running commands --------------------------------------------------------------------------------------------

def env(work: Path) -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PRUNESEEK_CACHE=str(work / "cache"),
                PYTHONUNBUFFERED="1")


def run(args: list[str], work: Path, log: Path, prefix: list[str] | None = None) -> tuple[int, float, str]:
    """Run ``python -m pruneseek *args`` to the end: (exit status, seconds, stderr+stdout text)."""
    started = time.monotonic()
    with open(log, "w") as f:
        code = subprocess.call([*(prefix or [PY, "-m", "pruneseek"]), *args], cwd=ROOT, env=env(work), stdout=f,
                               stderr=subprocess.STDOUT)
    return code, time.monotonic() - started, log.read_text(errors="replace")


def start_and_kill(args: list[str], work: Path, log: Path, at: float | None, markers: list[str]) -> dict:
    """Start the command; SIGKILL it ``at`` seconds after start, or (``at`` None) the instant a marker glob
    matches. Returns when, whether it was killed, and the phase its output showed."""
    f = open(log, "w")
    started = time.monotonic()
    proc = subprocess.Popen([PY, "-m", "pruneseek", *args], cwd=ROOT, env=env(work), stdout=f,
                            stderr=subprocess.STDOUT)
    fired_by = None
    while proc.poll() is None:
        now = time.monotonic() - started
        if at is not None and now >= at:
            fired_by = "time"
        elif at is None and any(glob.glob(m) for m in markers):
            fired_by = "final write started"
        if fired_by:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.004 if at is None else 0.01)
    seconds = time.monotonic() - started
    code = proc.wait()
    f.close()
    text = log.read_text(errors="replace")
    return {"seconds": round(seconds, 3), "killed": code == -signal.SIGKILL, "exit": code,
            "phase": "final writes" if fired_by == "final write started" else phase(text),
            "last_output": last_line(text)}


def last_line(text: str) -> str:
    lines = [x.strip() for x in text.replace("\r", "\n").splitlines() if x.strip()]
    return lines[-1][:160] if lines else ""


def phase(text: str) -> str:
    """What the output showed when the process died."""
    line = last_line(text)
    if not line:
        return "start (imports, nothing printed yet)"
    if line.startswith("wrote") or "; wrote " in line:
        return "done (all written, exiting)"
    if "it/s" in line or "s/it" in line or "%|" in line or line.startswith(("checkpoints go to", "resuming", "[")):
        return "running (steps, rows or trials)"
    if line.startswith(("kept ", "decision probability", "parameters", "reloaded", "best:", "after recovery",
                        "ordering", "  ", "no strategy")) or " steps in " in line:
        return "finishing (results computed, writing)"
    return "loading (target, data, calibration)"


# ----- checking what is on disk ------------------------------------------------------------------------------------

def is_temp(name: str) -> bool:
    return name.startswith(".") and any(m in name for m in TEMP_MARKS)


def temporaries(*folders: Path) -> list[str]:
    """Hidden temporary files and folders under (and, for folders built beside, next to) ``folders``."""
    found = []
    for folder in folders:
        if folder.is_dir():
            for dirpath, dirnames, filenames in os.walk(folder):
                found += [str(Path(dirpath) / n) for n in dirnames + filenames if is_temp(n)]
        found += [str(p) for p in folder.parent.glob(f".{folder.name}.*") if is_temp(p.name)]
    return sorted(set(found))


def loads(path: Path) -> str | None:
    """None when ``path`` loads completely with the project's loader for its kind, else why not."""
    try:
        if path.name == "mask.json" or path.parent.name == "masks":
            from pruneseek.maskfile import MaskFile
            MaskFile.load(path)
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".csv":
            list(csv.DictReader(path.open()))
        elif path.suffix == ".png":
            from PIL import Image
            with Image.open(path) as im:
                im.verify()
        elif path.suffix in (".pt", ".safetensors"):
            if path.suffix == ".pt":
                import torch
                torch.load(path, map_location="cpu", weights_only=False)
            else:
                from safetensors.torch import load_file
                load_file(path)
        elif path.suffix == ".db":
            import optuna
            optuna.logging.set_verbosity(optuna.logging.ERROR)
            for s in optuna.get_all_study_summaries(f"sqlite:///{path}"):
                optuna.load_study(study_name=s.study_name, storage=f"sqlite:///{path}").get_trials()
        return None
    except Exception as exc:  # noqa: BLE001
        return f"{path}: {type(exc).__name__}: {exc}"[:300]


def result_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and not any(is_temp(x) for x in p.parts))


def model_loads(folder: Path) -> str | None:
    try:
        from diffusers import SD3Transformer2DModel
        SD3Transformer2DModel.from_pretrained(folder)
        return None
    except Exception as exc:  # noqa: BLE001
        return f"from_pretrained({folder}): {type(exc).__name__}: {exc}"[:300]


MODEL_FILES = ("EXPORT.json", "config.json", "diffusion_pytorch_model.safetensors", "prune_mask.json", "mask.json",
               "embeddings/prompt_embeds.pt", "embeddings/pool_embeds.pt")


def check_model_folder(folder: Path, extra: tuple[str, ...] = ()) -> list[str]:
    """An export/retrain folder that exists must be complete and load with from_pretrained."""
    missing = [n for n in MODEL_FILES + extra if not (folder / n).is_file()]
    if missing:
        return [f"{folder} exists but lacks {missing}: a half folder"]
    return [p for p in [model_loads(folder)] if p]


def check_files(folder: Path) -> list[str]:
    return [p for p in (loads(f) for f in result_files(folder)) if p]


def sha_tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def tensors_equal(a: Path, b: Path) -> bool:
    import torch
    from safetensors.torch import load_file
    x, y = load_file(a), load_file(b)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def mask_doc(path: Path) -> dict:
    doc = json.loads(path.read_text())
    doc.pop("created", None)
    return doc


# ----- the five commands ---------------------------------------------------------------------------------------------

class Command:
    """How to run, kill-check, resume and compare one command. ``units(out)`` is what is finished on disk."""

    name = ""

    def __init__(self, work: Path):
        self.work = work
        self.ref = work / f"{self.name}-reference"

    def args(self, out: Path) -> list[str]:
        raise NotImplementedError

    def markers(self, out: Path) -> list[str]:
        raise NotImplementedError

    def validate(self, out: Path) -> list[str]:
        return check_files(out)

    def units(self, out: Path):
        return None

    def resume_args(self, out: Path) -> list[str] | None:
        return self.args(out)

    def compare(self, out: Path, before) -> list[str]:
        raise NotImplementedError


def _step(checkpoint: Path) -> int:
    import torch
    return int(torch.load(checkpoint, map_location="cpu", weights_only=False)["step"]) if checkpoint.is_file() else 0


class Search(Command):
    name = "search"

    def args(self, out):
        return ["search", "--model", "tsdsr", "--ratio", "0.5", "--strategy", "tinyfusion", *SMALL, "--steps", "40",
                "--checkpoint-every", "3", "--out", str(out)]

    def markers(self, out):
        return [str(out / ".mask.json.*"), str(out / "mask.json")]

    def units(self, out):
        return _step(out / "checkpoint" / "checkpoint.pt")

    def resume_args(self, out):
        if (out / "checkpoint" / "checkpoint.pt").is_file():
            return [*self.args(out)[:-2], "--resume", str(out)]
        return self.args(out)

    def compare(self, out, before):
        got, ref = json.loads((out / "summary.json").read_text()), json.loads((self.ref / "summary.json").read_text())
        problems = [f"{k} differs from the uninterrupted run" for k in ("gates", "kept")
                    if got.get(k) != ref.get(k)]
        if got["loss"]["history"] != ref["loss"]["history"]:
            problems.append("loss history differs from the uninterrupted run")
        if mask_doc(out / "mask.json") != mask_doc(self.ref / "mask.json"):
            problems.append("mask.json differs from the uninterrupted run")
        return problems


class Export(Command):
    name = "export"

    def __init__(self, work, mask: Path):
        super().__init__(work)
        self.mask = mask

    def args(self, out):
        return ["export", "--mask", str(self.mask), "--out", str(out), "--rounds", "1"]

    def markers(self, out):  # the folder's first file: export prints nothing until done, and its last write is quick
        return [str(out.parent / f".{out.name}.tmp-*" / "config.json")]

    def validate(self, out):
        return check_model_folder(out) + check_files(out) if out.exists() else []

    def compare(self, out, before):
        problems = check_model_folder(out)
        name = "diffusion_pytorch_model.safetensors"
        if not problems and not tensors_equal(out / name, self.ref / name):
            problems.append("exported weights differ from the uninterrupted export")
        return problems


class Retrain(Command):
    name = "retrain"

    def __init__(self, work, source: Path):
        super().__init__(work)
        self.source = source

    def args(self, out):
        return ["retrain", "--from", str(self.source), *SMALL, "--steps", "60", "--checkpoint-every", "4",
                "--out", str(out)]

    def markers(self, out):
        return [str(out.parent / f".{out.name}.tmp-*" / "config.json")]

    def finished(self, out):
        return (out / "RETRAIN.json").is_file()

    def validate(self, out):
        if self.finished(out):
            return check_model_folder(out, ("RETRAIN.json", "loss.png")) + check_files(out)
        stray = [str(p) for p in result_files(out) if p.parent.name != "checkpoint"]
        return [f"unfinished folder holds result files {stray}"] * bool(stray) + check_files(out)

    def units(self, out):
        return _step(out / "checkpoint" / "checkpoint.pt")

    def resume_args(self, out):
        if self.finished(out):
            return None
        if (out / "checkpoint" / "checkpoint.pt").is_file():
            return [*self.args(out), "--resume"]
        return self.args(out)

    def compare(self, out, before):
        problems = check_model_folder(out, ("RETRAIN.json",))
        name = "diffusion_pytorch_model.safetensors"
        if not problems and not tensors_equal(out / name, self.ref / name):
            problems.append("weights differ from the uninterrupted run")
        got, ref = (json.loads((f / "RETRAIN.json").read_text())["loss"]["history"] for f in (out, self.ref))
        if got != ref:
            problems.append("loss history differs from the uninterrupted run")
        return problems


class Compare(Command):
    name = "compare"

    def args(self, out):
        return ["compare", "--model", "tsdsr", "--ratio", "0.5", "--quick", "--strategies", "bk-sdm,shortgpt",
                "--seeds", "0,1,2", "--out", str(out)]

    def markers(self, out):
        return [str(out / f".{STEM}-metrics.png.*"), str(out / f"{STEM}-metrics.png")]

    def units(self, out):
        path = out / f"{STEM}.json"
        return json.loads(path.read_text())["rows"] if path.is_file() else []

    def compare(self, out, before):
        rows = self.units(out)
        by_key = {(r["strategy"], r["seed"]): r for r in rows}
        problems = [f"row {r['strategy']} seed {r['seed']} finished before the kill was lost or changed"
                    for r in before if by_key.get((r["strategy"], r["seed"])) != r]
        if len(rows) != 6:
            problems.append(f"{len(rows)} rows at the end, 6 expected")
        return problems


class Tune(Command):
    name = "tune"

    def args(self, out):
        return ["tune", "--strategy", "shortgpt", "--model", "tsdsr", "--ratio", "0.5", "--quick", "--seed", "0",
                "--trials", "4", "--out", str(out)]

    def markers(self, out):
        return [str(out / f".{STUDY}.json.*"), str(out / f"{STUDY}.json")]

    def units(self, out):
        db = out / f"{STUDY}.db"
        if not db.is_file():
            return []
        import optuna
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{db}")
        return [(t.number, t.params, t.value) for t in study.get_trials()
                if t.state == optuna.trial.TrialState.COMPLETE]

    def compare(self, out, before):
        after = self.units(out)
        problems = [f"completed trial {t[0]} lost or changed" for t in before if t not in after]
        if len(after) < 4:
            problems.append(f"{len(after)} complete trials at the end, 4 wanted")
        return problems


# ----- kills -----------------------------------------------------------------------------------------------------------

def reference(cmd: Command, logs: Path) -> float:
    code, seconds, text = run(cmd.args(cmd.ref), cmd.work, logs / f"{cmd.name}-reference.log")
    if code != 0:
        raise SystemExit(f"the uninterrupted {cmd.name} failed ({code}):\n{text[-2000:]}")
    print(f"reference {cmd.name}: {seconds:.1f} s", flush=True)
    return seconds


def one_kill(cmd: Command, i: int, at: float | None, logs: Path) -> dict:
    out = cmd.work / f"{cmd.name}-kill{i}"
    record = {"command": cmd.name, "planned_s": None if at is None else round(at, 3)}
    for attempt in range(4):  # a run faster than planned (the machine is shared) ended first: try again earlier
        shutil.rmtree(out, ignore_errors=True)
        for t in temporaries(out):
            shutil.rmtree(t, ignore_errors=True) if os.path.isdir(t) else os.unlink(t)
        record.update(start_and_kill(cmd.args(out), cmd.work, logs / f"{cmd.name}-kill{i}.log", at, cmd.markers(out)))
        if record["killed"] and (attempt == 3 or not record["phase"].startswith("done")):
            break
        at = (at or record["seconds"]) * 0.75
    problems = cmd.validate(out) if record["killed"] else ["the process was never killed (it finished first)"]
    record["temporaries_left"] = [os.path.relpath(t, cmd.work) for t in temporaries(out)]
    before = cmd.units(out)
    record["finished_before_kill"] = before if isinstance(before, int) else len(before or [])
    resume = cmd.resume_args(out)
    if resume is not None:
        code, seconds, text = run(resume, cmd.work, logs / f"{cmd.name}-kill{i}-resume.log")
        record["resume"] = {"how": "--resume" if "--resume" in resume else "rerun of the same command",
                            "exit": code, "seconds": round(seconds, 2)}
        if code != 0:
            problems.append(f"resuming failed ({code}): {last_line(text)}")
    else:
        record["resume"] = "already complete"
    if not any(p.startswith("resuming failed") for p in problems):
        problems += cmd.compare(out, before)
    record["nothing_lost"] = not problems
    record["details"] = problems or ["result files loaded after the kill; the resumed result matches"]
    shutil.rmtree(out, ignore_errors=True)
    return record


def kills(cmd: Command, duration: float, n: int, rng: random.Random, logs: Path) -> list[dict]:
    """``n`` kills: one drawn in each of ``n - 1`` slices of the run, the last when the final write starts."""
    moments = [rng.uniform(k / (n - 1), (k + 1) / (n - 1)) * duration * 0.97 for k in range(n - 1)] + [None]
    records = []
    for i, at in enumerate(moments):
        r = one_kill(cmd, i, at, logs)
        print(f"  kill {cmd.name} #{i} at {r['seconds']:.2f} s ({r['phase']}): nothing_lost={r['nothing_lost']}"
              + ("" if r["nothing_lost"] else f" {r['details']}"), flush=True)
        records.append(r)
    return records


# ----- disk full and unwritable (run inside `unshare -rm`, or with injected errors) -------------------------------

def one_line_error(code: int, text: str) -> tuple[bool, str]:
    lines = [x for x in text.replace("\r", "\n").splitlines() if "error" in x.lower() or "Traceback" in x]
    ok = code == 2 and "Traceback" not in text and len(lines) == 1
    return ok, lines[-1] if lines else last_line(text)


def rescue_folder(line: str) -> Path | None:
    if "saved to " not in line:
        return None
    return Path(line.split("saved to ")[1].split(" instead")[0])


def rescue_loads(name: str, folder: Path) -> list[str]:
    if name in ("retrain", "export"):
        return check_model_folder(folder, ("RETRAIN.json",) if name == "retrain" else ())
    problems = check_files(folder)
    expect = {"search": "mask.json", "compare": f"{STEM}.json"}[name]
    return problems + ([f"{expect} missing from the rescue folder"] * (not (folder / expect).is_file()))


#: (command, free bytes left on the small disk, extra arguments): too little room for the final writes.
DISK_CASES = [("search", 12 << 10), ("export", 1 << 20), ("retrain", 1 << 20), ("compare", 48 << 10)]


def fill(folder: Path, leave: int) -> None:
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    with open(folder / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave))


def disk_args(name: str, cmds: dict, out: Path) -> list[str]:
    if name == "search":
        return [*cmds["search"].args(out)[:-4], "--quiet", "--out", str(out)]  # no checkpoints: the final write
    if name == "retrain":
        return ["retrain", "--from", str(cmds["retrain"].source), *SMALL, "--steps", "8", "--quiet", "--out", str(out)]
    return [*cmds[name].args(out), "--quiet"] if name != "export" else cmds[name].args(out)


def disk_case(name: str, leave: int, cmds: dict, base: Path, logs: Path, method: str) -> dict:
    """One disk-full case in ``base`` (a small tmpfs, or an ordinary folder with injected ENOSPC)."""
    earlier, out = base / "earlier", base / "out"
    shutil.copytree(cmds["search"].ref, earlier, ignore=shutil.ignore_patterns("checkpoint"))
    hashes = sha_tree(earlier)
    prefix = None
    if method == "tmpfs":
        fill(base, leave)
    else:
        prefix = [PY, str(Path(__file__).resolve()), "--_inject-enospc", str(base), str(leave), "--"]
    code, seconds, text = run(disk_args(name, cmds, out), cmds["search"].work, logs / f"diskfull-{name}.log", prefix)
    ok, line = one_line_error(code, text)
    problems = [] if ok else [f"not a one-line exit-2 error (exit {code})"]
    if "No space left" not in line and "disk" not in line:
        problems.append("the error does not say the disk is full")
    if str(out) not in line and str(base) not in line:
        problems.append("the error does not name the output path")
    rescued_to = rescue_folder(line)
    if rescued_to is not None:
        problems += rescue_loads(name, rescued_to)
        shutil.rmtree(rescued_to, ignore_errors=True)
    if sha_tree(earlier) != hashes:
        problems.append("the earlier results changed")
    left = [str(p.relative_to(base)) for p in result_files(out) if p.parent.name != "checkpoint"]
    if name == "compare":  # rows finished before the disk filled stay (complete); nothing else may
        left = [x for x in left if not x.endswith((f"{STEM}.json", f"{STEM}.csv")) and "/masks/" not in x]
    problems += [f"result files left in the output folder: {left}"] * bool(left)
    problems += check_files(out)
    problems += [f"temporaries left: {t}" for t in temporaries(out)]
    return {"command": name, "method": method, "free_bytes": leave, "exit": code, "seconds": round(seconds, 2),
            "error": line, "rescued_to": str(rescued_to) if rescued_to else None, "clean": not problems,
            "details": problems or ["one line, exit 2, earlier results intact, nothing partial left"]}


def unwritable_case(name: str, cmds: dict, ro: Path, logs: Path, method: str) -> dict:
    out = ro / "out"
    args = disk_args(name, cmds, out) if name != "tune" else [*cmds["tune"].args(out), "--quiet"]
    prefix = None
    if method != "read-only tmpfs":
        prefix = [PY, str(Path(__file__).resolve()), "--_deny-write", str(ro), "0", "--"]
    listing = sorted(os.listdir(ro))
    code, seconds, text = run(args, cmds["search"].work, logs / f"unwritable-{name}.log", prefix)
    ok, line = one_line_error(code, text)
    problems = [] if ok else [f"not a one-line exit-2 refusal (exit {code})"]
    if "writable" not in line and "read-only" not in line.lower():
        problems.append("the refusal does not say the folder is not writable")
    if sorted(os.listdir(ro)) != listing:
        problems.append("something was created")
    work_started = any(s in text for s in ("checkpoints go to", "it/s", "rows: ", "study: "))
    problems += ["long work started before the refusal"] * work_started
    return {"command": name, "method": method, "exit": code, "seconds_to_refusal": round(seconds, 2),
            "error": line, "clean": not problems, "details": problems or ["refused in one line before any work"]}


def worker(args) -> None:
    """``--_worker``: the disk-full and unwritable cases, inside ``unshare -rm`` (tmpfs mounts) when possible."""
    work, logs = Path(args.work), Path(args.work) / "logs"
    cmds = commands(work)
    method = args.method
    disk, unwritable = [], []
    for name, leave in DISK_CASES:
        base = work / f"small-{name}"
        base.mkdir(exist_ok=True)
        if method == "tmpfs":
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(base)], check=True)
        disk.append(disk_case(name, leave, cmds, base, logs, method))
        print(f"  disk full {name}: clean={disk[-1]['clean']} {disk[-1]['error']}", flush=True)
    ro = work / "readonly"
    ro.mkdir(exist_ok=True)
    if method == "tmpfs":
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], check=True)
    for name in ("search", "compare", "tune", "retrain", "export"):
        unwritable.append(unwritable_case(name, cmds, ro, logs, "read-only tmpfs" if method == "tmpfs"
                                          else "os.access patched to deny"))
        print(f"  unwritable {name}: clean={unwritable[-1]['clean']} in {unwritable[-1]['seconds_to_refusal']} s",
              flush=True)
    Path(args.report).write_text(json.dumps({"disk_full": disk, "unwritable": unwritable}))


def inject(argv: list[str]) -> None:
    """``--_inject-enospc BASE BYTES -- ARGS`` / ``--_deny-write BASE 0 -- ARGS``: run ``pruneseek ARGS`` in this
    process with writes under BASE failing with ENOSPC once BYTES are used (or BASE unwritable)."""
    kind, base, budget, args = argv[0], argv[1], int(argv[2]), argv[4:]
    used = [0]
    import pruneseek.io as pio
    if kind == "--_deny-write":
        real_access = os.access
        os.access = lambda p, mode, **kw: False if str(p).startswith(base) and mode & os.W_OK else real_access(p, mode)
    else:
        import safetensors.torch as st
        real_write, real_save = pio.atomic_write_bytes, st.save_file

        def charge(path, size):
            if str(path).startswith(base):
                used[0] += size
                if used[0] > budget:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

        def write(path, data):
            charge(path, len(data))
            return real_write(path, data)

        def save_file(tensors, path, metadata=None):
            charge(path, sum(t.numel() * t.element_size() for t in tensors.values()))
            return real_save(tensors, path, metadata=metadata)

        pio.atomic_write_bytes, st.save_file = write, save_file
        for mod in list(sys.modules.values()):
            if getattr(mod, "atomic_write_bytes", None) is real_write:
                mod.atomic_write_bytes = write
    from pruneseek.cli import main
    sys.argv = ["pruneseek", *args]
    sys.exit(main(args))


def can_unshare() -> bool:
    try:
        probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt && true"],
                               capture_output=True, timeout=30)
        return probe.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def faults_elsewhere(work: Path) -> tuple[dict, str]:
    method = "tmpfs" if can_unshare() else "injected"
    report = work / "worker.json"
    me = [PY, str(Path(__file__).resolve()), "--_worker", "--work", str(work), "--report", str(report),
          "--method", method]
    code = subprocess.call((["unshare", "-rm"] if method == "tmpfs" else []) + me, cwd=ROOT, env=env(work))
    if code != 0:
        raise SystemExit(f"the disk-full/unwritable worker failed ({code})")
    return json.loads(report.read_text()), method


# ----- main -------------------------------------------------------------------------------------------------------

def commands(work: Path) -> dict:
    search = Search(work)
    export = Export(work, search.ref / "mask.json")
    return {"search": search, "export": export, "retrain": Retrain(work, export.ref), "compare": Compare(work),
            "tune": Tune(work)}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("--_inject-enospc", "--_deny-write"):
        return inject(sys.argv[1:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills-per-command", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "results" / "reliability-faults.json")
    p.add_argument("--work", type=Path, default=None, help="working folder (default: a new temporary one)")
    p.add_argument("--_worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--report", help=argparse.SUPPRESS)
    p.add_argument("--method", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._worker:
        return worker(args)
    if args.kills_per_command < 4:
        p.error("--kills-per-command must be at least 4 (early, middle, late and the final write)")
    started = time.monotonic()
    work = args.work or Path(tempfile.mkdtemp(prefix="pruneseek-faults-"))
    (work / "logs").mkdir(parents=True, exist_ok=True)
    print(f"working in {work}", flush=True)
    cmds = commands(work)
    rng = random.Random(args.seed)
    durations = {name: reference(cmds[name], work / "logs") for name in ("search", "export", "retrain", "compare",
                                                                        "tune")}
    results = []
    for name in ("search", "compare", "tune", "export", "retrain"):
        results += kills(cmds[name], durations[name], args.kills_per_command, rng, work / "logs")
    elsewhere, method = faults_elsewhere(work)
    doc = {"command": "python scripts/reliability/faults.py " + " ".join(sys.argv[1:]), "commit": commit(),
           "seed": args.seed, "kills": len(results), "kills_nothing_lost": sum(r["nothing_lost"] for r in results),
           "reference_seconds": {k: round(v, 2) for k, v in durations.items()},
           "disk_full_method": "size-limited tmpfs in `unshare -rm`" if method == "tmpfs"
           else "OSError(ENOSPC) injected in-process (unshare not permitted)",
           "disk_full": elsewhere["disk_full"], "unwritable": elsewhere["unwritable"], "results": results,
           "seconds": round(time.monotonic() - started, 1)}
    from pruneseek.io import atomic_write_json
    atomic_write_json(args.out, doc)
    print(f"{doc['kills_nothing_lost']} of {doc['kills']} kills lost nothing; disk full clean "
          f"{sum(d['clean'] for d in doc['disk_full'])}/{len(doc['disk_full'])}; unwritable clean "
          f"{sum(d['clean'] for d in doc['unwritable'])}/{len(doc['unwritable'])}; {doc['seconds']:.0f} s; "
          f"wrote {args.out}", flush=True)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
