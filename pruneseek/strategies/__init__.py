"""Depth-pruning strategies behind one interface and one registry (SPEC.md §6).

Learned: ``tinyfusion``, ``tinysr``. Rule-based baselines: ``random-min``, ``shortgpt``, ``flux-lite``,
``sensitivity``, ``snapfusion``, ``bk-sdm``, ``optuna-tpe``; ``annealing`` (PocketSR) takes the mask of a
rule-based strategy and declares an annealed removal for the recovery training. Bundled presets of
every strategy's settings live in ``strategies/*.toml`` (:mod:`pruneseek.strategies.presets`).

A strategy is a :class:`~pruneseek.strategies.base.Strategy` subclass registered under a name with
:func:`register`; :func:`get_strategy` builds one with its settings, :func:`available` lists the names.
Strategies use the engine; the engine never imports strategies.
"""
from __future__ import annotations

from typing import Any, Callable

from pruneseek.errors import PruneseekError


class StrategyError(PruneseekError):
    """An unknown strategy name or a bad strategy setting."""


_REGISTRY: dict[str, type] = {}


def register(name: str) -> Callable[[type], type]:
    """Class decorator: make a strategy available under ``name`` (and set its ``name``)."""

    def decorate(cls: type) -> type:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise StrategyError(f"a strategy named {name!r} is already registered ({_REGISTRY[name].__qualname__})")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def available() -> list[str]:
    """Registered strategy names, sorted."""
    return sorted(_REGISTRY)


def strategy_class(name: str) -> type:
    """The class registered under ``name`` (its ``defaults`` say which settings it takes)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise StrategyError(
            f"unknown strategy {name!r}; available: {', '.join(available()) or 'none'} "
            "(or give a strategy preset .toml path)"
        ) from None


def get_strategy(name: str, **settings: Any):
    """A new instance of the strategy ``name`` with ``settings`` overriding its defaults."""
    return strategy_class(name)(**settings)


from pruneseek.strategies.base import SearchProblem, Strategy  # noqa: E402
from pruneseek.strategies import (  # noqa: E402,F401
    tinyfusion,
    tinysr,
    random_min,
    shortgpt,
    flux_lite,
    sensitivity,
    snapfusion,
    bk_sdm,
    optuna_tpe,
    annealing,
)

__all__ = [
    "SearchProblem", "Strategy", "StrategyError", "available", "get_strategy", "register", "strategy_class",
]
