"""``--nproc N``: start N copies of a pruneseek command as one ``torch.distributed`` job on this machine.

Each process gets the environment ``torchrun --standalone --nproc-per-node N`` would give it (``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``), so the command
runs exactly as under ``torchrun --nproc-per-node N -m pruneseek …``; the difference is what a user sees
when a process fails: its one-line error and the exit status, not a launcher traceback. If one process
fails the others are stopped. CPU threads are split between the processes unless ``OMP_NUM_THREADS`` is set.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import Sequence

from pruneseek.errors import PruneseekError

#: Environment variables torchrun sets; their presence means "this process is already one rank of a job".
RANK_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def under_launcher() -> bool:
    """Whether this process is a rank of a torchrun (or ``--nproc``) job."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def without_option(argv: Sequence[str], option: str) -> list[str]:
    """``argv`` with ``option VALUE`` and ``option=VALUE`` removed."""
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == option:
            skip = True
        elif not item.startswith(option + "="):
            out.append(item)
    return out


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(argv: Sequence[str], nproc: int, poll_seconds: float = 0.2) -> int:
    """Run ``python -m pruneseek *argv`` as ``nproc`` ranks; the exit status is the first failure's, else 0."""
    if nproc < 2:
        raise PruneseekError(f"--nproc launches 2 or more processes, got {nproc}")
    port = free_port()
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // nproc))
    procs = []
    for rank in range(nproc):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(nproc),
                   LOCAL_WORLD_SIZE=str(nproc), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                   OMP_NUM_THREADS=threads)
        procs.append(subprocess.Popen([sys.executable, "-m", "pruneseek", *argv], env=env))
    status = 0
    try:
        while procs:
            for p in list(procs):
                rc = p.poll()
                if rc is None:
                    continue
                procs.remove(p)
                if rc != 0 and status == 0:
                    status = rc
                    for other in procs:  # one rank failed: the others would wait for it forever
                        other.send_signal(signal.SIGTERM)
            time.sleep(poll_seconds)
    except KeyboardInterrupt:
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            p.wait()
        raise
    return status
