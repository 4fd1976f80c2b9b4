"""Reliability as figures (issue 18): gather the three checks' reports into ``results/reliability.json``.

    .venv/bin/python scripts/reliability/report.py      # after mutations.py, faults.py and bad_inputs.py

Reads ``results/reliability-mutations.json`` (mutations.py: source mutations, each run against its tests),
``results/reliability-faults.json`` (faults.py: SIGKILLs, a full disk, an unwritable output) and
``results/reliability-inputs.json`` (bad_inputs.py: hypothesis-generated bad inputs fed to the CLI) and writes
the counts the README reports: ``bad_inputs_tried``/``bad_inputs_clean``, ``kills``/``kills_nothing_lost``,
``mutations``/``mutations_caught``, plus the disk-full and unwritable cases, each part's commit and command.
Exit status 1 when a part is missing or any count falls short (a fault not survived, an input not handled, a
mutation not caught), so the summary never hides a failure.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from pruneseek.io import atomic_write_json  # noqa: E402

PARTS = {"mutations": "reliability-mutations.json", "faults": "reliability-faults.json",
         "inputs": "reliability-inputs.json"}


def commit() -> str:
    """The repository's HEAD, with "+uncommitted changes" when tracked files differ from it ("unknown" without git);
    every part records it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    try:
        head = git("rev-parse", "HEAD") or "unknown"
        return head + ("+uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else "")
    except OSError:
        return "unknown"


def load_parts(folder: Path) -> dict:
    parts = {}
    for name, file in PARTS.items():
        path = folder / file
        if not path.is_file():
            raise SystemExit(f"report.py: error: {path} is missing; run scripts/reliability/{name if name != 'inputs' else 'bad_inputs'}.py first")
        parts[name] = json.loads(path.read_text())
    return parts


def cases_clean(cases: list[dict]) -> int:
    return sum(bool(c.get("clean")) for c in cases)


def summary(parts: dict) -> dict:
    m, f, i = parts["mutations"], parts["faults"], parts["inputs"]
    return {
        "bad_inputs_tried": i["bad_inputs_tried"], "bad_inputs_clean": i["bad_inputs_clean"],
        "kills": f["kills"], "kills_nothing_lost": f["kills_nothing_lost"],
        "disk_full": len(f["disk_full"]), "disk_full_clean": cases_clean(f["disk_full"]),
        "unwritable": len(f["unwritable"]), "unwritable_clean": cases_clean(f["unwritable"]),
        "mutations": m["mutations"], "mutations_caught": m["mutations_caught"],
        "sources": {name: {"file": f"results/{PARTS[name]}", "commit": doc.get("commit"), "command": doc.get("command")}
                    for name, doc in parts.items()},
    }


def shortfalls(s: dict) -> list[str]:
    pairs = [("bad_inputs_tried", "bad_inputs_clean"), ("kills", "kills_nothing_lost"), ("disk_full", "disk_full_clean"),
             ("unwritable", "unwritable_clean"), ("mutations", "mutations_caught")]
    return [f"{good} {s[good]} of {s[total]}" for total, good in pairs if s[good] < s[total] or s[total] == 0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=REPO / "results", help="folder of the three reports (default results/)")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "reliability.json")
    args = parser.parse_args(argv)
    s = summary(load_parts(args.results))
    atomic_write_json(args.out, s)
    print(json.dumps({k: v for k, v in s.items() if k != "sources"}))
    short = shortfalls(s)
    if short:
        print("report.py: not every check passed: " + "; ".join(short), file=sys.stderr)
    return 1 if short else 0


if __name__ == "__main__":
    sys.exit(main())
