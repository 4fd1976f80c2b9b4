"""``optuna-tpe``: black-box search over the block-factored space with optuna's TPE sampler.

Source: J. Bergstra, R. Bardenet, Y. Bengio, B. Kégl, "Algorithms for Hyper-Parameter Optimization",
NeurIPS 2011 (the Tree-structured Parzen Estimator); T. Akiba, S. Sano, T. Yanase, T. Ohta, M. Koyama,
"Optuna: A Next-generation Hyperparameter Optimization Framework", KDD 2019 (``optuna.samplers.TPESampler``).
A perturbation-family baseline beside random-min: the same objective, searched adaptively.

Rule. One categorical parameter per block j over its option indices 0..C(B_j, s_j) − 1 (the rows of
``space.options(j)``); objective = the calibration loss of the mask those options make (no training, the
same calibration batches throughout); ``TPESampler(seed=seed)``, ``n_trials`` trials (default 100) in an
in-memory study; the best trial's mask is the decision, so it always lies in the search space. A mask
tried again is scored once. optuna is imported only when the strategy runs; its per-trial log lines are
silenced for the run.
"""
from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm

from pruneseek import recipes
from pruneseek.engine import SearchResult
from pruneseek.errors import StrategyError
from pruneseek.strategies.registry import register
from pruneseek.strategies.base import SearchProblem
from pruneseek.strategies.scoring import MaskLossSearch


def import_optuna() -> Any:
    """optuna, or a StrategyError that says how to install it."""
    try:
        import optuna
    except ImportError:
        raise StrategyError(
            "the optuna-tpe strategy needs optuna, which is not installed; install it with "
            "pip install 'optuna>=4,<6' (it is a dependency of pruneseek)"
        ) from None
    return optuna


@register("optuna-tpe")
class OptunaTPE(MaskLossSearch):
    """TPE over per-block option indices; objective = calibration loss; the best trial's mask."""

    source = (
        "Bergstra et al. Algorithms for Hyper-Parameter Optimization. NeurIPS 2011 (TPE); Akiba et al. Optuna. "
        "KDD 2019 (optuna.samplers.TPESampler)"
    )
    defaults = {"n_trials": 100, "score_batches": recipes.SCORING["score_batches"]}
    budget = "n_trials"

    def search(self, problem: SearchProblem, seed: int = 0) -> SearchResult:
        optuna = import_optuna()
        space = problem.space
        losses = self.mask_losses(problem)
        bar = tqdm(total=self.settings["n_trials"], desc=self.name, disable=not problem.progress, leave=False)

        def objective(trial) -> float:
            ranks = tuple(
                trial.suggest_categorical(f"block_{j}", list(range(b.num_options))) for j, b in enumerate(space.blocks)
            )
            loss = losses(ranks, lambda: space.unrank(ranks))
            bar.update(1)
            return loss

        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
            study.optimize(objective, n_trials=self.settings["n_trials"])
        finally:
            optuna.logging.set_verbosity(verbosity)
            bar.close()
        best = study.best_trial.params
        mask = space.unrank([best[f"block_{j}"] for j in range(space.num_blocks)])
        return losses.result(self, seed, mask, study.best_value)
