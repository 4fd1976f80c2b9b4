"""Fault injection, fast and without `unshare` (scripts/reliability/faults.py runs the real thing: SIGKILLs, a full
tmpfs, a read-only mount): a disk that fills during the final write of `search` and `export` gives one line and exit
2, keeps the previous results byte for byte, rescues what finished and leaves nothing partial; an output folder that
cannot be written is refused in one line before any work (root ignores chmod, so the refusal is simulated)."""
from __future__ import annotations

import errno
import hashlib
import os
import sys
from pathlib import Path

import pytest
import torch

from pruneseek.cli import main
from pruneseek.maskfile import MaskFile

ROOT = Path(__file__).resolve().parents[2]
MASK = ROOT / "results" / "search" / "tsdsr-mini-r0.5-tinysr-s0" / "mask.json"
SEARCH = ["search", "--model", "tsdsr", "--ratio", "0.5", "--strategy", "tinyfusion", "--crops", "8", "--crop-size",
          "32", "--batch", "2", "--steps", "2", "--quiet"]
ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture(autouse=True)
def one_thread(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("PRUNESEEK_CACHE", str(tmp_path_factory.getbasetemp() / "faults-cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def _fail_writes(monkeypatch, under: Path, names: set[str]) -> None:
    """Every atomic write of a file named in ``names`` under ``under`` fails as on a full disk."""
    import pruneseek.io as pio

    real = pio.atomic_write_bytes

    def write(path, data):
        if Path(path).name in names and str(path).startswith(str(under)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, data)

    for module in list(sys.modules.values()):  # the modules that imported it by name too
        if getattr(module, "atomic_write_bytes", None) is real:
            monkeypatch.setattr(module, "atomic_write_bytes", write)


def test_search_with_a_full_disk_at_the_end_rescues_its_result_and_leaves_nothing_partial(tmp_path, capsys,
                                                                                           monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier.json").write_text('{"keep": [1]}')  # an earlier result in the same folder
    earlier = _tree(out)
    _fail_writes(monkeypatch, out, {"summary.json"})  # mask.json is written, then the disk is full
    assert main([*SEARCH, "--out", str(out)]) == 2
    err = _one_line(capsys)
    assert "No space left on device" in err and str(out) in err and "saved to " in err, err
    rescue = Path(err.split("saved to ")[1].split(" instead")[0])
    assert MaskFile.load(rescue / "mask.json").mask.count(1) == 12 and (rescue / "summary.json").is_file()
    assert _tree(out) == earlier  # the earlier result intact; no lone mask.json, no temporary file


def test_export_with_a_full_disk_keeps_the_previous_export_and_leaves_no_half_folder(tmp_path, capsys, monkeypatch):
    import safetensors.torch
    from safetensors import SafetensorError

    out = tmp_path / "pruned"
    assert main(["export", "--mask", str(MASK), "--out", str(out), "--no-measure"]) == 0
    previous = _tree(out)
    capsys.readouterr()

    def full(*args, **kwargs):  # what safetensors raises on a full disk
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    assert main(["export", "--mask", str(MASK), "--out", str(out), "--no-measure"]) == 2
    err = _one_line(capsys)
    assert f"cannot write {out}: No space left on device; free some space" in err, err
    assert _tree(out) == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pruned"]  # no temporary folder beside it

    # torch.save's own writer would leave a partial file and an unexplained RuntimeError: the embeddings go through
    # the atomic writer, so a full disk there is the same one line
    monkeypatch.undo()
    _fail_writes(monkeypatch, tmp_path, {"pool_embeds.pt"})
    assert main(["export", "--mask", str(MASK), "--out", str(tmp_path / "other"), "--no-measure"]) == 2
    assert "pool_embeds.pt: No space left on device" in _one_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pruned"]


def _no_work(*args, **kwargs):
    raise AssertionError("the work started before the output folder was checked")


COMMANDS = {
    "search": (SEARCH, "pruneseek.latents.calibration_latents"),
    "compare": (["compare", "--model", "tsdsr", "--ratio", "0.5", "--quick", "--strategies", "bk-sdm", "--seeds", "0",
                 "--quiet"], "pruneseek.targets.load.TargetSource.load"),
    "tune": (["tune", "--strategy", "shortgpt", "--model", "tsdsr", "--ratio", "0.5", "--quick", "--trials", "1",
              "--quiet"], "pruneseek.targets.load.TargetSource.load"),
    "export": (["export", "--mask", str(MASK), "--no-measure"], "pruneseek.targets.load.TargetSource.load"),
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_an_unwritable_out_is_refused_in_one_line_before_any_work(name, tmp_path, capsys, monkeypatch):
    args, work = COMMANDS[name]
    monkeypatch.setattr(work, _no_work)
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p).startswith(str(tmp_path)) and mode & os.W_OK
                        else real(p, mode, **kw))  # a read-only folder (root ignores chmod)
    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    assert "is not writable" in _one_line(capsys)
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_retrain_into_an_unwritable_out_is_refused_before_the_teacher_loads(tmp_path, capsys, monkeypatch):
    pruned = tmp_path / "pruned"
    assert main(["export", "--mask", str(MASK), "--out", str(pruned), "--no-measure"]) == 0
    ro = tmp_path / "ro"
    ro.mkdir()
    monkeypatch.setattr("pruneseek.targets.load.TargetSource.load", _no_work)
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p).startswith(str(ro)) and mode & os.W_OK
                        else real(p, mode, **kw))
    capsys.readouterr()
    assert main(["retrain", "--from", str(pruned), "--out", str(ro / "out"), "--steps", "2", "--quiet"]) == 2
    assert "is not writable" in _one_line(capsys) and list(ro.iterdir()) == []


def test_a_folder_that_refuses_new_files_is_caught_by_the_probe(tmp_path, monkeypatch):
    """os.access can say yes where a write fails (a full or network file system): the probe file decides."""
    import tempfile

    from pruneseek.errors import PruneseekError
    from pruneseek.io import check_writable

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(PruneseekError, match="is not writable .*: Read-only file system"):
        check_writable(tmp_path / "out")
    monkeypatch.undo()
    assert check_writable(tmp_path / "out") == tmp_path / "out" and list(tmp_path.iterdir()) == []
