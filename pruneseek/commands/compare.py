"""`pruneseek compare`: every strategy × seed searched, recovered and evaluated under one protocol (SPEC.md §6).

For each strategy and seed: the calibration data of ``pruneseek search`` (same pair settings; the data
seed is fixed, so every strategy sees the same crops; the seed varies the strategy's and the recovery's
randomness), the strategy's search (learned strategies get ``--search-steps``; rule-based ones run their
own defaults and their cost is recorded), the mask file, the held-out evaluation of the mask before
recovery (zero-shot, teacher weights) and after the fair recovery of :mod:`pruneseek.recovery` (same
budget, optimiser, loss and data for all). ``annealing`` (PocketSR) asks for T annealing steps; the
comparison gives it ``min(T, ⌊ANNEAL_FRACTION · recovery steps⌋)`` of the *same* budget: PocketSR anneals
over its whole 8,000-step pruning phase, but here the budget is shared with plain recovery, and the
second half trains the model in its final, pruned form — the one that is evaluated.

Rows are written (CSV and JSON, atomically) after every finished row; a rerun with the same budget
settings continues from the finished rows, and one with other settings is refused unless ``--fresh``.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import shlex
import time
from pathlib import Path
from typing import Any, Sequence

from pruneseek.commands.args import nonnegative_int, positive_float, positive_int, ratio
from pruneseek.errors import PruneseekError
from pruneseek.errors import CompareError  # noqa: F401 (raised here; defined with the others)

EXAMPLES = """examples:
  pruneseek compare --model tsdsr --ratio 0.5                      # all strategies × seeds 0,1,2
  pruneseek compare --ratio 0.5 --strategies tinysr,tinyfusion,shortgpt --seeds 0
  pruneseek compare --ratio 0.33 --quick                           # a small budget, one seed (smoke run)
  pruneseek compare --ratio 0.5 --fresh                            # discard earlier rows of other settings
