"""Atomic writes and hashing (pruneseek.io)."""
from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

import pruneseek.io as pio
from pruneseek.io import atomic_write_bytes, atomic_write_json, atomic_write_text, file_sha256, json_text


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_write_text_creates_parents(tmp_path):
    target = tmp_path / "a" / "b" / "out.txt"
    assert atomic_write_text(target, "héllo\r\nworld") == target
    assert target.read_bytes() == "héllo\r\nworld".encode()  # exactly as given, no newline translation
    assert _names(target.parent) == ["out.txt"]


def test_write_bytes_overwrites_and_keeps_mode(tmp_path):
    target = tmp_path / "w.bin"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    atomic_write_bytes(target, b"\x00new")
    assert target.read_bytes() == b"\x00new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert _names(tmp_path) == ["w.bin"]


def test_new_file_mode_follows_umask(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_bytes(tmp_path / "n.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "n.bin").stat().st_mode) == 0o640


def test_write_json_pretty_strict_trailing_newline(tmp_path):
    obj = {"a": [1, 2, 3], "b": {"c": [[4, 2], [4, 2]], "d": None}, "e": "ü", "f": [{"g": 1.5}], "h": {}, "i": []}
    target = atomic_write_json(tmp_path / "x.json", obj)
    text = target.read_text(encoding="utf-8")
    assert text.endswith("}\n") and not text.endswith("\n\n")
    assert json.loads(text) == obj
    assert '"a": [1, 2, 3]' in text  # lists of scalars on one line
    assert '"c": [[4, 2], [4, 2]]' in text  # short lists of lists on one line
    assert "ü" in text


def test_json_text_long_nested_lists_one_row_a_line():
    rows = [[0.123456789] * 8] * 3
    text = json_text({"p": rows})
    assert text.count("\n") == 6
    assert json.loads(text) == {"p": rows}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_json_refuses_nan_and_writes_nothing(tmp_path, bad):
    target = tmp_path / "x.json"
    target.write_text("original\n")
    with pytest.raises(ValueError):
        atomic_write_json(target, {"ok": 1, "bad": [1.0, bad]})
    assert target.read_text() == "original\n"
    assert _names(tmp_path) == ["x.json"]
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "new.json", bad)
    assert _names(tmp_path) == ["x.json"]


def test_json_refuses_unserialisable(tmp_path):
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "x.json", {"s": {1, 2}})
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "x.json", {1: "non-string key"})
    assert _names(tmp_path) == []


@pytest.mark.parametrize("where", ["replace", "fsync", "write"])
@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_failure_mid_write_leaves_original_and_no_temp(tmp_path, monkeypatch, where, error):
    target = tmp_path / "keep.json"
    target.write_text('{"original": true}\n')

    def boom(*args, **kwargs):
        raise error

    if where == "replace":
        monkeypatch.setattr(pio.os, "replace", boom)
    elif where == "fsync":
        monkeypatch.setattr(pio.os, "fsync", boom)
    else:
        real_fdopen = os.fdopen

        class Failing:
            def __init__(self, f):
                self.f = f

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.f.close()

            def write(self, data):
                self.f.write(data[:3])  # a partial write, then the failure
                raise error

        monkeypatch.setattr(pio.os, "fdopen", lambda fd, mode: Failing(real_fdopen(fd, mode)))
    with pytest.raises(type(error)):
        atomic_write_json(target, {"new": [1, 2, 3]})
    assert target.read_text() == '{"original": true}\n'
    assert _names(tmp_path) == ["keep.json"]


def test_failure_on_new_file_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(pio.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("nope")))
    with pytest.raises(OSError):
        atomic_write_text(tmp_path / "sub" / "new.txt", "x")
    assert _names(tmp_path / "sub") == []


def test_symlink_target_is_replaced_and_link_kept(tmp_path):
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    atomic_write_text(link, "new")
    assert link.is_symlink()
    assert real.read_text() == "new"


