"""Strategy presets: TOML files in ``strategies/`` naming a strategy and its settings, by name or path.

A preset holds the strategy's registered ``name``, a ``source`` (the paper) and a ``[settings]`` table;
the bundled ones (``strategies/<name>.toml``, one per registered strategy) equal the class defaults, the
papers' settings. TOML has no null: a setting whose default is ``None`` (e.g. ``lora_targets``) is simply
left out; nested settings (the τ schedule) are tables::

    name = "shortgpt"
    source = "Men et al. ShortGPT ... arXiv:2403.03853"
    description = "optional free text"

    [settings]
    score_batches = 8
    scope = "global"
    keep_last = true

A user preset may give any subset of the settings; the rest keep their defaults. A malformed preset is
a :class:`StrategyPresetError` naming the file and the field.
"""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Sequence

from pruneseek.resources import bundled_dir
from pruneseek.strategies.registry import available, get_strategy, strategy_class
from pruneseek.errors import StrategyError, StrategyPresetError

_TOP_KEYS = ("name", "source", "description", "settings")



def strategy_presets_dir() -> Path:
    return bundled_dir("strategies")


def list_strategy_presets() -> list[str]:
    """Names of the bundled strategy presets, sorted."""
    return sorted(p.stem for p in strategy_presets_dir().glob("*.toml"))


def is_preset_path(text: str | Path) -> bool:
    """True when ``text`` names a preset file rather than a registered strategy (``.toml`` or an existing file)."""
    text = str(text)
    return text.endswith(".toml") or Path(text).is_file()


def _field(path: Path, name: str, message: str) -> StrategyPresetError:
    return StrategyPresetError(f"{path}: field '{name}': {message}")


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", dict: "a table",
            list: "a list"}.get(type(value), type(value).__name__)


def _check_value(path: Path, key: str, value: Any, default: Any) -> Any:
    """``value`` for a setting whose default is ``default``: same kind (ints accepted for floats)."""
    if default is None:
        return value
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise _field(path, f"settings.{key}", f"must be {_kind(default)} like its default {default!r}, got {value!r}")
    return value


def _resolve(name_or_path: str | Path) -> Path:
    text = str(name_or_path)
    if is_preset_path(text):
        path = Path(text)
        if not path.is_file():
            raise StrategyPresetError(f"{path}: no such strategy preset file")
        return path
    path = strategy_presets_dir() / f"{text}.toml"
    if not path.is_file():
        raise StrategyPresetError(
            f"unknown strategy preset {text!r}; bundled presets: {', '.join(list_strategy_presets())} "
            "(or give a path to a .toml file)"
        )
    return path


