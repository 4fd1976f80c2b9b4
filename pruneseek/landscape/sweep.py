"""Sweeps (landscape family × algorithm × seeds), their JSON summary and plot, and the throughput bench.

Seed s of a family is landscape instance s of that family *and* PRNG seed s of every search on it, so a
sweep of S seeds runs every algorithm once on each of S different landscapes. Each chosen mask is scored
against the exact enumeration of all C(N, M) masks (:mod:`pruneseek.landscape.exact`):

- success: the chosen mask is the exact global optimum (regret within rounding);
- regret: f(chosen) − f(optimum);
- rank percentile: the fraction of all C(N, M) masks strictly better than the chosen one;
- block / transfer optimum rate: the chosen mask scores as well as the exact best mask inside the
  block-factored space / the transfer-reachable space.

``comparisons`` pairs algorithms landscape by landscape (TinySR with either rule vs TinyFusion, and the
two rules): wins / ties / losses in f and an exact two-sided sign-test p-value.

Rows ``oracle-block`` and ``oracle-transfer`` are not searches: they are the exact best masks inside the
block-factored space and inside the transfer-reachable space, i.e. the best any block-local (TinyFusion)
or transfer-limited (TinySR) decision could do.
"""
from __future__ import annotations

import io
import math
import os
import platform
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from pruneseek.io import atomic_write_bytes, atomic_write_json
from pruneseek.landscape.baselines import BASELINES, run_baseline
from pruneseek.landscape.exact import Enumeration, solve
from pruneseek.landscape.landscapes import FAMILIES, LandscapeError, family_name, make_landscape
from pruneseek.landscape.search_jax import JAX_ALGORITHMS, LEARNED, SearchConfig, run_jax, space_arrays
from pruneseek.spaces import BlockSpace, TransferSpace

ALGORITHMS = LEARNED + ("random-min",) + BASELINES
REFERENCES = ("oracle-block", "oracle-transfer")
ALGORITHM_ALIASES = {"tinysr": "tinysr-marginal", "next-option": "tinysr-next-option", "marginal": "tinysr-marginal"}


def algorithm_name(name: str) -> str:
    name = ALGORITHM_ALIASES.get(name, name)
    if name not in ALGORITHMS:
        raise LandscapeError(f"unknown algorithm {name!r}; known: {', '.join(ALGORITHMS)}")
    return name


def wilson(successes: int, n: int, z: float = 1.96) -> list[float]:
    """95 % Wilson score interval for a success rate."""
    if n == 0:
        return [0.0, 1.0]
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


#: Paired comparisons reported per family (same landscapes, same seeds), when both are in the sweep.
PAIRS = (("tinysr-marginal", "tinyfusion"), ("tinysr-next-option", "tinyfusion"),
         ("tinysr-marginal", "tinysr-next-option"))


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided sign-test p-value for ``wins`` vs ``losses`` (ties dropped)."""
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1))
    return min(1.0, 2.0 * tail / 2**n)


def paired(regret_a, regret_b, tol: float = 1e-9) -> dict[str, Any]:
    """Per-landscape comparison of two algorithms' regrets: wins (a strictly better), ties, losses."""
    diff = np.asarray(regret_a) - np.asarray(regret_b)
    wins, losses = int(np.sum(diff < -tol)), int(np.sum(diff > tol))
    return {"wins": wins, "ties": int(len(diff) - wins - losses), "losses": losses,
            "mean_regret_difference": float(np.mean(diff)), "sign_test_p": sign_test(wins, losses)}


def _metrics(regret, percentile, success, block_hit, transfer_hit, in_block, in_transfer) -> dict[str, Any]:
    n = len(regret)
    wins = int(np.sum(success))
    return {
        "runs": n,
        "success_rate": wins / n,
        "success_ci95": wilson(wins, n),
        "block_optimum_rate": float(np.mean(block_hit)),
        "transfer_optimum_rate": float(np.mean(transfer_hit)),
        "mean_regret": float(np.mean(regret)),
        "median_regret": float(np.median(regret)),
        "worst_regret": float(np.max(regret)),
        "mean_rank_percentile": float(np.mean(percentile)),
        "median_rank_percentile": float(np.median(percentile)),
        "worst_rank_percentile": float(np.max(percentile)),
        "in_block_space_rate": float(np.mean(in_block)),
        "in_transfer_space_rate": float(np.mean(in_transfer)),
    }


