"""Errors a user can cause and fix: every error class pruneseek raises, in one module.

Every error pruneseek raises on bad input is a :class:`PruneseekError` whose message names the
problem and the fix. The CLI prints it as one line on stderr and exits with status 2. The classes
live here (not in the packages that raise them) so that any module can raise any of them without
importing a package ``__init__``.
"""
from __future__ import annotations


def first_line(exc: BaseException, limit: int | None = None, default: str | None = None) -> str:
    """The first non-blank line of ``str(exc)`` (at most ``limit`` characters), for a one-line error that quotes a
    library's message; ``default`` (the exception's class name unless given) when the message is blank."""
    lines = str(exc).strip().splitlines()
    line = lines[0] if lines else (type(exc).__name__ if default is None else default)
    return line if limit is None else line[:limit]


class PruneseekError(ValueError):
    """Bad input: the message says what is wrong and how to fix it."""


class SpaceError(PruneseekError):
    """A search space, ratio or topology that cannot be built as asked."""


class PresetError(PruneseekError):
    """A preset file that is missing or malformed (the message names the file and the field)."""


class MaskError(PruneseekError):
    """A layer mask that is not one 0/1 value per layer of the model (or keeps no layer)."""


class MaskFileError(PruneseekError):
    """A mask file (or mask) that is malformed, or used with the wrong model."""


class EngineError(PruneseekError):
    """A mask search that cannot run as configured, or that had to stop (the message says why)."""


class NonFiniteLossError(EngineError):
    """Too many consecutive steps with a non-finite loss or gradient; ``result`` holds the last good state."""

    def __init__(self, message: str, result=None):
        super().__init__(message)
        self.result = result


class CheckpointError(EngineError):
    """A checkpoint that is missing, unreadable or from a run with other settings."""


class StrategyError(PruneseekError):
    """An unknown strategy name or a bad strategy setting."""


class StrategyPresetError(StrategyError, PresetError):
    """A strategy preset file that is missing or malformed (the message names the file and the field)."""


class TargetError(PruneseekError):
    """Model files that are missing or do not match each other (the message names the file and the fix)."""


class MiniWeightsError(PruneseekError):
    """The tsdsr-mini weights file is missing or does not match this version's architecture."""


class DataError(PruneseekError):
    """A data folder or image file that cannot be used (the message names it)."""


class RecoveryError(PruneseekError):
    """A recovery or evaluation that cannot run as asked (bad mask, budget or data)."""


class ExportError(PruneseekError):
    """A mask, checkpoint or output folder that cannot be exported (the message names the fix)."""


class LandscapeError(PruneseekError):
    """A landscape or landscape family that cannot be built as asked."""


class CompareError(PruneseekError):
    """A comparison that cannot run or continue as asked (the message says why and what to do)."""


class TuneError(PruneseekError):
    """A tuning run that cannot start or continue as asked (the message says why and what to do)."""
