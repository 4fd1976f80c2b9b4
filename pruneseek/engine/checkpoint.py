"""Exact resume for the search loop: everything a step depends on, saved atomically.

A checkpoint after step ``s`` holds the gate logits (and q), their EMA, the trainable weights (LoRA or
all), the optimiser state, every RNG the loop draws from (the Gumbel generator, torch's global CPU RNG,
CUDA's when used), the step, how many batches were consumed, the loss history and the NaN-guard counters.
Resuming rebuilds the model and data the same way, restores all of that, fast-forwards the batch stream
by the consumed count and continues at ``s + 1`` — so a killed and resumed run ends with the same mask
and, on CPU, bit-identical gates as an uninterrupted one.

A checkpoint also records the *fingerprint* of its run (steps, seed, strategy settings, space, data…);
resuming under different settings is refused with the names of the settings that differ.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from pruneseek.errors import CheckpointError  # noqa: F401 (re-exported)
from pruneseek.fingerprint import refuse_mismatch

FORMAT = "pruneseek.search-checkpoint/v1"
FILE = "checkpoint.pt"



@dataclass
class Checkpointing:
    """Where and how often the loop checkpoints, and whether it resumes.

    ``folder``: holds ``checkpoint.pt``; ``every``: steps between checkpoints (0: only at the end);
    ``resume``: continue from ``folder/checkpoint.pt`` (a missing file is an error); ``fingerprint``:
    JSON-able settings that must match on resume.
    """

    folder: Path
    every: int = 0
    resume: bool = False
    fingerprint: dict = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return Path(self.folder) / FILE



def save_checkpoint(ckpt: Checkpointing, state: dict) -> Path:
    """Write ``state`` with the format and fingerprint, atomically (temporary file, fsync, rename)."""
    from pruneseek.io import atomic_write_bytes

    buf = io.BytesIO()
    torch.save({"format": FORMAT, "fingerprint": ckpt.fingerprint, **state}, buf)
    return atomic_write_bytes(ckpt.path, buf.getvalue())


def load_checkpoint(ckpt: Checkpointing) -> dict:
    """The saved state, after checking the format and that the fingerprint matches this run's."""
    path = ckpt.path
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; start without --resume (or point --resume at the run's folder)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc}); delete it and start over") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a pruneseek search checkpoint (format {state.get('format') if isinstance(state, dict) else None!r})")
    refuse_mismatch(state.get("fingerprint", {}), ckpt.fingerprint, CheckpointError,
                    f"{path} was written by a run with other settings",
                    "resume with the same settings, or start a new run in another folder",
                    labels=("checkpoint", "now"))
    return state


def rng_states(generator: torch.Generator) -> dict[str, Any]:
    states: dict[str, Any] = {"gumbel": generator.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(generator: torch.Generator, states: Mapping[str, Any]) -> None:
    generator.set_state(states["gumbel"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])

