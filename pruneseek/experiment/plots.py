"""Plots of the experiments: a search's loss curve, and a comparison's metrics, masks, trajectories and quality
against search cost.

Each writes a PNG atomically (matplotlib's Agg backend; nothing is shown).
"""
from __future__ import annotations

import io
import math
from pathlib import Path


def plot_loss(history: list[float], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=110)
    x = np.arange(len(history))
    ax.plot(x, history, lw=0.6, alpha=0.5, label="loss")
    if len(history) >= 10:
        w = max(5, len(history) // 20)
        smooth = np.convolve(history, np.ones(w) / w, mode="valid")
        ax.plot(x[w - 1 :], smooth, lw=1.6, label=f"moving mean ({w})")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    from pruneseek.io import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_metrics(rows: list[dict], path: Path, title: str) -> None:
    """Each metric per strategy: mean ± std over seeds after recovery (filled), before (hollow)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pruneseek.evaluation import METRICS
    from pruneseek.experiment.compare import summarise

    summary = summarise(rows)
    names = list(summary)
    metrics = [m for m in METRICS if any(f"{m}_after" in s for s in summary.values())]
    cols = 3
    grid_rows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(grid_rows, cols, figsize=(4.2 * cols, 3.2 * grid_rows), dpi=100, squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        for k, (when, style) in enumerate((("before", dict(mfc="white")), ("after", {}))):
            col = f"{metric}_{when}"
            xs = [i + (k - 0.5) * 0.25 for i, n in enumerate(names) if col in summary[n]]
            ms = [summary[n][col]["mean"] for n in names if col in summary[n]]
            ax.errorbar(xs, ms, yerr=_error_bars([summary[n][col] for n in names if col in summary[n]]), fmt="o",
                        capsize=3, ms=5, color="C0" if when == "after" else "C1", label=f"{when} recovery", **style)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
        arrow = "↑" if METRICS[metric][0] == "up" else "↓"
        ax.set_title(f"{METRICS[metric][1].split(':')[0]} {arrow}", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title + " (mean; bars: 95 % interval over seeds and crops, else ± std over seeds)", fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def _error_bars(stats: list[dict]) -> list[list[float]]:
    """Asymmetric error bars: the 95 % interval where a stat has one, else ± its std."""
    low = [s["mean"] - s["ci95"][0] if "ci95" in s else s["std"] for s in stats]
    high = [s["ci95"][1] - s["mean"] if "ci95" in s else s["std"] for s in stats]
    return [low, high]


def plot_cost(rows: list[dict], path: Path, title: str, metric: str) -> None:
    """Quality against search cost: ``metric`` after recovery (95 % interval) per strategy, against its mean search
    passes (forward + backward, in samples; log axis, +1 so a data-free rule sits at 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pruneseek.evaluation import METRICS
    from pruneseek.experiment.compare import summarise

    summary = summarise(rows)
    col = f"{metric}_after"
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for i, (name, s) in enumerate((n, s) for n, s in summary.items() if col in s):
        passes = sum((s.get(k) or {}).get("mean") or 0.0 for k in ("search_forward_passes", "search_backward_passes"))
        ax.errorbar([passes + 1], [s[col]["mean"]], yerr=_error_bars([s[col]]), fmt="o", capsize=3, color=f"C{i % 10}")
        ax.annotate(name, (passes + 1, s[col]["mean"]), textcoords="offset points", xytext=(5, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("search cost: forward + backward passes (samples) + 1")
    ax.set_ylabel(f"{METRICS[metric][1].split(':')[0]} {'↑' if METRICS[metric][0] == 'up' else '↓'}", fontsize=8)
    ax.set_title(title + " (after recovery; bars: 95 % interval)", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    _save(fig, path)


def plot_masks(rows: list[dict], num_layers: int, path: Path, title: str) -> None:
    """Strategy × layer: the fraction of seeds whose mask keeps the layer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(dict.fromkeys(r["strategy"] for r in rows))
    grid = np.zeros((len(names), num_layers))
    for i, name in enumerate(names):
        mine = [r for r in rows if r["strategy"] == name]
        for r in mine:
            grid[i, r["kept"]] += 1 / len(mine)
    fig, ax = plt.subplots(figsize=(0.32 * num_layers + 2.5, 0.36 * len(names) + 1.4), dpi=100)
    image = ax.imshow(grid, cmap="Greens", vmin=0, vmax=1, aspect="auto")
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels([f"{n} ({sum(1 for r in rows if r['strategy'] == n)})" for n in names], fontsize=7)
    ax.set_xticks(range(num_layers))
    ax.set_xticklabels(range(num_layers), fontsize=6)
    ax.set_xlabel("layer")
    fig.colorbar(image, ax=ax, fraction=0.03, label="fraction of seeds keeping it")
    ax.set_title(title + " (seeds per strategy in brackets)", fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def plot_trajectories(rows: list[dict], path: Path, title: str) -> bool:
    """Per-layer keep probability over the search, one panel per strategy that records a trajectory (learned
    strategies: the EMA marginals π; snapfusion: its greedy path), lowest seed each; False if none has one."""
    firsts: dict[str, dict] = {}
    for r in sorted(rows, key=lambda r: r["seed"]):
        if r.get("trajectory") and r["strategy"] not in firsts:
            firsts[r["strategy"]] = r
    if not firsts:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(firsts), figsize=(5 * len(firsts), 3.4), dpi=100, squeeze=False)
    for ax, (name, row) in zip(axes.flat, firsts.items()):
        steps = [p["step"] for p in row["trajectory"]]
        layers = len(row["trajectory"][0]["marginals"])
        cmap = plt.get_cmap("viridis")
        for i in range(layers):
            ax.plot(steps, [p["marginals"][i] for p in row["trajectory"]], lw=1.0 if i in row["kept"] else 0.6,
                    ls="-" if i in row["kept"] else ":", color=cmap(i / max(1, layers - 1)))
        ax.set_title(f"{name}, seed {row['seed']} (solid: kept)", fontsize=8)
        ax.set_xlabel("step")
        ax.set_ylabel("keep probability π")
        ax.set_ylim(-0.02, 1.02)
    fig.suptitle(title + " (colour: layer index, dark = first)", fontsize=9)
    fig.tight_layout()
    _save(fig, path)
    return True


