"""Short runs whose numbers are recorded, so a change that should not move a number cannot move one unseen.

:func:`run_cases` runs a short ``pruneseek search`` for the two learned strategies and a ``--quick``
``pruneseek compare`` for four deterministic strategies, in one process with one torch thread, and returns
what must not change: masks, decision probabilities, loss histories, the comparison's settings hash and
every metric of every row. ``tests/data/recorded_runs.json`` holds the values (``python tests/recorded_runs.py
OUT.json`` writes them). First recorded before the architecture refactor (issue 13, which had to leave every
number unchanged); recorded again for the v2 teacher, the new held-out set and the cosine recovery (issue 15,
which changes them on purpose). A change meant to move numbers re-records them and says so in its commit.
snapfusion is left out: it times blocks on the device, so its mask varies between runs.
"""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

SEARCHES = {"tinysr": 0, "tinyfusion": 1}
SEARCH_ARGS = ["--steps", "12", "--crops", "8", "--batch", "2", "--crop-size", "32", "--quiet"]
COMPARE_STRATEGIES = "tinysr,tinyfusion,bk-sdm,annealing"


def run_cases(out: Path) -> dict:
    import torch

    from pruneseek.cli import main

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        recorded: dict = {}
        for name, seed in SEARCHES.items():
            folder = out / f"search-{name}"
            assert main(["search", "--model", "tsdsr", "--ratio", "0.5", "--strategy", name, "--seed", str(seed),
                         *SEARCH_ARGS, "--out", str(folder)]) == 0
            mask = json.loads((folder / "mask.json").read_text())
            summary = json.loads((folder / "summary.json").read_text())
            recorded[f"search-{name}"] = {"mask": mask["mask"], "probabilities": mask["probabilities"],
                                          "marginals": mask["marginals"], "loss": summary["loss"]["history"]}
        assert main(["compare", "--model", "tsdsr", "--ratio", "0.5", "--quick", "--quiet", "--strategies",
                     COMPARE_STRATEGIES, "--out", str(out / "compare")]) == 0
        doc = json.loads((out / "compare" / "compare-tsdsr-mini-r0.5.json").read_text())
        recorded["compare_settings_hash"] = doc["settings_hash"]
        recorded["compare_rows"] = {
            r["strategy"]: {k: v for k, v in r.items() if (k.endswith(("_before", "_after")) and
                                                           not k.startswith("per_crop"))
                            or k in ("kept", "recovery_loss_first", "recovery_loss_last")}
            for r in doc["rows"]
        }
        return recorded
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        result = run_cases(Path(tmp))
    Path(sys.argv[1]).write_text(json.dumps(result, indent=1) + "\n")
