"""Fingerprints of runs: a stable hash of a settings dict, and what differs between two of them.

A long run (a search checkpoint, a comparison's rows, a tuning study, an export folder) records the
settings its numbers depend on. Continuing it under other settings would mix incompatible results, so
each refuses and names the settings that differ. The three pieces here are the one implementation:

- :func:`jsonable` — the settings as plain JSON values (tuples → lists, keys sorted), so a dict read
  back from a file compares equal to the one that was written;
- :func:`settings_hash` — a short hex digest of those values;
- :func:`differences` — the dotted names of the settings that differ, each with both values;
- :func:`refuse_mismatch` — raise the caller's error class naming those differences and the fix.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

ABSENT = "<absent>"


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON values (what a JSON round trip gives back); other objects by ``repr``."""
    return json.loads(json.dumps(value, sort_keys=True, default=repr))


def settings_hash(settings: Mapping[str, Any], length: int = 16) -> str:
    """A hex digest of the settings' canonical JSON (sorted keys), ``length`` characters long."""
    text = json.dumps(settings, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def differences(old: Any, new: Any, prefix: str = "", labels: tuple[str, str] | None = None) -> list[str]:
    """``"name (old → new)"`` for every setting that differs; nested dicts give dotted names.

    A key present on one side only shows ``<absent>`` on the other. ``labels`` (e.g.
    ``("checkpoint", "now")``) writes ``"name (checkpoint old, now new)"`` instead of the arrow.
    """
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            out += differences(old.get(key, ABSENT), new.get(key, ABSENT), f"{prefix}{key}.", labels)
        return out
    if old == new:
        return []
    name = prefix[:-1] or "(value)"
    if labels:
        return [f"{name} ({labels[0]} {old!r}, {labels[1]} {new!r})"]
    return [f"{name} ({old!r} → {new!r})"]


def refuse_mismatch(old: Mapping[str, Any], new: Mapping[str, Any], error: type[Exception], what: str, fix: str,
                    labels: tuple[str, str] | None = None, most: int = 6) -> None:
    """Raise ``error("{what} ...: {differences}. {fix}")`` when ``old`` and ``new`` differ; else return."""
    diffs = differences(jsonable(old), jsonable(new), labels=labels)
    if not diffs:
        return
    shown = "; ".join(diffs[:most]) + (" …" if len(diffs) > most else "")
    raise error(f"{what} (changed: {shown}); {fix}")
