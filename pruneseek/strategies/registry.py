"""The strategy registry: names → :class:`~pruneseek.strategies.base.Strategy` subclasses."""
from __future__ import annotations

from typing import Any, Callable

from pruneseek.errors import StrategyError

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
