"""`pruneseek search` survives being killed (--checkpoint-every / --resume) and runs data parallel (--nproc).

The kill test kills a real `pruneseek search` subprocess (SIGKILL) once it has written a checkpoint and
before it has finished, resumes it, and checks the mask file and the EMA gates are bit-identical to an
uninterrupted run. The --nproc test runs 2 gloo processes with global batch 4 against one process with
batch 4: same mask, gates within 1e-5 (the two differ only in the order of floating-point sums).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pruneseek.cli import main
from run_helpers import kill_after_checkpoint

SMALL = ["search", "--model", "tsdsr", "--ratio", "0.5", "--strategy", "tinyfusion", "--crops", "8",
         "--crop-size", "32", "--batch", "2", "--quiet"]
ENV = dict(os.environ, OMP_NUM_THREADS="1")


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def _mask(out: Path) -> dict:
    doc = json.loads((out / "mask.json").read_text())
    doc.pop("created", None)
    return doc


def test_killed_search_resumes_to_the_same_mask_and_bit_identical_gates(tmp_path, capsys):
    steps = ["--steps", "30"]
    killed = tmp_path / "killed"
    checkpoint = killed / "checkpoint" / "checkpoint.pt"
    kill_after_checkpoint([*SMALL, *steps, "--checkpoint-every", "3", "--out", str(killed)], checkpoint, ENV)
    assert not (killed / "mask.json").exists(), "the run finished before it could be killed; raise --steps"
    step = torch.load(checkpoint, weights_only=False)["step"]
    assert 0 < step < 30

    reference = tmp_path / "reference"
    assert main([*SMALL, *steps, "--out", str(reference)]) == 0
    assert main([*SMALL, *steps, "--checkpoint-every", "3", "--resume", str(killed)]) == 0
    assert "resuming from" in capsys.readouterr().out
    assert _summary(killed)["gates"] == _summary(reference)["gates"]  # EMA logits, bit for bit (JSON repr)
    assert _summary(killed)["loss"]["history"] == _summary(reference)["loss"]["history"]
    assert _mask(killed) == _mask(reference)

    # a checkpoint from other settings is refused, naming the setting
    assert main([*SMALL, "--steps", "30", "--seed", "1", "--resume", str(killed)]) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "seed (checkpoint 0, now 1)" in err and len(err.strip().splitlines()) == 1


def test_resume_and_checkpoint_errors_are_one_line(tmp_path, capsys):
    assert main([*SMALL, "--steps", "2", "--resume", str(tmp_path / "nothing")]) == 2
    assert "no checkpoint at" in capsys.readouterr().err
    shortgpt = [a if a != "tinyfusion" else "shortgpt" for a in SMALL]
    assert main([*shortgpt, "--checkpoint-every", "5", "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "--checkpoint-every applies to the learned strategies" in err and len(err.strip().splitlines()) == 1
    assert main([*SMALL, "--nproc", "2", "--batch", "3", "--steps", "2", "--out", str(tmp_path / "odd")]) == 2
    assert "does not split over 2 processes" in capsys.readouterr().err
    assert not (tmp_path / "s").exists() and not (tmp_path / "odd").exists()


def test_two_processes_match_one_process_with_the_global_batch(tmp_path):
    args = [*SMALL[:-3], "--batch", "4", "--quiet", "--steps", "6"]
    two, one = tmp_path / "two", tmp_path / "one"
    done = subprocess.run([sys.executable, "-m", "pruneseek", *args, "--nproc", "2", "--out", str(two)],
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "data parallel: 2 processes, global batch 4 (2 crops each)" in done.stdout
    assert main([*args, "--out", str(one)]) == 0
    s2, s1 = _summary(two), _summary(one)
    assert s2["kept"] == s1["kept"]
    assert s2["cost"]["processes"] == 2 and s2["cost"]["gates_checked_identical"] == 6  # identical on both ranks
    assert s2["cost"]["forward_passes"] == s1["cost"]["forward_passes"] == 24
    for a, b in zip(s2["gates"]["ema_logits"], s1["gates"]["ema_logits"]):
        assert a == pytest.approx(b, abs=1e-5)
    assert s2["loss"]["history"] == pytest.approx(s1["loss"]["history"], rel=1e-5)
    assert sorted(p.name for p in two.iterdir()) == ["loss.png", "mask.json", "summary.json"]  # rank 0 wrote once

    # torchrun itself (the interface for multi-machine jobs) gives the same ranks the same environment
    via_torchrun = tmp_path / "torchrun"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "pruneseek", *args, "--out", str(via_torchrun)],
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    st = _summary(via_torchrun)
    assert st["gates"] == s2["gates"] and st["loss"]["history"] == s2["loss"]["history"]
