"""Landscape lab (issue 8): how often does each search algorithm find the best mask, when it is known?

On a synthetic landscape f(m) over masks (a pseudo-Boolean quadratic, lower is better) the true best
mask under Σm = M is found exactly by enumerating all C(N, M) masks, so thousands of simulated searches
can be scored by success rate, regret and rank percentile.

- :mod:`~pruneseek.landscape.landscapes` — :class:`QuadraticLandscape`, :func:`planted`,
  :func:`random_quadratic`, :func:`calibrated`, the sweep families.
- :mod:`~pruneseek.landscape.exact` — :class:`Enumeration` (meet-in-the-middle, vectorised),
  :func:`solve` → :class:`ExactSolution` (optimum, percentile, block/transfer-space optima).
- :mod:`~pruneseek.landscape.search_jax` — TinyFusion and TinySR (both candidate rules) and random-min
  in JAX (jit, vmap over seeds, scan over steps, optax Adam).
- :mod:`~pruneseek.landscape.baselines` — sensitivity (one-shot, greedy) and a ShortGPT-like ranking.
- :mod:`~pruneseek.landscape.sweep` — :func:`run_sweep`, :func:`plot_summary`, :func:`bench_landscape`.

JAX is imported only by the search and sweep modules (the ``lab`` extra).
"""
from pruneseek.landscape.exact import Enumeration, ExactSolution, combination_table, solve
from pruneseek.landscape.landscapes import (
    FAMILIES,
    LandscapeError,
    QuadraticLandscape,
    calibrated,
    family_name,
    make_landscape,
    plant_mask,
    planted,
    random_quadratic,
)

__all__ = [
    "FAMILIES",
    "Enumeration",
    "ExactSolution",
    "LandscapeError",
    "QuadraticLandscape",
    "calibrated",
    "combination_table",
    "family_name",
    "make_landscape",
    "plant_mask",
    "planted",
    "random_quadratic",
    "solve",
]
