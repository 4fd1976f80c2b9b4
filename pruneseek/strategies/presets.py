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
from typing import Any

from pruneseek.errors import PresetError
from pruneseek.resources import bundled_dir
from pruneseek.strategies import StrategyError, available, get_strategy, strategy_class

_TOP_KEYS = ("name", "source", "description", "settings")


class StrategyPresetError(StrategyError, PresetError):
    """A strategy preset file that is missing or malformed (the message names the file and the field)."""


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