"""
FORMAT = "pruneseek.compare/v1"
#: The fixed degradation/crop seed of the calibration data (the same crops for every strategy and seed).
DATA_SEED = 0
#: Share of the recovery budget an annealing strategy may spend annealing (PocketSR: T = 8000).
ANNEAL_FRACTION = 0.5
#: The full budget (defaults) and the --quick one. Flags given explicitly override either.
#: The full budget is sized so that all 10 strategies × 3 seeds finish in about 35 minutes on 2 CPU cores
#: (measured per-step times: learned search ≈ 0.3 s, recovery ≈ 0.1 s, one held-out evaluation ≈ 2.3 s;
#: the rule-based strategies' own defaults ≈ 140 s per seed together, snapfusion 74 s of it).
FULL = {"search_steps": 500, "recovery_steps": 200, "batch": 4, "crops": 192, "crop_size": 64,
        "eval_crop": 192, "eval_seeds": (0, 1, 2, 3, 4, 5), "seeds": (0, 1, 2), "lr": 3e-4}
QUICK = {"search_steps": 3, "recovery_steps": 3, "batch": 2, "crops": 8, "crop_size": 32,
         "eval_crop": 64, "eval_seeds": (0,), "seeds": (0,), "lr": 3e-4}
#: --quick also shrinks the rule-based strategies' own budgets (only settings a strategy has are passed).
QUICK_STRATEGY_SETTINGS = {"score_batches": 1, "num_masks": 6, "n_trials": 6, "latency_repeats": 1}
#: TinySR Table 2 (DIV2K-Val, 50 % pruning, after training), best first on DISTS (SPEC.md §6).
PAPER_ORDER = ("tinysr", "tinyfusion", "sensitivity", "bk-sdm", "flux-lite", "random-min", "snapfusion", "shortgpt")
#: The metric that orders strategies in the summary (HaarPSI: perceptual, weight-free, higher is better).
KEY_METRIC = "haarpsi"



def comma_list(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    if len(set(items)) != len(items):
        raise argparse.ArgumentTypeError(f"the list {text!r} names an item twice")
    return items


def seed_list(text: str) -> list[int]:
    seeds = []
    for item in comma_list(text):
        try:
            seeds.append(nonnegative_int(item))
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"seeds: {exc}") from None
    return seeds


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="search, recover and evaluate every strategy under one budget (CSV, JSON, plots)",
        description="Run each strategy × seed on the same calibration data, retrain every mask under the same "
        "recovery protocol and evaluate before and after on the held-out photographs. Finished rows are "
        "kept: rerunning continues where it stopped.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", default="tsdsr", choices=["tsdsr"],
                   help="target model family (default tsdsr: the bundled tsdsr-mini)")
    p.add_argument("--ratio", type=ratio, default=0.5, help="fraction of layers removed: 0.33, 0.5 (default) or 0.67")
    p.add_argument("--strategies", type=comma_list, help="comma-separated strategy names (default: all registered)")
    p.add_argument("--seeds", type=seed_list,
                   help=f"comma-separated seeds (default {','.join(map(str, FULL['seeds']))}; --quick: 0)")
    p.add_argument("--quick", action="store_true",
                   help="a tiny budget for smoke tests (few crops and steps, 3 held-out crops)")
    p.add_argument("--out", type=Path, default=Path("results"), help="output folder (default results)")
    p.add_argument("--search-steps", type=positive_int,
                   help=f"learned strategies' steps (default {FULL['search_steps']})")
    p.add_argument("--recovery-steps", type=positive_int,
                   help=f"recovery steps per mask (default {FULL['recovery_steps']})")
    p.add_argument("--batch", type=positive_int, help=f"crops per step, search and recovery (default {FULL['batch']})")
    p.add_argument("--lr", type=positive_float, help=f"recovery AdamW learning rate (default {FULL['lr']:g})")
    p.add_argument("--crops", type=positive_int, help=f"calibration crops (default {FULL['crops']})")
    p.add_argument("--crop-size", type=positive_int, help=f"calibration HR crop side (default {FULL['crop_size']})")
    p.add_argument("--eval-crop", type=positive_int, help=f"held-out centre-crop side (default {FULL['eval_crop']})")
    p.add_argument("--perceptual", choices=["auto", "gmsd", "lpips"], default="auto",
                   help="perceptual term of search and recovery loss (default auto: LPIPS if local, else GMSD)")
    p.add_argument("--weights", type=Path, help="tsdsr-mini weights (default: the bundled ones)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=positive_int,
                   help="torch CPU threads (default: torch's choice; 1 avoids OpenMP stalls on a shared machine)")
    p.add_argument("--fresh", action="store_true", help="discard earlier rows instead of continuing from them")
    p.add_argument("--quiet", action="store_true", help="no progress bars (the one line per row stays)")
    p.set_defaults(run=run)


# ----- settings, rows, files ----------------------------------------------------------------------------------

def budget(args: argparse.Namespace) -> dict[str, Any]:
    """The effective budget: --quick or the full defaults, with explicit flags on top."""
    base = QUICK if args.quick else FULL
    out = dict(base)
    for key in ("search_steps", "recovery_steps", "batch", "crops", "crop_size", "eval_crop", "lr"):
        value = getattr(args, key)
        if value is not None:
            out[key] = value
    out["seeds"] = tuple(args.seeds) if args.seeds else base["seeds"]
    return out


def command_text(args: argparse.Namespace) -> str:
    """The command line that reproduces this run (every option the user set, in canonical form)."""
    parts = ["pruneseek", "compare", "--model", args.model, "--ratio", f"{args.ratio:g}"]
    if args.strategies:
        parts += ["--strategies", ",".join(args.strategies)]
    if args.seeds:
        parts += ["--seeds", ",".join(map(str, args.seeds))]
    if args.quick:
        parts.append("--quick")
    parts += ["--out", str(args.out)]
    for key in ("search_steps", "recovery_steps", "batch", "lr", "crops", "crop_size", "eval_crop", "weights"):
        value = getattr(args, key)
        if value is not None:
            parts += ["--" + key.replace("_", "-"), f"{value:g}" if isinstance(value, float) else str(value)]
    if args.perceptual != "auto":
        parts += ["--perceptual", args.perceptual]
    if args.device != "cpu":
        parts += ["--device", args.device]
    if args.threads:
        parts += ["--threads", str(args.threads)]
    parts += [flag for flag, on in (("--fresh", args.fresh), ("--quiet", args.quiet)) if on]
    return " ".join(shlex.quote(p) for p in parts)


def settings_hash(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _diff(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(f"{prefix}{key} ({a!r} → {b!r})")
    return keys


def load_previous(path: Path, settings: dict, digest: str, fresh: bool) -> tuple[list[dict], list[str]]:
    """Finished rows and commands of an earlier run with the same settings (none with ``fresh``);
    refuse a file made with other settings."""
    if fresh or not path.is_file():
        return [], []
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        rows, old_hash = doc["rows"], doc["settings_hash"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CompareError(f"cannot continue from {path} ({type(exc).__name__}: {exc}); move it away or pass --fresh")
    if doc.get("format") != FORMAT:
        raise CompareError(f"{path} is not a {FORMAT} file; move it away or pass --fresh")
    if old_hash != digest:
        changed = _diff(doc.get("settings", {}), settings) or ["(unrecorded)"]
        raise CompareError(
            f"{path} holds {len(rows)} rows made with other budget settings (hash {old_hash}, now {digest}; changed: "
            f"{'; '.join(changed)}); rerun with the same settings to continue, choose another --out, or pass --fresh "
            "to discard those rows"
        )
    return [r for r in rows if r.get("settings_hash") == digest], list(doc.get("commands", []))


def _std(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def metric_columns(rows: list[dict]) -> list[str]:
    from pruneseek.recovery import METRICS

    present = set().union(*(r.keys() for r in rows)) if rows else set()
    return [f"{m}_{when}" for m in METRICS for when in ("before", "after") if f"{m}_{when}" in present]


def summarise(rows: list[dict]) -> dict[str, Any]:
    """Per strategy, mean ± sample std (n − 1) over seeds of every metric and cost column."""
    columns = metric_columns(rows) + ["search_seconds", "recovery_seconds", "search_forward_passes",
                                      "search_backward_passes", "num_kept"]
    out: dict[str, Any] = {}
    for name in dict.fromkeys(r["strategy"] for r in rows):
        mine = [r for r in rows if r["strategy"] == name]
        entry: dict[str, Any] = {"seeds": sorted(r["seed"] for r in mine)}
        for col in columns:
            values = [float(r[col]) for r in mine if r.get(col) is not None]
            if values:
                entry[col] = {"mean": sum(values) / len(values), "std": _std(values), "n": len(values)}
        out[name] = entry
    return out


def kendall_tau(order_a: Sequence[str], order_b: Sequence[str]) -> float | None:
    """Kendall's τ between two rankings over their common items (None for fewer than 2)."""
    common = [x for x in order_a if x in order_b]
    if len(common) < 2:
        return None
    pos = {x: i for i, x in enumerate(order_b)}
    pairs = concordant = 0
    for i in range(len(common)):
        for j in range(i + 1, len(common)):
            pairs += 1
            concordant += 1 if pos[common[i]] < pos[common[j]] else -1
    return concordant / pairs


