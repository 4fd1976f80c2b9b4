"""Errors a user can cause and fix.

Every error pruneseek raises on bad input is a :class:`PruneseekError` whose message names the
problem and the fix. The CLI prints it as one line on stderr and exits with status 2.
"""
from __future__ import annotations


class PruneseekError(ValueError):
    """Bad input: the message says what is wrong and how to fix it."""


class SpaceError(PruneseekError):
    """A search space, ratio or topology that cannot be built as asked."""


class PresetError(PruneseekError):
    """A preset file that is missing or malformed (the message names the file and the field)."""
