"""Where the data folders bundled with pruneseek live (``search_spaces/``, ``strategies/``).

In a source checkout or an editable install they are the top-level folders of the repository; in a
wheel they are copied to ``pruneseek/_bundled/<name>`` (see ``[tool.hatch.build]`` in pyproject.toml).
"""
from __future__ import annotations

from pathlib import Path

from pruneseek.errors import PresetError

_PACKAGE = Path(__file__).resolve().parent


def bundled_dir(name: str) -> Path:
    """The bundled data folder ``name``; a clear error if this installation lacks it."""
    for candidate in (_PACKAGE / "_bundled" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise PresetError(f"the bundled folder '{name}/' is missing from this installation of pruneseek; reinstall it")
