"""Atomic file writing and hashing.

Every ``atomic_write_*`` helper writes to a temporary file in the target's own folder, flushes and
fsyncs it, then moves it over the target with :func:`os.replace` (atomic on POSIX and Windows). A
reader therefore sees either the old file or the complete new one, never a partial write. On any
exception (including ``KeyboardInterrupt``) the temporary file is removed, the original file, if any,
is left untouched, and the exception propagates. Missing parent folders are created. The temporary is
named ``.NAME.tmp-HOST-PID-*``: what a killed process (SIGKILL: no cleanup) left is removed by the next
write of ``NAME`` once that process is gone.

A file that already exists keeps its permission bits; a new one gets ``0o666`` minus the umask, as
``open()`` would give it. When the target is a symbolic link, the file it points to is replaced and
the link is kept.
"""
from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import math
import os
import re
import shutil
import socket
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterator

__all__ = ["as_write_error", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "building_folder",
           "check_buildable", "check_writable", "file_sha256", "json_text", "rescued", "restore_set_aside",
           "write_error_text"]


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
    _remove_dead_temporaries(folder, path.name)  # a killed writer's leftover, never read as the file
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-{_owner()}-", dir=folder)
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
    (or its nearest existing parent, when it does not exist yet) that this process may not write. ``os.access``
    answers for permissions and read-only mounts; an empty probe file, created and removed at once, catches what it
    misses (a full or over-quota disk that cannot take a new file, network file systems). Nothing is left behind.
    (A disk that fills up during the run is caught at the end by :func:`rescued`.)"""
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
    where = "" if probe == folder else f" (its parent {probe} exists and is not)"
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise PruneseekError(f"{what} {folder} is not writable{where}; choose a folder you can write, before the run "
                             "starts rather than after it")
    problem = _probe(probe) if probe.exists() else None
    if problem is not None:
        raise PruneseekError(f"{what} {folder} is not writable{where}: {problem}; choose another folder, before the "
                             "run starts rather than after it")
    return folder


def _probe(folder: Path) -> str | None:
    """Why an empty file cannot be created (and removed) in ``folder``, or None when it can."""
    try:
        fd, name = tempfile.mkstemp(prefix=".pruneseek-probe-", dir=folder)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)
    return None


#: errno values that mean "this output cannot be written here" (the user can fix them: space, permissions, mounts).
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def as_write_error(exc: BaseException) -> OSError | None:
    """``exc`` as an :class:`OSError` when it is a failed write the user can fix (disk full, quota, read-only file
    system, permissions), else None. safetensors reports such failures as ``SafetensorError('... (os error 28)')``."""
    if isinstance(exc, OSError):
        return exc if exc.errno in WRITE_ERRNOS else None
    found = re.search(r"\(os error (\d+)\)", str(exc)) if type(exc).__name__ == "SafetensorError" else None
    if found and int(found.group(1)) in WRITE_ERRNOS:
        code = int(found.group(1))
        return OSError(code, os.strerror(code))
    return None


def write_error_text(exc: OSError, where: str | os.PathLike[str] | None = None) -> str:
    """One line for a failed write: what could not be written, why, and what to do."""
    path = exc.filename or where
    what = f"cannot write {path}" if path else "cannot write the outputs"
    fix = {errno.ENOSPC: "free some space or choose an --out on a disk with room, then rerun",
           errno.EDQUOT: "free some space (disk quota exceeded) or choose another --out, then rerun",
           errno.EFBIG: "choose an --out on a file system that takes large files, then rerun",
           errno.EROFS: "that file system is mounted read-only; choose another --out"}.get(
        exc.errno, "check its permissions or choose a folder you can write")
    return f"{what}: {exc.strerror or exc}; {fix}"


# ----- whole folders: built aside, swapped in -------------------------------------------------------------------
# A folder result (an export, a retrained model) is built in ``.NAME.tmp-HOST-PID-*`` next to ``NAME`` and renamed
# into place; a folder already there is first moved to ``.NAME.old-HOST-PID-*/previous``, then deleted. A process
# killed in between leaves only hidden folders: the next run for the same ``NAME`` removes those of processes that
# are gone and, when ``NAME`` itself is missing, puts a set-aside ``previous`` back (it may hold a checkpoint).


@contextlib.contextmanager
def building_folder(out: Path) -> Iterator[Path]:
    """A temporary folder next to ``out`` to build a folder result in: renamed into place when the block ends,
    removed (and ``out`` untouched) when it raises, so an interrupted run never leaves a half folder. A failed
    write (disk full...) propagates as an ``OSError`` that names ``out``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    restore_set_aside(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{_owner()}-", dir=out.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; the result is an ordinary folder
    try:
        yield tmp
        _swap_in(tmp, out)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        error = as_write_error(exc)
        if error is not None and error is not exc:  # safetensors' report of a full disk: an OSError naming out
            raise OSError(error.errno, error.strerror, str(out)) from None
        raise


def check_buildable(out: str | os.PathLike[str]) -> Path:
    """:func:`check_writable` for a folder result made by :func:`building_folder`: ``out`` itself and the folder
    holding it, where the result is built and renamed into place."""
    out = check_writable(out)
    check_writable(out.absolute().parent, "the folder holding --out")
    return out


def _swap_in(tmp: Path, out: Path) -> None:
    old = None
    if os.path.lexists(out):
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-{_owner()}-", dir=out.parent))
        os.replace(out, old / "previous")
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def restore_set_aside(out: Path) -> bool:
    """Clean up after processes killed while swapping ``out``: remove their temporaries and, when ``out`` is
    missing, move the newest set-aside ``previous`` back to it. True when something was put back."""
    out = Path(out)
    if not out.parent.is_dir():
        return False
    aside = sorted(out.parent.glob(f".{glob.escape(out.name)}.old-*/previous"), key=lambda p: p.stat().st_mtime)
    aside = [p for p in aside if _owner_gone(p.parent.name)]
    restored = bool(aside) and not os.path.lexists(out)
    if restored:
        os.replace(aside[-1], out)
    _remove_dead_temporaries(out.parent, out.name)
    return restored


def _remove_dead_temporaries(folder: Path, name: str) -> None:
    """Remove ``.NAME.tmp-*`` / ``.NAME.old-*`` files and folders in ``folder`` whose writing process is gone."""
    for kind in ("tmp", "old"):
        for p in folder.glob(f".{glob.escape(name)}.{kind}-*"):
            if not _owner_gone(p.name):
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    p.unlink()


def _owner() -> str:
    return f"{socket.gethostname().replace('-', '_')}-{os.getpid()}"


def _owner_gone(name: str) -> bool:
    """Whether the process named in a ``.NAME.tmp-HOST-PID-*`` / ``.old-`` folder name is gone (this host only)."""
    found = re.search(r"\.(?:tmp|old)-([^-]+)-(\d+)-[^-]*$", name)
    if found is None or found.group(1) != socket.gethostname().replace("-", "_"):
        return False
    try:
        os.kill(int(found.group(2)), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def rescued(out: Path, write, what: str = "results"):
    """``write(out)``; when that fails with a write error (disk full, permissions changed, folder removed; see
    :func:`as_write_error`), remove what the failed attempt added to ``out`` (its files would be a partial set that
    looks finished), ``write`` the same results into a fresh folder under the system's temporary directory and raise
    a one-line error that names both, so a finished long run never loses its result."""
    from pruneseek.errors import PruneseekError

    before = _entries(out)
    try:
        return write(out)
    except Exception as raised:  # noqa: BLE001 - only write errors are rescued, the rest propagates
        exc = _rescuable(raised)
        if exc is None:
            raise
    _remove_new(out, before)
    why = exc.strerror or exc
    fallback = Path(tempfile.mkdtemp(prefix=f"pruneseek-rescued-{Path(out).name}-"))
    try:
        write(fallback)
    except Exception as raised:  # noqa: BLE001
        again = _rescuable(raised)
        if again is None:
            raise
        shutil.rmtree(fallback, ignore_errors=True)
        raise PruneseekError(f"could not write the {what} to {out} ({why}) nor to {fallback} "
                             f"({again.strerror or again}); free some space and rerun") from None
    raise PruneseekError(f"could not write the {what} to {out} ({why}); they were saved to {fallback} instead "
                         "(nothing partial was left in the output folder)") from None


def _rescuable(exc: BaseException) -> OSError | None:
    """Any OS error (a folder removed mid-run counts too), or safetensors' report of one; else None."""
    return exc if isinstance(exc, OSError) else as_write_error(exc)


def _entries(folder: Path) -> set[str] | None:
    """The names in ``folder``: None when it does not exist, everything (``{"*"}``) when it cannot be listed."""
    if not os.path.lexists(folder):
        return None
    try:
        return set(os.listdir(folder))
    except OSError:
        return {"*"}


def _remove_new(folder: Path, before: set[str] | None) -> None:
    """Remove what appeared in ``folder`` since ``before`` was listed (the folder itself when it did not exist)."""
    if before is None:
        shutil.rmtree(folder, ignore_errors=True)
        return
    if "*" in before:
        return
    for name in (_entries(folder) or set()) - before:
        path = Path(folder) / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