def run_sweep(space: BlockSpace, transfer: TransferSpace, families: Sequence[str] = tuple(FAMILIES),
              algorithms: Sequence[str] = ALGORITHMS, seeds: int | Sequence[int] = 200,
              config: SearchConfig | None = None, ruggedness: float = 0.3, coupling: float = 0.0,
              name: str = "custom", log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every algorithm on every family's landscapes; return the JSON-ready summary (see module docs).

    ``ruggedness`` and ``coupling`` shape the planted families (see :func:`~pruneseek.landscape.planted`).
    """
    cfg = config or SearchConfig()
    cfg = replace(cfg, k=transfer.k, topology=transfer.topology)
    families = [family_name(f) for f in families]
    algorithms = [algorithm_name(a) for a in algorithms]
    seed_list = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seed_list:
        raise LandscapeError("a sweep needs at least one seed")
    log = log or (lambda msg: None)
    if any(a.startswith("tinysr") for a in algorithms):
        space_arrays(space, transfer.k, transfer.topology)  # refuses non-matching topologies up front
    enum = Enumeration.cached(space.num_layers, space.num_kept)
    members = (enum.membership(space), enum.membership(transfer))
    started = time.perf_counter()
    results: dict[str, Any] = {}
    landscape_stats: dict[str, Any] = {}
    comparisons: dict[str, Any] = {}
    for family in families:
        t0 = time.perf_counter()
        lands = [make_landscape(family, space, s, ruggedness=ruggedness, k=transfer.k, topology=transfer.topology,
                                coupling=coupling, enumeration=enum) for s in seed_list]
        log(f"{family}: {len(lands)} landscapes in {time.perf_counter() - t0:.1f} s")
        masks, extras, timing = _run_searches(family, lands, algorithms, space, seed_list, cfg, log)
        t0 = time.perf_counter()
        per, optima = _score_family(lands, algorithms, masks, space, transfer, enum, members)
        log(f"{family}: exact scoring in {time.perf_counter() - t0:.1f} s")
        results[family] = _family_results(per, extras, timing)
        comparisons[family] = {f"{x} vs {y}": paired(per[x]["regret"], per[y]["regret"]) for x, y in PAIRS
                               if x in per and y in per}
        landscape_stats[family] = _landscape_stats(family, lands, optima)
    return {
        "name": name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "space": _space_summary(space, transfer),
        "config": cfg.to_dict(),
        "ruggedness": ruggedness,
        "coupling": coupling,
        "seeds": len(seed_list),
        "seed_list": seed_list if len(seed_list) <= 20 else [seed_list[0], seed_list[-1]],
        "families": families,
        "algorithms": algorithms,
        "references": list(REFERENCES),
        "results": results,
        "comparisons": comparisons,
        "landscapes": landscape_stats,
        "seconds": time.perf_counter() - started,
        "environment": _environment(),
    }


def _run_searches(family: str, lands: list, algorithms: Sequence[str], space: BlockSpace, seed_list: list[int],
                  cfg: SearchConfig, log: Callable[[str], None]
                  ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]], dict[str, float]]:
    """Every algorithm on one family's landscapes: chosen masks, JAX outputs and seconds, per algorithm."""
    a = np.stack([L.a for L in lands])
    W = np.stack([L.W for L in lands])
    masks: dict[str, np.ndarray] = {}
    extras: dict[str, dict[str, np.ndarray]] = {}
    timing: dict[str, float] = {}
    for alg in algorithms:
        t0 = time.perf_counter()
        if alg in JAX_ALGORITHMS:
            out = run_jax(alg, space, a, W, seed_list, cfg)
            masks[alg] = out["mask"].astype(np.uint8)
            extras[alg] = out
        else:
            masks[alg] = np.stack([run_baseline(alg, L, space) for L in lands])
        timing[alg] = time.perf_counter() - t0
        log(f"{family}: {alg} in {timing[alg]:.1f} s")
    return masks, extras, timing


_PER_RUN_KEYS = ("regret", "percentile", "success", "block_hit", "transfer_hit", "in_block", "in_transfer")


def _score_family(lands: list, algorithms: Sequence[str], masks: dict[str, np.ndarray], space: BlockSpace,
                  transfer: TransferSpace, enum: Enumeration, members: tuple[np.ndarray, np.ndarray]
                  ) -> tuple[dict[str, dict[str, list]], dict[str, list]]:
    """Score every chosen mask (and the two references) against each landscape's exact enumeration.

    Returns the per-run lists of each name (``_PER_RUN_KEYS``) and, per landscape, where its optimum lies.
    """
    block_member, transfer_member = members
    names = list(algorithms) + list(REFERENCES)
    per = {n: {key: [] for key in _PER_RUN_KEYS} for n in names}
    optima: dict[str, list] = {"in_block": [], "in_transfer": [], "gaps": [], "block_regret": []}
    for i, L in enumerate(lands):
        sol = solve(L, space, transfer, enum)
        optima["in_block"].append(bool(block_member[sol.index]))
        optima["in_transfer"].append(bool(transfer_member[sol.index]))
        optima["gaps"].append(sol.gap)
        chosen = [masks[alg][i] for alg in algorithms] + [sol.block_optimum, sol.transfer_optimum]
        chosen = np.stack(chosen)
        regret = sol.regret(chosen)
        pct = sol.percentile(chosen)
        optima["block_regret"].append(sol.block_value - sol.value)
        for n, m, r, p in zip(names, chosen, regret, pct):
            idx = enum.index_of(m)
            d = per[n]
            d["regret"].append(max(float(r), 0.0))
            d["percentile"].append(float(p))
            d["success"].append(bool(r <= sol.tol))
            value = sol.value + float(r)
            d["block_hit"].append(bool(abs(value - sol.block_value) <= sol.tol))
            d["transfer_hit"].append(bool(abs(value - sol.transfer_value) <= sol.tol))
            d["in_block"].append(bool(block_member[idx]))
            d["in_transfer"].append(bool(transfer_member[idx]))
    return per, optima


def _family_results(per: dict[str, dict[str, list]], extras: dict[str, dict[str, np.ndarray]],
                    timing: dict[str, float]) -> dict[str, Any]:
    """One row of metrics per algorithm and reference of a family."""
    fam_results = {}
    for n, d in per.items():
        row = _metrics(np.array(d["regret"]), np.array(d["percentile"]), d["success"], d["block_hit"],
                       d["transfer_hit"], d["in_block"], d["in_transfer"])
        row["kind"] = "reference" if n in REFERENCES else "search"
        if n in extras and "transforms" in extras[n]:
            row["transfer_rate"] = float(np.mean(extras[n]["transforms"] != 1))
        if n in timing:
            row["seconds"] = timing[n]
        fam_results[n] = row
    return fam_results


def _landscape_stats(family: str, lands: list, optima: dict[str, list]) -> dict[str, Any]:
    """What a family's landscapes are like: where their optima lie and how far the runner-up is."""
    eff = [L.meta.get("ruggedness_effective") for L in lands if "ruggedness_effective" in L.meta]
    stats = {
        "description": FAMILIES[family],
        "optimum_in_block_space_rate": float(np.mean(optima["in_block"])),
        "optimum_in_transfer_space_rate": float(np.mean(optima["in_transfer"])),
        "mean_gap_to_runner_up": float(np.mean(optima["gaps"])),
        "mean_block_optimum_regret": float(np.mean(optima["block_regret"])),
    }
    if eff:
        stats["ruggedness_effective_mean"] = float(np.mean(eff))
        stats["capped_rate"] = float(np.mean([L.meta["capped"] for L in lands]))
    return stats


def _space_summary(space: BlockSpace, transfer: TransferSpace) -> dict[str, Any]:
    return {
        "layers": space.num_layers,
        "kept": space.num_kept,
        "blocks": [list(b) for b in space.shape],
        "description": space.describe(),
        "full": space.full_size(),
        "valid": space.size(),
        "transfer": {"k": transfer.k, "topology": transfer.topology, "reachable": transfer.size()},
    }


def _environment() -> dict[str, Any]:
    import jax

    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover - platforms without getloadavg
        load = None
    return {"python": platform.python_version(), "jax": jax.__version__, "cpus": os.cpu_count(),
            "jax_device": str(jax.devices()[0]), "load_average_1min": load, "platform": platform.platform()}


# ----- output --------------------------------------------------------------------------------------
def summary_table(summary: dict[str, Any]) -> str:
    """A plain-text table: one row per (family, algorithm)."""
    lines = [f"landscape sweep '{summary['name']}': {summary['space']['description']}, "
             f"{summary['seeds']} seeds, {summary['config']['steps']} steps, ruggedness {summary['ruggedness']}, "
             f"coupling {summary.get('coupling', 0.0)}"]
    head = (f"  {'family':<28} {'algorithm':<20} {'success':>8} {'95% CI':>13} {'mean regret':>12} "
            f"{'worst':>8} {'mean pct':>10} {'in block':>8} {'block-opt':>9} {'reach-opt':>9}")
    lines.append(head)
    for family, rows in summary["results"].items():
        for alg, r in rows.items():
            lo, hi = r["success_ci95"]
            lines.append(
                f"  {family:<28} {alg:<20} {r['success_rate']:>8.3f} {f'[{lo:.2f},{hi:.2f}]':>13} "
                f"{r['mean_regret']:>12.4f} {r['worst_regret']:>8.3f} {r['mean_rank_percentile']:>10.2e} "
                f"{r['in_block_space_rate']:>8.2f} {r['block_optimum_rate']:>9.3f} "
                f"{r.get('transfer_optimum_rate', float('nan')):>9.3f}"
            )
    lines.append("  success: decision = exact optimum over all C(N, M); mean pct: fraction of all masks strictly "
                 "better; block-opt / reach-opt: decision as good as the best mask of the block space / of the "
                 "transfer-reachable space")
    return "\n".join(lines)


def plot_summary(summary: dict[str, Any], path: str | Path) -> Path:
    """Bar charts of success rate and mean regret per family and algorithm (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    families = list(summary["results"])
    names = list(next(iter(summary["results"].values())))
    fig, axes = plt.subplots(1, 2, figsize=(max(10, 2.2 * len(families) + 6), 4.5))
    width = 0.8 / len(names)
    x = np.arange(len(families))
    cmap = plt.get_cmap("tab10")
    for i, n in enumerate(names):
        succ = [summary["results"][f][n]["success_rate"] for f in families]
        reg = [summary["results"][f][n]["mean_regret"] for f in families]
        hatch = "//" if n in REFERENCES else None
        axes[0].bar(x + i * width - 0.4 + width / 2, succ, width, label=n, color=cmap(i % 10), hatch=hatch)
        axes[1].bar(x + i * width - 0.4 + width / 2, reg, width, label=n, color=cmap(i % 10), hatch=hatch)
    for ax, title in zip(axes, ("found the exact optimum (rate)", "mean regret f(m) − f(m*)")):
        ax.set_xticks(x)
        ax.set_xticklabels([f.replace("planted-", "").replace("-", "\n", 1) for f in families], fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylim(0, 1.05)
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(f"{summary['space']['description']}; {summary['seeds']} seeds, {summary['config']['steps']} steps; "
                 f"ruggedness {summary['ruggedness']}, coupling {summary.get('coupling', 0.0)}", fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=110)
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


# ----- bench ---------------------------------------------------------------------------------------
def bench_landscape(seeds: int = 1000, steps: int = 500, space: BlockSpace | None = None,
                    algorithms: Sequence[str] = LEARNED, config: SearchConfig | None = None,
                    out: str | Path | None = "results/bench-landscape.json") -> dict[str, Any]:
    """Throughput of the simulated searches: searches of ``steps`` steps per minute on this machine.

    Each algorithm is compiled and run once (timed as ``compile_seconds``, which includes one run), then
    run again on fresh seeds (timed), on random quadratic landscapes of ``space`` (default 24 layers as
    6 × (4 keep 2), pairs, k = 1). ``runs_per_minute`` is the total
    number of timed searches over the total timed seconds, all algorithms together.
    """
    space = space or BlockSpace.uniform(24, 4, 2)
    cfg = replace(config or SearchConfig(), steps=steps)
    rng = np.random.default_rng(1234)
    n = space.num_layers
    a = rng.normal(size=(seeds, n))
    W = np.triu(rng.normal(size=(seeds, n, n)) / math.sqrt(max(space.num_kept - 1, 1)), 1)
    per_alg: dict[str, Any] = {}
    total_time, total_runs = 0.0, 0
    for alg in algorithms:
        alg = algorithm_name(alg)
        t0 = time.perf_counter()
        run_jax(alg, space, a, W, np.arange(seeds), cfg)
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        run_jax(alg, space, a, W, np.arange(seeds) + seeds, cfg)
        dt = time.perf_counter() - t0
        per_alg[alg] = {"seconds": dt, "compile_seconds": compile_s, "runs_per_minute": seeds / dt * 60.0}
        total_time += dt
        total_runs += seeds
    result = {
        "runs_per_minute": total_runs / total_time * 60.0,
        "target_runs_per_minute": 1000,
        "seeds": seeds,
        "steps": steps,
        "space": space.describe(),
        "config": cfg.to_dict(),
        "per_algorithm": per_alg,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "environment": _environment(),
        "note": "steady-state throughput after compilation; the machine's other load is in environment",
    }
    if out is not None:
        atomic_write_json(out, result)
    return result


def log_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