def load_strategy_preset(name_or_path: str | Path) -> tuple[str, dict[str, Any]]:
    """``(strategy name, settings)`` from a bundled preset name or a ``.toml`` path; settings as the file gives them."""
    path = _resolve(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise StrategyPresetError(f"{path}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - set(_TOP_KEYS))
    if unknown:
        raise _field(path, unknown[0], f"unknown field; a strategy preset has {list(_TOP_KEYS)}")
    if "name" not in data:
        raise _field(path, "name", f"missing; name the strategy, one of {', '.join(available())}")
    name = data["name"]
    if not isinstance(name, str) or name not in available():
        raise _field(path, "name", f"{name!r} is not a registered strategy; available: {', '.join(available())}")
    for text in ("source", "description"):
        if text in data and not isinstance(data[text], str):
            raise _field(path, text, f"must be a string, got {data[text]!r}")
    settings = data.get("settings", {})
    if not isinstance(settings, dict):
        raise _field(path, "settings", f"must be a table of the {name} strategy's settings, got {settings!r}")
    defaults = strategy_class(name).defaults
    out = {}
    for key, value in settings.items():
        if key not in defaults:
            known = ", ".join(sorted(defaults)) or "none"
            raise _field(path, f"settings.{key}", f"unknown setting of {name}; its settings are {known}")
        out[key] = _check_value(path, key, value, defaults[key])
    try:
        get_strategy(name, **out)
    except StrategyError as exc:
        raise _field(path, "settings", str(exc)) from None
    return name, out


def strategy_from_preset(name_or_path: str | Path, **overrides: Any):
    """A strategy built from a preset, with ``overrides`` on top of the file's settings."""
    name, settings = load_strategy_preset(name_or_path)
    return get_strategy(name, **{**settings, **overrides})


def preset_settings(name: str) -> dict[str, Any]:
    """A strategy's defaults as a bundled preset writes them: ``None`` values left out (TOML has no null)."""
    return {k: v for k, v in strategy_class(name).defaults.items() if v is not None}


# ----- writing presets -------------------------------------------------------------------------------------------

_BARE_KEY = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


def _toml_key(key: str) -> str:
    """A TOML key: bare when it is made of letters, digits, ``_`` and ``-``; else a quoted basic string."""
    if not isinstance(key, str):
        raise StrategyPresetError(f"a preset's keys are strings, got {key!r}")
    return key if key and set(key) <= _BARE_KEY else _toml_string(key)


def _toml_string(text: str) -> str:
    """A TOML basic string: quote, backslash and the control characters TOML forbids are escaped (TOML 1.0 §String)."""
    short = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
    out = []
    for ch in text:
        if ch in short:
            out.append(short[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_scalar(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)  # shortest round-tripping form; 'inf' and 'nan' are TOML floats too
        return text if any(c in text for c in ".eEn") else text + ".0"
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (list, tuple)):
        if any(isinstance(v, (dict, list, tuple)) or v is None for v in value):
            raise StrategyPresetError(f"setting {where}: a preset list holds scalars only, got {value!r}")
        return "[" + ", ".join(_toml_scalar(v, where) for v in value) + "]"
    raise StrategyPresetError(
        f"setting {where}: cannot write {type(value).__name__} {value!r} to a TOML preset (booleans, numbers, "
        "strings, lists of scalars and tables only)"
    )


def _table_lines(header: str, table: dict[str, Any], left_out: list[str]) -> list[str]:
    """``[header]`` with its scalar keys, then its sub-tables (TOML needs the scalars first); ``None`` is skipped
    and its dotted name added to ``left_out``."""
    lines = [f"[{header}]"]
    tables = []
    for key, value in table.items():
        dotted = f"{header}.{_toml_key(key)}"
        if value is None:
            left_out.append(dotted.split(".", 1)[1])
        elif isinstance(value, dict):
            tables.append((dotted, value))
        else:
            lines.append(f"{_toml_key(key)} = {_toml_scalar(value, dotted)}")
    for dotted, value in tables:
        lines += [""] + _table_lines(dotted, value, left_out)
    return lines


def preset_text(
    name: str,
    settings: dict[str, Any],
    source: str | None = None,
    comment_lines: Sequence[str] = (),
    description: str | None = None,
) -> str:
    """The TOML text of a strategy preset in the bundled files' layout (module docstring): ``comment_lines`` as
    ``#`` lines, a line naming the settings left out because they are ``None`` (TOML has no null), ``name``,
    ``source`` (default: the strategy's), ``description``, then ``[settings]`` with nested tables last.

    Values may be booleans, integers, floats, strings, lists of those and (nested) dicts of the same; anything
    else is a :class:`StrategyPresetError`. :func:`load_strategy_preset` reads the text back to ``settings``
    minus the ``None`` entries.
    """
    cls = strategy_class(name)
    left_out: list[str] = []
    body = _table_lines("settings", dict(settings), left_out)
    lines = [f"# {line}".rstrip() for text in comment_lines for line in str(text).splitlines() or [""]]
    if left_out:
        lines.append(f"# Left out (default None, TOML has no null): {', '.join(left_out)}.")
    lines.append(f"name = {_toml_string(name)}")
    lines.append(f"source = {_toml_string(cls.source if source is None else source)}")
    if description is not None:
        lines.append(f"description = {_toml_string(description)}")
    return "\n".join(lines + [""] + body) + "\n"


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, tuple):
        return list(value)
    return value


def save_strategy_preset(
    path: str | Path,
    name: str,
    settings: dict[str, Any],
    source: str | None = None,
    comment_lines: Sequence[str] = (),
    description: str | None = None,
) -> Path:
    """Write the preset of strategy ``name`` with ``settings`` to ``path`` atomically (:func:`preset_text`).

    The settings are checked first: every key must be a setting of the strategy, the strategy must accept
    them, and the text must parse back to them; a preset that would not load is never written.
    """
    from pruneseek.io import atomic_write_text

    path = Path(path)
    defaults = strategy_class(name).defaults
    unknown = sorted(set(settings) - set(defaults))
    if unknown:
        raise StrategyPresetError(f"{path}: {name} has no setting(s) {', '.join(unknown)}; its settings are "
                                  f"{', '.join(sorted(defaults)) or 'none'}")
    get_strategy(name, **settings)
    text = preset_text(name, settings, source, comment_lines, description)
    parsed = tomllib.loads(text).get("settings", {})
    if parsed != _without_none(dict(settings)):
        raise StrategyPresetError(f"{path}: the settings do not survive TOML unchanged ({parsed!r}); not written")
    return atomic_write_text(path, text)
