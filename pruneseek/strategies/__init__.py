"""Depth-pruning strategies behind one interface and one registry (SPEC.md §6).

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


def get_strategy(name: str, **settings: Any):
    """A new instance of the strategy ``name`` with ``settings`` overriding its defaults."""
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise StrategyError(f"unknown strategy {name!r}; available: {', '.join(available()) or 'none'}") from None
    return cls(**settings)


from pruneseek.strategies.base import SearchProblem, Strategy  # noqa: E402
from pruneseek.strategies import tinyfusion, tinysr  # noqa: E402,F401

__all__ = ["SearchProblem", "Strategy", "StrategyError", "available", "get_strategy", "register"]
