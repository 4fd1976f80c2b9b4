"""Depth-pruning strategies behind one interface and one registry (docs/design.md §6).

Learned: ``tinyfusion``, ``tinysr``. Rule-based baselines: ``random-min``, ``shortgpt``, ``flux-lite``,
``sensitivity``, ``snapfusion``, ``bk-sdm``, ``optuna-tpe``; ``race`` (pruneseek's own: successive halving over
candidate masks scored after short recoveries on the validation split); ``annealing`` (PocketSR) takes the mask of a
rule-based strategy and declares an annealed removal for the recovery training. Bundled presets of
every strategy's settings live in ``strategies/*.toml`` (:mod:`pruneseek.strategies.presets`).

A strategy is a :class:`~pruneseek.strategies.base.Strategy` subclass registered under a name with
:func:`register`; :func:`get_strategy` builds one with its settings, :func:`available` lists the names.
Strategies use the engine; the engine never imports strategies.
"""
from __future__ import annotations

from pruneseek.errors import StrategyError  # noqa: F401 (re-exported)
from pruneseek.strategies.registry import available, get_strategy, register, strategy_class
from pruneseek.strategies.base import SearchProblem, Strategy
from pruneseek.strategies import (  # noqa: F401 (each module registers its strategy)
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
    race,
)

__all__ = [
    "SearchProblem", "Strategy", "StrategyError", "available", "get_strategy", "register", "strategy_class",
]
