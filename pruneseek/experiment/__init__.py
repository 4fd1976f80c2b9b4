"""Experiments as a library: a search, a comparison row, a comparison and a tuning study from typed settings.

The layer between the commands and the strategies/engine (imports flow commands → experiment → strategies →
engine → spaces):

- :mod:`~pruneseek.experiment.settings` — the typed settings (:class:`SearchSettings`, :class:`Budget`,
  :class:`CompareSettings`, :class:`TuneSettings`);
- :mod:`~pruneseek.experiment.strategy` — a strategy's settings for a run (one merge rule for every command);
- :mod:`~pruneseek.experiment.search` — :func:`run_search_experiment`: target, problem, search, mask file;
- :mod:`~pruneseek.experiment.compare` — :func:`run_row` ("run strategy S with seed k and score it") and
  :func:`run_comparison`;
- :mod:`~pruneseek.experiment.tune` — :func:`run_tuning`: an optuna study whose trials are comparison rows;
- :mod:`~pruneseek.experiment.plots` — the loss curve and the comparison's figures.
"""
from __future__ import annotations

from pruneseek.experiment.settings import Budget, CompareSettings, SearchSettings, TuneSettings

__all__ = ["Budget", "CompareSettings", "SearchSettings", "TuneSettings"]
