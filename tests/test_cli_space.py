"""`pruneseek space`: tables, JSON, and one-line errors with exit code 2 (never a traceback)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pruneseek.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_issue_example_json(capsys):
    code, out, err = run_cli(capsys, "space", "--layers", "24", "--block", "4", "--keep", "2", "--json")
    assert code == 0 and err == ""
    info = json.loads(out)
    assert info["full"] == 2704156
    assert info["valid"] == 46656
    assert abs(info["fraction"] - 46656 / 2704156) < 1e-15
    assert "reachable" not in info


def test_json_with_transfer(capsys):
    code, out, _ = run_cli(
        capsys, "space", "--layers", "24", "--block", "4", "--keep", "2", "--transfer-k", "1", "--topology", "pairs", "--json"
    )
    info = json.loads(out)
    assert code == 0
    assert info["reachable"] == 68**3
    assert info["transfer"] == {"k": 1, "topology": "pairs"}
    code, out, _ = run_cli(capsys, "space", "--layers", "24", "--block", "4", "--keep", "2", "--transfer-k", "1", "--topology", "chain", "--json")
    assert json.loads(out)["reachable"] == 1_487_968  # tests/test_spaces.py derives it from edge flows


def test_preset_table(capsys):
    code, out, _ = run_cli(capsys, "space", "tsdsr-24-r50")
    assert code == 0
    assert "24 layers as 6 × (4 keep 2) → 12 kept" in out
    assert "2,704,156" in out and "46,656" in out and "1.725 %" in out
    assert "reachable" in out and "314,432" in out  # the preset's default transfer: k=1, pairs


def test_ratio_and_uneven_blocks(capsys):
    code, out, _ = run_cli(capsys, "space", "--layers", "24", "--block", "3", "--ratio", "0.33", "--json")
    assert code == 0 and json.loads(out)["kept"] == 16
    code, out, _ = run_cli(capsys, "space", "--blocks", "4:2,4:2,6:3", "--transfer-k", "1", "--topology", "0-1,1-2", "--json")
    info = json.loads(out)
    assert code == 0 and info["layers"] == 14 and info["valid"] == 6 * 6 * 20
    assert info["transfer"]["topology"] == "chain"


def test_list(capsys):
    code, out, _ = run_cli(capsys, "space", "--list")
    assert code == 0
    for name in ("tsdsr-24-r50", "tsdsr-24-r33", "tsdsr-24-r67", "dit-28-r50"):
        assert name in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--layers", "24", "--block", "5", "--keep", "2"], "block size 5 does not divide 24 layers"),
        (["--layers", "24", "--block", "4", "--keep", "5"], "cannot keep 5 layers of a block of 4"),
        (["--layers", "-24", "--block", "4", "--keep", "2"], "expected a positive integer, got -24"),
        (["--layers", "24", "--block", "4", "--keep", "-1"], "expected a non-negative integer, got -1"),
        (["--layers", "24", "--block", "4", "--ratio", "0.3"], "nearest realisable: 0.25"),
        (["--layers", "24", "--block", "4", "--ratio", "1.2"], "must lie in [0, 1)"),
        (["no-such-preset"], "unknown search-space preset 'no-such-preset'"),
        (["--layers", "24"], "give a preset name, or --layers N --block B"),
        (["--layers", "24", "--block", "4", "--keep", "2", "--topology", "chain"], "--topology needs --transfer-k"),
        (["--layers", "24", "--block", "4", "--keep", "2", "--transfer-k", "1", "--topology", "ring"], "unknown topology"),
        (["tsdsr-24-r50", "--layers", "24"], "either a preset or --layers"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    try:
        code = main(["space", *argv])
    except SystemExit as exc:  # argparse errors exit through SystemExit
        code = exc.code
    out, err = capsys.readouterr()
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert out == ""


def test_console_script_end_to_end(tmp_path):
    """The installed `pruneseek` entry point, as a newcomer runs it, including a bad preset file."""
    exe = Path(sys.executable).with_name("pruneseek")
    assert exe.exists(), "the pruneseek console script is not installed in this environment"
    ok = subprocess.run([exe, "space", "--layers", "24", "--block", "4", "--keep", "2", "--json"], capture_output=True, text=True)
    assert ok.returncode == 0 and json.loads(ok.stdout)["valid"] == 46656
    bad = tmp_path / "bad.toml"
    bad.write_text('layers = 24\nblock = 4\nkeep = "two"\n')
    res = subprocess.run([exe, "space", str(bad)], capture_output=True, text=True, env={**os.environ})
    assert res.returncode == 2
    assert f"{bad}: field 'keep': must be an integer" in res.stderr
    assert "Traceback" not in res.stderr and res.stderr.count("\n") == 1
    mod = subprocess.run([sys.executable, "-m", "pruneseek", "space", "--layers", "8", "--block", "4", "--keep", "2"], capture_output=True, text=True)
    assert mod.returncode == 0 and "36" in mod.stdout