def ordering(summary: dict[str, Any]) -> dict[str, Any]:
    """Strategies ordered by the key metric after recovery, and the agreement with TinySR Table 2's order."""
    from pruneseek.recovery import METRICS

    col = f"{KEY_METRIC}_after"
    have = [(name, s[col]["mean"]) for name, s in summary.items() if col in s]
    higher = METRICS[KEY_METRIC][0] == "up"
    order = [name for name, _ in sorted(have, key=lambda t: -t[1] if higher else t[1])]
    return {"metric": col, "order": order, "paper_order": list(PAPER_ORDER),
            "paper_metric": "DISTS after training (TinySR Table 2)",
            "kendall_tau_vs_paper": kendall_tau(order, PAPER_ORDER)}


CSV_FIXED = ["strategy", "seed", "num_kept", "kept", "search_seconds", "search_forward_passes",
             "search_backward_passes", "recovery_seconds", "recovery_steps", "anneal_steps", "recovery_loss_first",
             "recovery_loss_last"]


def csv_text(rows: list[dict]) -> str:
    """One line per strategy × seed, then per strategy a ``seed = mean`` and a ``seed = std`` line (sample std
    over its seeds) for every numeric column."""
    columns = CSV_FIXED + metric_columns(rows) + ["settings_hash"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        flat = dict(row)
        flat["kept"] = " ".join(str(i) for i in row["kept"])
        writer.writerow(flat)
    for name, entry in summarise(rows).items():
        for stat in ("mean", "std"):
            line = {"strategy": name, "seed": stat}
            line.update({col: entry[col][stat] for col in columns if isinstance(entry.get(col), dict)})
            writer.writerow(line)
    return buf.getvalue()


def write_outputs(paths: dict[str, Path], doc: dict[str, Any], rows: list[dict]) -> None:
    from pruneseek.io import atomic_write_json, atomic_write_text

    doc["rows"] = rows
    doc["summary"] = summarise(rows)
    doc["ordering"] = ordering(doc["summary"])
    doc["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    atomic_write_json(paths["json"], doc)
    atomic_write_text(paths["csv"], csv_text(rows))


# ----- plots ------------------------------------------------------------------------------------------------

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

    from pruneseek.recovery import METRICS

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
            ss = [summary[n][col]["std"] for n in names if col in summary[n]]
            ax.errorbar(xs, ms, yerr=ss, fmt="o", capsize=3, ms=5, color="C0" if when == "after" else "C1",
                        label=f"{when} recovery", **style)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=45, ha="right", fontsize=7)
        arrow = "↑" if METRICS[metric][0] == "up" else "↓"
        ax.set_title(f"{METRICS[metric][1]} {arrow}", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title + " (mean ± std over seeds)", fontsize=9)
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


# ----- one row ------------------------------------------------------------------------------------------------

def strategy_settings_for(name: str, search_steps: int, quick: bool) -> tuple[str, dict[str, Any]]:
    """The strategy name and settings ``pruneseek search --quiet`` uses for tsdsr-mini (plus --quick's smaller
    budgets); ``pruneseek tune`` puts its suggestions on top of these."""
    from pruneseek.commands.search import strategy_settings
    from pruneseek.strategies import strategy_class

    args = argparse.Namespace(strategy=name, steps=search_steps, rule=None, mode=None, ema_decay=None, quiet=True)
    name, settings = strategy_settings(args, is_mini=True)
    if quick:
        defaults = strategy_class(name).defaults
        settings.update({k: v for k, v in QUICK_STRATEGY_SETTINGS.items() if k in defaults})
        if "select_settings" in defaults:
            select = strategy_class(settings.get("select", defaults["select"]))
            extra = {k: v for k, v in QUICK_STRATEGY_SETTINGS.items() if k in select.defaults}
            settings["select_settings"] = {**settings.get("select_settings", {}), **extra}
    return name, settings


def strategy_for(name: str, search_steps: int, quick: bool, overrides: dict[str, Any] | None = None):
    """The strategy as :func:`strategy_settings_for` sets it up, with ``overrides`` (e.g. tuned settings) on top."""
    from pruneseek.strategies import get_strategy

    name, settings = strategy_settings_for(name, search_steps, quick)
    return get_strategy(name, **{**settings, **(overrides or {})})


def row_context(teacher, preset, b: dict[str, Any], perceptual, digest: str, quick: bool, progress: bool) -> dict:
    """What :func:`run_row` reads besides strategy and seed: the calibration data (the fixed data seed, checked
    finite), the held-out set, the budget and settings hash. The caller adds ``masks_dir``."""
    from pruneseek.latents import PairSpec, as_tuple, calibration_latents, check_finite, select_images
    from pruneseek.recovery import eval_set

    spec = PairSpec(images=as_tuple(select_images("train")), count=b["crops"], hr_size=b["crop_size"], seed=DATA_SEED)
    data = calibration_latents(teacher, spec, progress=progress)
    for key in ("z_lr", "z_tea"):
        check_finite(key, data[key])
    return {"budget": b, "teacher": teacher, "preset": preset, "data": data, "perceptual": perceptual,
            "eval_set": eval_set(teacher, b["eval_crop"], b["eval_seeds"]), "hash": digest, "quick": quick,
            "progress": progress}


def run_row(name: str, seed: int, ctx: dict[str, Any], overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Search, mask file, zero-shot evaluation, recovery and evaluation of one strategy × seed (``overrides``:
    strategy settings on top of the comparison's, as ``pruneseek tune`` suggests them)."""
    import copy

    import torch

    from pruneseek.commands.search import result_mask_file
    from pruneseek.recovery import RecoveryConfig, evaluate, evaluate_zero_shot, recover
    from pruneseek.sr_problem import sr_search_problem

    b, teacher, preset = ctx["budget"], ctx["teacher"], ctx["preset"]
    strategy = strategy_for(name, b["search_steps"], ctx["quick"], overrides)
    searched = copy.deepcopy(teacher)  # a strategy may adapt weights during its search; the teacher stays pristine
    problem = sr_search_problem(searched, ctx["data"], preset.space, b["search_steps"], b["batch"], seed,
                                ctx["perceptual"], topology=preset.topology, k=preset.transfer_k or 1)
    torch.manual_seed(seed)
    started = time.perf_counter()
    result = strategy.search(problem, seed=seed)
    search_seconds = time.perf_counter() - started
    mask, _ = result_mask_file(result, strategy.name, teacher, preset, seed)
    mask_path = mask.save(ctx["masks_dir"] / f"{name}-s{seed}.json")
    before = evaluate_zero_shot(teacher, result.mask, ctx["eval_set"])

    requested = int(strategy.recovery_overrides().get("anneal_steps", 0))
    anneal = min(requested, int(ANNEAL_FRACTION * b["recovery_steps"]))
    config = RecoveryConfig(steps=b["recovery_steps"], batch=b["batch"], lr=b["lr"], seed=seed, anneal_steps=anneal,
                            progress=ctx["progress"])
    torch.manual_seed(seed)
    student, record = recover(teacher, result.mask, ctx["data"], ctx["perceptual"], config)
    after = evaluate(student, teacher, result.mask, ctx["eval_set"])

    cost = dict(getattr(result, "cost", None) or {})
    history = record.loss_history
    tail = max(1, len(history) // 10)
    row: dict[str, Any] = {
        "strategy": name, "seed": seed, "settings_hash": ctx["hash"],
        "num_kept": len(result.kept), "kept": list(result.kept),
        "search_seconds": search_seconds,
        "search_forward_passes": cost.get("forward_passes"), "search_backward_passes": cost.get("backward_passes"),
        "search_cost": cost, "search_steps": result.steps,
        "recovery_seconds": record.seconds, "recovery_steps": record.steps, "anneal_steps": anneal,
        "anneal_steps_requested": requested or None,
        "recovery_forward_passes": record.forward_passes, "recovery_backward_passes": record.backward_passes,
        "recovery_loss_first": sum(history[:tail]) / tail, "recovery_loss_last": sum(history[-tail:]) / tail,
        "recovery_nonfinite_steps": record.nonfinite_steps,
        "mask_file": str(mask_path),
    }
    for when, ev in (("before", before), ("after", after)):
        for metric, value in ev["metrics"].items():
            row[f"{metric}_{when}"] = value
    if getattr(result, "scores", None) is not None:
        row["scores"] = result.scores
    if getattr(result, "trajectory", None):
        row["trajectory"] = result.trajectory
    return row


# ----- the command --------------------------------------------------------------------------------------------

def comparison_settings(teacher, weights: Path, preset, b: dict, quick: bool, perceptual_note: str) -> dict[str, Any]:
    """Everything a row's numbers depend on besides strategy and seed (hashed to match finished rows)."""
    from pruneseek.io import file_sha256
    from pruneseek.latents import select_images
    from pruneseek.losses import lpips_status

    return {
        "model": teacher.name, "weights_sha256": file_sha256(weights), "preset": preset.name,
        "data": {"images": [p.name for p in select_images("train")], "crops": b["crops"], "crop_size": b["crop_size"],
                 "seed": DATA_SEED},
        "search": {"steps": b["search_steps"], "batch": b["batch"],
                   "strategy_overrides": QUICK_STRATEGY_SETTINGS if quick else {}},
        "recovery": {"steps": b["recovery_steps"], "batch": b["batch"], "lr": b["lr"], "weight_decay": 0.0,
                     "clip_norm": 1.0, "lambda_l1": 1.0, "lambda_perceptual": 1.0, "anneal_fraction": ANNEAL_FRACTION},
        "eval": {"crop": b["eval_crop"], "seeds": list(b["eval_seeds"]), "tile": 64},
        "perceptual": "lpips" if perceptual_note.startswith("LPIPS") else "gmsd",
        "lpips_metric": lpips_status()[0],
    }


def print_summary(rows: list[dict]) -> None:
    """Strategies best first by the key metric after recovery, and the agreement with TinySR's order."""
    summary = summarise(rows)
    order = ordering(summary)
    for name in order["order"]:
        s = summary[name]
        cells = [f"{m} {s[m]['mean']:.4g} ± {s[m]['std']:.2g}"
                 for m in (f"{KEY_METRIC}_after", "psnr_after", "l1_teacher_after") if m in s]
        print(f"  {name:<12} {', '.join(cells)} (n={len(s['seeds'])})")
    if order["kendall_tau_vs_paper"] is not None:
        print(f"ordering by {order['metric']} vs TinySR Table 2: Kendall τ = {order['kendall_tau_vs_paper']:+.2f}")


def row_line(i: int, total: int, row: dict, seconds: float) -> str:
    k = KEY_METRIC
    return (f"[{i}/{total}] {row['strategy']} seed {row['seed']}: kept {row['kept']}; "
            f"PSNR {row['psnr_before']:.2f} → {row['psnr_after']:.2f} dB, "
            f"{k} {row[f'{k}_before']:.4f} → {row[f'{k}_after']:.4f}; "
            f"search {row['search_seconds']:.1f} s, recovery {row['recovery_seconds']:.1f} s, {seconds:.1f} s in all")


def run(args: argparse.Namespace) -> int:
    import torch

    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return compare(args)
    finally:
        torch.set_num_threads(threads)


def compare(args: argparse.Namespace) -> int:
    import torch

    from pruneseek.losses import lpips_status, perceptual_loss
    from pruneseek.spaces import find_preset
    from pruneseek.strategies import available
    from pruneseek.targets.mini import WEIGHTS, load_mini

    started = time.perf_counter()
    names = args.strategies or available()
    unknown = [n for n in names if n not in available()]
    if unknown:
        raise CompareError(f"unknown strategy {unknown[0]!r}; available: {', '.join(available())}")
    preset = find_preset(args.model, args.ratio)
    b = budget(args)
    weights = args.weights or WEIGHTS
    teacher = load_mini(weights, device=args.device)
    if preset.space.num_layers != teacher.num_layers:
        raise CompareError(f"search space {preset.name} is for {preset.space.num_layers} layers, but the model has "
                           f"{teacher.num_layers}")
    perceptual, perceptual_note = perceptual_loss(args.perceptual)
    settings = comparison_settings(teacher, weights, preset, b, args.quick, perceptual_note)
    digest = settings_hash(settings)
    stem = f"compare-{teacher.name}-r{float(preset.space.ratio):.2g}"
    paths = {"json": args.out / f"{stem}.json", "csv": args.out / f"{stem}.csv",
             "metrics": args.out / f"{stem}-metrics.png", "masks": args.out / f"{stem}-masks.png",
             "trajectories": args.out / f"{stem}-trajectories.png"}
    rows, commands = load_previous(paths["json"], settings, digest, args.fresh)
    command = command_text(args)
    done = {(r["strategy"], r["seed"]) for r in rows}
    todo = [(n, s) for s in b["seeds"] for n in names if (n, s) not in done]
    lpips_ok, lpips_why = lpips_status()
    doc = {"format": FORMAT, "command": command, "commands": commands + [command],
           "settings": settings, "settings_hash": digest, "target": teacher.name, "space": preset.name,
           "strategies": list(names), "seeds": list(b["seeds"]), "quick": bool(args.quick),
           "protocol": "pruneseek.recovery (see its module docstring)", "device": str(args.device),
           "loss": f"L1 to the teacher's latent + {perceptual_note}",
           "lpips": "LPIPS computed" if lpips_ok else f"LPIPS not computed: {lpips_why}"}
    print(f"target: {teacher.name}; space: {preset.name} ({preset.space.describe()}); loss: L1 + {perceptual_note}")
    print(f"budget: search {b['search_steps']} steps (learned), recovery {b['recovery_steps']} steps, "
          f"batch {b['batch']}, {b['crops']} crops of {b['crop_size']} px; held-out {b['eval_crop']} px crops × "
          f"{len(b['eval_seeds'])} degradations; settings {digest}")
    print(f"rows: {len(done & {(n, s) for n in names for s in b['seeds']})} finished and reused, {len(todo)} to run")
    write_outputs(paths, doc, rows)
    if todo:
        ctx = row_context(teacher, preset, b, perceptual, digest, args.quick, progress=not args.quiet)
        ctx["masks_dir"] = args.out / stem / "masks"
        for i, (name, seed) in enumerate(todo, 1):
            row_started = time.perf_counter()
            try:
                row = run_row(name, seed, ctx)
            except KeyboardInterrupt:
                print(f"interrupted during {name} seed {seed}; {len(rows)} finished rows are kept in {paths['json']}; "
                      "rerun the same command to continue", flush=True)
                raise
            rows.append(row)
            write_outputs(paths, doc, rows)
            print(row_line(i, len(todo), row, time.perf_counter() - row_started), flush=True)
    written = [paths["csv"], paths["json"]]
    if rows:
        title = f"{teacher.name}, {preset.name}"
        plot_metrics(rows, paths["metrics"], title)
        plot_masks(rows, teacher.num_layers, paths["masks"], title)
        written += [paths["metrics"], paths["masks"]]
        if plot_trajectories(rows, paths["trajectories"], title):
            written.append(paths["trajectories"])
        else:
            print("no strategy in the rows recorded a trajectory: no trajectory plot")
        print_summary(rows)
    print(f"{len(todo)} rows run in {time.perf_counter() - started:.0f} s; wrote {', '.join(map(str, written))}")
    return 0
