"""A strategy's settings for a run: class defaults < target and run-length defaults < preset file < flags.

``pruneseek search``, ``compare`` and ``tune`` all build their strategy here, so the same strategy name and
run length give the same settings in every command. Display options (progress bars) are not settings: they
travel on the :class:`~pruneseek.strategies.base.SearchProblem`.
"""
from __future__ import annotations

from typing import Any

from pruneseek import recipes
from pruneseek.errors import StrategyError
from pruneseek.strategies.presets import is_preset_path, load_strategy_preset
from pruneseek.strategies.registry import available, get_strategy, strategy_class


def strategy_settings(strategy: str, steps: int, *, mini: bool = True, rule: str | None = None,
                      mode: str | None = None, ema_decay: float | None = None, quick: bool = False
                      ) -> tuple[str, dict[str, Any]]:
    """The strategy's registered name and settings (``strategy``: a name or a preset ``.toml`` path).

    On the bundled miniature (``mini``) the learned strategies take :data:`pruneseek.recipes.MINI_SEARCH`. The EMA
    decay follows the run length (:func:`pruneseek.recipes.ema_decay_for`) unless a preset or
    ``ema_decay`` sets it; ``rule``/``mode``/``ema_decay`` for a strategy without that setting are an error;
    ``quick`` shrinks the rule-based strategies' budgets (:data:`pruneseek.recipes.QUICK_STRATEGY_SETTINGS`).
    """
    if is_preset_path(strategy):
        name, from_file = load_strategy_preset(strategy)
        from_file.pop("progress", None)  # a display option; presets saved before it left the settings carry it
    else:
        name, from_file = strategy, {}
    defaults = strategy_class(name).defaults
    settings: dict[str, Any] = {k: v for k, v in recipes.MINI_SEARCH.items() if k in defaults} if mini else {}
    if "ema_decay" in defaults:
        settings["ema_decay"] = recipes.ema_decay_for(steps)
    settings.update(from_file)
    for flag, key, value in (("--rule", "rule", rule), ("--mode", "mode", mode), ("--ema-decay", "ema_decay", ema_decay)):
        if value is None:
            continue
        if key not in defaults:
            having = ", ".join(n for n in available() if key in strategy_class(n).defaults)
            raise StrategyError(f"{flag} applies to strategies with a '{key}' setting ({having}), not to {name}")
        settings[key] = value
    if "ema_decay" in settings and not 0 <= settings["ema_decay"] < 1:
        raise StrategyError(f"--ema-decay must lie in [0, 1), got {settings['ema_decay']}")
    if quick:
        settings.update(_quick(defaults))
        if "rule_settings" in defaults:
            settings["rule_settings"] = {**settings.get("rule_settings", {}), **recipes.QUICK_STRATEGY_SETTINGS}
        if "select_settings" in defaults:
            select = strategy_class(settings.get("select", defaults["select"]))
            settings["select_settings"] = {**settings.get("select_settings", {}), **_quick(select.defaults)}
    return name, settings


def _quick(defaults: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in recipes.QUICK_STRATEGY_SETTINGS.items() if k in defaults}


def build_strategy(strategy: str, steps: int, *, quick: bool = False, overrides: dict[str, Any] | None = None,
                   **flags: Any):
    """The strategy as :func:`strategy_settings` sets it up, with ``overrides`` (e.g. tuned settings) on top."""
    name, settings = strategy_settings(strategy, steps, quick=quick, **flags)
    return get_strategy(name, **{**settings, **(overrides or {})})


def candidate_scorer(teacher, data: dict, perceptual, batch: int = recipes.RECOVERY["batch"],
                     lr: float = recipes.RECOVERY["lr"], quick: bool = False):
    """The ``candidate_score`` of a search problem (strategies that race masks): short recoveries of ``teacher``
    on ``data``, scored on the validation split (:data:`pruneseek.recipes.RACE`; one crop per photograph with
    ``quick``). The validation set is built at the first call, so runs that never score pay nothing."""
    from pruneseek.evaluation import eval_set
    from pruneseek.recovery import recovery_scorer

    r, made = recipes.RACE, {}

    def score(mask, steps: int, seed: int):
        if "fn" not in made:
            crop, per_image = (64, 1) if quick else (r["eval_crop"], r["eval_per_image"])
            scored_on = eval_set(teacher, crop, r["eval_seeds"], per_image=per_image, split="validation")
            made["fn"] = recovery_scorer(teacher, data, perceptual, scored_on, batch, lr)
        return made["fn"](mask, steps, seed)

    return score
