"""Helpers shared by the tests that kill real `pruneseek` processes or need a folder of small images."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import torch


def kill_after_checkpoint(args: list[str], checkpoint: Path, env: dict, timeout: float = 240) -> None:
    """Start ``python -m pruneseek *args``, SIGKILL it as soon as ``checkpoint`` exists; fail if it never does."""
    proc = subprocess.Popen([sys.executable, "-m", "pruneseek", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert checkpoint.exists(), proc.stderr.read().decode()


def write_images(folder: Path, count: int = 2, height: int = 40, width: int = 48) -> Path:
    """``count`` seeded random RGB PNGs in ``folder`` (created)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        arr = (torch.rand(height, width, 3, generator=torch.Generator().manual_seed(i)) * 255).to(torch.uint8).numpy()
        Image.fromarray(arr).save(folder / f"img{i}.png")
    return folder