def test_writing_over_a_folder_fails_cleanly(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(OSError):
        atomic_write_text(tmp_path / "d", "x")
    assert _names(tmp_path) == ["d"]


def test_file_sha256(tmp_path):
    data = os.urandom(10_000)
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    assert file_sha256(path, chunk_size=7) == hashlib.sha256(data).hexdigest()
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert file_sha256(empty) == hashlib.sha256(b"").hexdigest()


def test_check_writable_refuses_files_on_the_way_and_creates_nothing(tmp_path, monkeypatch):
    import os

    from pruneseek.errors import PruneseekError
    from pruneseek.io import check_writable

    (tmp_path / "file").write_text("x")
    with pytest.raises(PruneseekError, match="is a file"):
        check_writable(tmp_path / "file")
    with pytest.raises(PruneseekError, match="lies under .*file, which is a file"):
        check_writable(tmp_path / "file" / "a" / "b")
    assert check_writable(tmp_path / "new" / "deep") == tmp_path / "new" / "deep"
    assert not (tmp_path / "new").exists()  # nothing created
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # an unwritable parent (root ignores chmod)
    with pytest.raises(PruneseekError, match="is not writable .*its parent"):
        check_writable(tmp_path / "new")


def test_rescued_writes_elsewhere_and_names_both_places(tmp_path):
    import errno

    from pruneseek.errors import PruneseekError
    from pruneseek.io import atomic_write_json, rescued

    def write(folder):
        if folder == tmp_path / "full":
            raise OSError(errno.ENOSPC, "No space left on device")
        atomic_write_json(folder / "mask.json", {"keep": [1, 2]})

    with pytest.raises(PruneseekError, match=r"could not write the results to .*full \(No space left on device\); "
                                             r"they were saved to (.*) instead") as info:
        rescued(tmp_path / "full", write)
    saved = info.value.args[0].split("saved to ")[1].split(" instead")[0]
    assert json.loads((Path(saved) / "mask.json").read_text()) == {"keep": [1, 2]}
    assert rescued(tmp_path / "fine", write) is None and (tmp_path / "fine" / "mask.json").is_file()


def test_search_into_a_file_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    import pruneseek.latents
    from pruneseek.cli import main

    def no_work(*args, **kwargs):
        raise AssertionError("calibration started before the output folder was checked")

    monkeypatch.setattr(pruneseek.latents, "calibration_latents", no_work)
    (tmp_path / "taken").write_text("not a folder")
    code = main(["search", "--model", "tsdsr", "--ratio", "0.5", "--steps", "600", "--out", str(tmp_path / "taken"),
                 "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "is a file; give a folder" in err, err
    assert (tmp_path / "taken").read_text() == "not a folder"


# ----- whole folders: built aside, swapped in; what a killed swap leaves is cleaned up -----------------------------

def _gone_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_building_folder_swaps_in_and_leaves_no_temporaries(tmp_path):
    from pruneseek.io import building_folder

    out = tmp_path / "model"
    for text in ("first", "second"):
        with building_folder(out) as tmp:
            (tmp / "weights.txt").write_text(text)
        assert (out / "weights.txt").read_text() == text
    with pytest.raises(RuntimeError), building_folder(out) as tmp:
        (tmp / "weights.txt").write_text("half")
        raise RuntimeError("killed")
    assert (out / "weights.txt").read_text() == "second" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_swap_killed_between_its_renames_gives_the_folder_back(tmp_path):
    """Killed after moving the old folder aside and before renaming the new one in: the next run puts the old one
    (and its checkpoint) back, and removes the dead process's temporaries; a live process's are left alone."""
    import socket

    from pruneseek.io import restore_set_aside

    host, dead = socket.gethostname().replace("-", "_"), _gone_pid()
    out = tmp_path / "retrained"
    aside = tmp_path / f".retrained.old-{host}-{dead}-ab12cd34"
    (aside / "previous" / "checkpoint").mkdir(parents=True)
    (aside / "previous" / "checkpoint" / "checkpoint.pt").write_bytes(b"state")
    (tmp_path / f".retrained.tmp-{host}-{dead}-ef56gh78").mkdir()  # the finished but never renamed folder
    live = tmp_path / f".retrained.tmp-{host}-{os.getpid()}-ij90kl12"
    live.mkdir()
    assert restore_set_aside(out)
    assert (out / "checkpoint" / "checkpoint.pt").read_bytes() == b"state"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["retrained", live.name])
    assert not restore_set_aside(out)  # nothing more to do; an existing folder is never replaced


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path):
    import socket

    host = socket.gethostname().replace("-", "_")
    stale = tmp_path / f".mask.json.tmp-{host}-{_gone_pid()}-x1y2z3w4"
    stale.write_text('{"keep": [0')  # half written when SIGKILL came
    mine = tmp_path / f".mask.json.tmp-{host}-{os.getpid()}-a1b2c3d4"  # a live writer's, left alone
    mine.write_text("{}")
    atomic_write_json(tmp_path / "mask.json", {"keep": [0, 1]})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["mask.json", mine.name])
