"""Bad inputs at scale (issue 18, part 3): run tests/reliability/test_bad_inputs.py with many examples per category
and write the counts to results/reliability-inputs.json.

    .venv/bin/python scripts/reliability/bad_inputs.py            # 100 examples per test (about 5 minutes, one core)
    .venv/bin/python scripts/reliability/bad_inputs.py --examples 300 --out results/reliability-inputs.json

Every example is fed to the real CLI in process; "clean" means exit 2 with one "pruneseek <cmd>: error: ..." line on
stderr (or exit 0 for inputs that are valid), no traceback, and the output location untouched. The test runs with
PRUNESEEK_RELIABILITY_KEEP_GOING=1, so an unclean example is logged and counted instead of stopping its category;
the first few go to "failures". Exit status 0 when every example was clean, 1 otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import commit  # this folder's report.py (the script's folder is on sys.path)

REPO = Path(__file__).resolve().parents[2]
TEST = "tests/reliability/test_bad_inputs.py"


def summarise(rows: list[dict], command: str, examples: int, seconds: float, pytest_status: int) -> dict:
    by_category: dict[str, dict[str, int]] = {}
    for row in rows:
        entry = by_category.setdefault(row["category"], {"tried": 0, "clean": 0})
        entry["tried"] += 1
        entry["clean"] += bool(row["clean"])
    failures = [{k: row[k] for k in ("category", "input", "exit", "stderr_lines", "stderr") if k in row}
                for row in rows if not row["clean"]][:10]
    return {"command": command, "commit": commit(), "examples_per_test": examples,
            "bad_inputs_tried": len(rows), "bad_inputs_clean": sum(bool(r["clean"]) for r in rows),
            "by_category": dict(sorted(by_category.items())), "failures": failures,
            "seconds": round(seconds, 1), "pytest_exit_status": pytest_status,
            "clean_means": "exit 2 with exactly one non-empty 'pruneseek <cmd>: error: ...' line on stderr (file "
                           "descriptor 2 included), no traceback, the output location not created or unchanged; "
                           "valid-image: exit 0 (or, where marked, a clean refusal)"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100, help="hypothesis examples per test (default 100)")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "reliability-inputs.json")
    args = parser.parse_args(argv)
    from pruneseek.io import atomic_write_json

    with tempfile.TemporaryDirectory(prefix="bad-inputs-") as tmp:
        log = Path(tmp) / "examples.jsonl"
        env = dict(os.environ, PRUNESEEK_RELIABILITY_EXAMPLES=str(args.examples), PRUNESEEK_RELIABILITY_LOG=str(log),
                   PRUNESEEK_RELIABILITY_KEEP_GOING="1", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        start = time.perf_counter()
        status = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TEST], cwd=REPO,
                                env=env).returncode
        seconds = time.perf_counter() - start
        rows = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    command = "python scripts/reliability/bad_inputs.py " + " ".join(argv if argv is not None else sys.argv[1:])
    doc = summarise(rows, command.strip(), args.examples, seconds, status)
    atomic_write_json(args.out, doc)
    print(f"{doc['bad_inputs_clean']} of {doc['bad_inputs_tried']} examples clean in {seconds:.0f} s; wrote {args.out}")
    for name, entry in doc["by_category"].items():
        print(f"  {name:<16} {entry['clean']:>5} / {entry['tried']}")
    return 0 if rows and doc["bad_inputs_clean"] == doc["bad_inputs_tried"] and status == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
