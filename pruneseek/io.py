"""Atomic file writing and hashing.

Every ``atomic_write_*`` helper writes to a temporary file in the target's own folder, flushes and
fsyncs it, then moves it over the target with :func:`os.replace` (atomic on POSIX and Windows). A
reader therefore sees either the old file or the complete new one, never a partial write. On any
exception (including ``KeyboardInterrupt``) the temporary file is removed, the original file, if any,
is left untouched, and the exception propagates. Missing parent folders are created.

A file that already exists keeps its permission bits; a new one gets ``0o666`` minus the umask, as
``open()`` would give it. When the target is a symbolic link, the file it points to is replaced and
the link is kept.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_write_text", "check_writable", "file_sha256", "json_text",
           "rescued"]


def _umask() -> int:
    """The process umask, read without changing it where /proc allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable: fsync the folder (POSIX only; best effort)."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; return the path written."""
    path = Path(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        try:
            f = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            raise
        with f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically, exactly as given (no newline translation)."""
    return atomic_write_bytes(path, text.encode(encoding))


#: A list of short lists is written on one line when it fits in this many characters.
_SHORT_LINE = 100


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def json_text(obj: Any, indent: int = 2) -> str:
    """Strict, pretty JSON with no trailing newline: objects one key a line, lists of scalars on one
    line, lists of such lists on one line when short (block shapes) and one row a line otherwise.

    Raises ``ValueError`` for NaN or infinity (JSON has neither) and ``TypeError`` for values JSON
    cannot hold, before anything is written anywhere.
    """

    def scalar(value: Any) -> str:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"JSON cannot hold {value!r}")
        return json.dumps(value, ensure_ascii=False, allow_nan=False)

    def write(value: Any, level: int) -> str:
        pad, inner = " " * (indent * level), " " * (indent * (level + 1))
        if isinstance(value, dict):
            if not value:
                return "{}"
            items = []
            for key, item in value.items():
                if not isinstance(key, str):
                    raise TypeError(f"JSON object keys must be strings, got {key!r}")
                items.append(f"{inner}{scalar(key)}: {write(item, level + 1)}")
            return "{\n" + ",\n".join(items) + "\n" + pad + "}"
        if isinstance(value, (list, tuple)):
            if all(_is_scalar(v) for v in value):
                return "[" + ", ".join(scalar(v) for v in value) + "]"
            if all(isinstance(v, (list, tuple)) and all(_is_scalar(x) for x in v) for v in value):
                line = "[" + ", ".join(write(v, level + 1) for v in value) + "]"
                if len(pad) + len(line) <= _SHORT_LINE:
                    return line
            return "[\n" + ",\n".join(inner + write(v, level + 1) for v in value) + "\n" + pad + "]"
        if _is_scalar(value):
            return scalar(value)
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")

    return write(obj, 0)


def atomic_write_json(path: str | os.PathLike[str], obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` as strict pretty JSON (see :func:`json_text`) with a trailing newline, atomically.

    The object is serialised before any file is touched, so a value JSON cannot hold (NaN, a set…)
    raises without creating or changing anything.
    """
    return atomic_write_text(path, json_text(obj, indent) + "\n")


def file_sha256(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def check_writable(folder: str | os.PathLike[str], what: str = "--out") -> Path:
    """Refuse, before any long work, an output folder that cannot be written: a path through a file, or a folder
    (or its nearest existing parent, when it does not exist yet) that this process may not write. Nothing is
    created. (A disk that fills up during the run is caught at the end by :func:`rescued`.)"""
    from pruneseek.errors import PruneseekError

    folder = Path(folder)
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        where = "is a file" if probe == folder else f"lies under {probe}, which is a file"
        raise PruneseekError(f"{what} {folder} {where}; give a folder (the outputs go inside it)")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        where = "" if probe == folder else f" (its parent {probe} exists and is not)"
        raise PruneseekError(f"{what} {folder} is not writable{where}; choose a folder you can write, before the run "
                             "starts rather than after it")
    return folder


def rescued(out: Path, write, what: str = "results"):
    """``write(out)``; when that fails with an OS error (disk full, permissions changed, folder removed), ``write``
    the same results into a fresh folder under the system's temporary directory and raise a one-line error that
    names both, so a finished long run never loses its result."""
    from pruneseek.errors import PruneseekError

    try:
        return write(out)
    except OSError as exc:
        fallback = Path(tempfile.mkdtemp(prefix=f"pruneseek-rescued-{Path(out).name}-"))
        try:
            write(fallback)
        except OSError as again:
            raise PruneseekError(f"could not write the {what} to {out} ({exc.strerror or exc}) nor to {fallback} "
                                 f"({again.strerror or again}); free some space and rerun") from None
        raise PruneseekError(f"could not write the {what} to {out} ({exc.strerror or exc}); they were saved to "
                             f"{fallback} instead") from None
