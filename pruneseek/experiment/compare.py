"""A comparison as a library: every strategy × seed searched, recovered and evaluated under one protocol.

For each strategy and seed (:func:`run_row`): the calibration data of ``pruneseek search`` (same pair
settings; the data seed is fixed, so every strategy sees the same crops; the seed varies the strategy's and
the recovery's randomness), the strategy's search (learned strategies get the budget's search steps;
rule-based ones run their own defaults and their cost is recorded), the mask file, the held-out evaluation of
the mask before recovery (zero-shot, teacher weights) and after the fair recovery of :mod:`pruneseek.recovery`
(same budget, optimiser, loss and data for all). ``annealing`` (PocketSR, arXiv:2510.03012) asks for T
annealing steps; the comparison gives it ``min(T, ⌊ANNEAL_FRACTION · recovery steps⌋)`` of the *same*
budget: PocketSR anneals over its whole 8,000-step pruning phase, but here the budget is shared with plain
recovery, and the second half trains the model in its final, pruned form — the one that is evaluated.

:func:`run_comparison` runs the rows that are not finished yet and writes the rows (CSV and JSON, atomically)
after every row; a rerun with the same settings continues from the finished rows, and one with other settings
is refused unless ``fresh``. An output folder that cannot be written is refused before the target loads; rows or
plots that cannot be written later go to a rescue folder that the error names. ``pruneseek tune`` runs single
rows as its trials.
"""
from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from pruneseek import recipes
from pruneseek.errors import CompareError
from pruneseek.experiment.settings import Budget, CompareSettings
from pruneseek.fingerprint import differences, settings_hash

FORMAT = "pruneseek.compare/v1"
#: The fixed degradation/crop seed of the calibration data (the same crops for every strategy and seed).
DATA_SEED = 0
ANNEAL_FRACTION = recipes.ANNEAL_FRACTION
#: TinySR Table 2 (DIV2K-Val, 50 % pruning, after training), best first on DISTS (docs/design.md §6).
PAPER_ORDER = ("tinysr", "tinyfusion", "sensitivity", "bk-sdm", "flux-lite", "random-min", "snapfusion", "shortgpt")
#: The metric that orders strategies in the summary: PSNR to the teacher's output (fidelity, what recovery and
#: retraining distil; higher is better). HR metrics are reported beside it.
KEY_METRIC = "psnr_teacher"
#: The baseline every strategy is tested against (a paired difference whose interval excludes zero).
BASELINE = "random-min"


# ----- finished rows, statistics, files ------------------------------------------------------------------------

def load_previous(path: Path, settings: dict, digest: str, fresh: bool) -> tuple[list[dict], list[str]]:
    """Finished rows and commands of an earlier run with the same settings (none with ``fresh``);
    refuse a file made with other settings."""
    import json

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
        changed = differences(doc.get("settings", {}), settings) or ["(unrecorded)"]
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
    from pruneseek.evaluation import METRICS

    present = set().union(*(r.keys() for r in rows)) if rows else set()
    return [f"{m}_{when}" for m in METRICS for when in ("before", "after") if f"{m}_{when}" in present]


def crop_table(rows: list[dict], name: str, column: str, seeds: Sequence[int] | None = None):
    """The ``(seeds, crops)`` table of ``column`` (e.g. ``psnr_teacher_after``) for strategy ``name`` from the rows'
    per-crop values, seeds in ascending order (only ``seeds`` when given); None when the rows lack them."""
    import numpy as np

    metric, when = column.rsplit("_", 1)
    mine = sorted((r for r in rows if r["strategy"] == name and (seeds is None or r["seed"] in seeds)),
                  key=lambda r: r["seed"])
    values = [r.get(f"per_crop_{when}", {}).get(metric) for r in mine]
    if not values or any(v is None for v in values) or len({len(v) for v in values}) != 1:
        return None
    return np.asarray(values, dtype=float)


def _intervals(rows: list[dict], name: str, col: str, entry: dict) -> None:
    """Add the 95 % interval of ``col`` (bootstrap over seeds and crops) and the paired difference to
    :data:`BASELINE` with its verdict to ``entry`` (when the rows carry per-crop values)."""
    from pruneseek.evaluation import METRICS
    from pruneseek.stats import paired_difference, two_level, verdict

    table = crop_table(rows, name, col)
    if table is None:
        return
    _, lo, hi = two_level(table)
    entry["ci95"] = [lo, hi]
    if name == BASELINE:
        return
    seeds = sorted({r["seed"] for r in rows if r["strategy"] == name} & {r["seed"] for r in rows
                                                                        if r["strategy"] == BASELINE})
    mine, base = crop_table(rows, name, col, seeds), crop_table(rows, BASELINE, col, seeds)
    if mine is None or base is None or mine.shape != base.shape:
        return
    diff, lo, hi = paired_difference(mine, base)
    higher = METRICS[col.rsplit("_", 1)[0]][0] == "up"
    entry[f"vs_{BASELINE}"] = {"diff": diff, "ci95": [lo, hi], "verdict": verdict(lo, hi, higher), "seeds": seeds}


def summarise(rows: list[dict]) -> dict[str, Any]:
    """Per strategy, mean ± sample std (n − 1) over seeds of every metric and cost column; for the metrics after
    recovery (and the key metric before) also the 95 % interval over seeds and crops and the paired difference
    to :data:`BASELINE` with its verdict (:mod:`pruneseek.stats`)."""
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
                if col.endswith("_after") or col == f"{KEY_METRIC}_before":
                    _intervals(rows, name, col, entry[col])
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


def tau_interval(rows: list[dict], names: Sequence[str], col: str, higher: bool) -> list[float] | None:
    """95 % interval of Kendall's τ between the order of ``names`` by ``col`` and TinySR's, resampling seeds and
    crops (the same indices for every strategy); None without per-crop values on common seeds."""
    import numpy as np

    from pruneseek.stats import RESAMPLES, resamples_2d

    names = [n for n in names if n in PAPER_ORDER]
    seeds = sorted(set.intersection(*({r["seed"] for r in rows if r["strategy"] == n} for n in names))) if names else []
    tables = [crop_table(rows, n, col, seeds) for n in names]
    if len(names) < 2 or not seeds or any(t is None for t in tables) or len({t.shape for t in tables}) != 1:
        return None
    stack = np.stack(tables)
    r, c = resamples_2d(*stack.shape[1:], RESAMPLES, seed=1)
    means = stack[:, r[:, :, None], c[:, None, :]].mean(axis=(2, 3))  # (strategies, resamples)
    taus = []
    for k in range(means.shape[1]):
        order = [names[i] for i in np.argsort(-means[:, k] if higher else means[:, k], kind="stable")]
        taus.append(kendall_tau(order, PAPER_ORDER))
    lo, hi = np.quantile(taus, [0.025, 0.975])
    return [float(lo), float(hi)]


def ordering(summary: dict[str, Any], rows: list[dict] | None = None) -> dict[str, Any]:
    """Strategies ordered by the key metric after recovery, and the agreement with TinySR Table 2's order (with
    its 95 % interval when ``rows`` carry per-crop values)."""
    from pruneseek.evaluation import METRICS

    col = f"{KEY_METRIC}_after"
    have = [(name, s[col]["mean"]) for name, s in summary.items() if col in s]
    higher = METRICS[KEY_METRIC][0] == "up"
    order = [name for name, _ in sorted(have, key=lambda t: -t[1] if higher else t[1])]
    return {"metric": col, "order": order, "paper_order": list(PAPER_ORDER),
            "paper_metric": "DISTS after training (TinySR Table 2)",
            "kendall_tau_vs_paper": kendall_tau(order, PAPER_ORDER),
            "kendall_tau_ci95": tau_interval(rows, order, col, higher) if rows else None}


CSV_FIXED = ["strategy", "seed", "num_kept", "kept", "search_seconds", "search_forward_passes",
             "search_backward_passes", "recovery_seconds", "recovery_steps", "anneal_steps", "recovery_loss_first",
             "recovery_loss_last"]


def csv_text(rows: list[dict]) -> str:
    """One line per strategy × seed, then per strategy the lines ``seed = mean``, ``std`` (sample std over its
    seeds) and ``ci_low``/``ci_high`` (95 % interval over seeds and crops, metric columns only)."""
    columns = CSV_FIXED + metric_columns(rows) + ["settings_hash"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        flat = dict(row)
        flat["kept"] = " ".join(str(i) for i in row["kept"])
        writer.writerow(flat)
    for name, entry in summarise(rows).items():
        for stat in ("mean", "std", "ci_low", "ci_high"):
            line = {"strategy": name, "seed": stat}
            for col in columns:
                cell = entry.get(col)
                if isinstance(cell, dict) and stat in ("mean", "std"):
                    line[col] = cell[stat]
                elif isinstance(cell, dict) and "ci95" in cell:
                    line[col] = cell["ci95"][stat == "ci_high"]
            writer.writerow(line)
    return buf.getvalue()


def write_outputs(paths: dict[str, Path], doc: dict[str, Any], rows: list[dict]) -> None:
    from pruneseek.io import atomic_write_json, atomic_write_text

    doc["rows"] = rows
    doc["summary"] = summarise(rows)
    doc["ordering"] = ordering(doc["summary"], rows)
    doc["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    atomic_write_json(paths["json"], doc)
    atomic_write_text(paths["csv"], csv_text(rows))


def save_rows(paths: dict[str, Path], doc: dict[str, Any], rows: list[dict]) -> None:
    """:func:`write_outputs` into the folder of ``paths``; when that cannot be written (disk full, permissions
    changed, folder removed), the rows go to a rescue folder that the error names, so no finished row is lost."""
    from pruneseek.io import rescued

    out, stem = paths["json"].parent, paths["json"].stem
    rescued(out, lambda folder: write_outputs(_paths(folder, stem), doc, rows), "comparison rows")


# ----- one row ---------------------------------------------------------------------------------------------------

@dataclass
class RowContext:
    """What :func:`run_row` reads besides strategy and seed: the teacher, the space, the calibration data (fixed
    data seed), the held-out set, the budget, the settings hash and where the mask files go."""

    teacher: Any
    preset: Any
    data: dict
    perceptual: Any
    eval_set: Any
    budget: Budget
    digest: str
    masks_dir: Path
    quick: bool = False
    progress: bool = True
    #: The bundled miniature (its learned-search settings, :data:`pruneseek.recipes.MINI_SEARCH`).
    mini: bool = True


def row_context(teacher, preset, budget: Budget, perceptual, digest: str, masks_dir: Path, quick: bool = False,
                progress: bool = True, mini: bool = True, split: str = "held_out") -> RowContext:
    """The :class:`RowContext` of a comparison (scored on the held-out split) or a tuning study (on the
    validation split, since it selects): calibration data checked finite, evaluation set."""
    from pruneseek.evaluation import eval_set
    from pruneseek.latents import calibration_latents, check_finite, select_images, target_pairs

    spec = target_pairs(teacher, select_images("train"), budget.crops, budget.crop_size, DATA_SEED)
    data = calibration_latents(teacher, spec, progress=progress)
    for key in ("z_lr", "z_tea"):
        check_finite(key, data[key])
    scored_on = eval_set(teacher, budget.eval_crop, budget.eval_seeds, per_image=budget.eval_per_image, split=split)
    return RowContext(teacher, preset, data, perceptual, scored_on, budget, digest, masks_dir, quick, progress, mini)


def _search(name: str, seed: int, ctx: RowContext, overrides: dict[str, Any] | None):
    """The strategy's search on a copy of the teacher (a strategy may adapt weights while it searches)."""
    import copy

    import torch

    from pruneseek.experiment.strategy import build_strategy, candidate_scorer
    from pruneseek.sr_problem import sr_search_problem

    b, preset = ctx.budget, ctx.preset
    strategy = build_strategy(name, b.search_steps, mini=ctx.mini, quick=ctx.quick, overrides=overrides)
    searched = copy.deepcopy(ctx.teacher)
    problem = sr_search_problem(searched, ctx.data, preset.space, b.search_steps, b.batch, seed, ctx.perceptual,
                                topology=preset.topology, k=preset.transfer_k or 1)
    problem.progress = False  # one line per row is the comparison's progress report
    problem.candidate_score = candidate_scorer(ctx.teacher, ctx.data, ctx.perceptual, b.batch, b.lr, ctx.quick)
    torch.manual_seed(seed)
    started = time.perf_counter()
    result = strategy.search(problem, seed=seed)
    return strategy, result, time.perf_counter() - started


def run_row(name: str, seed: int, ctx: RowContext, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Search, mask file, zero-shot evaluation, recovery and evaluation of one strategy × seed (``overrides``:
    strategy settings on top of the comparison's, as ``pruneseek tune`` suggests them)."""
    import torch

    from pruneseek.evaluation import evaluate, evaluate_zero_shot
    from pruneseek.experiment.search import result_mask_file
    from pruneseek.recovery import RecoveryConfig, recover

    b = ctx.budget
    strategy, result, search_seconds = _search(name, seed, ctx, overrides)
    mask, _ = result_mask_file(result, strategy.name, ctx.teacher, ctx.preset, seed)
    mask_path = mask.save(ctx.masks_dir / f"{name}-s{seed}.json")
    before = evaluate_zero_shot(ctx.teacher, result.mask, ctx.eval_set)
    requested = int(strategy.recovery_overrides().get("anneal_steps", 0))
    anneal = min(requested, int(ANNEAL_FRACTION * b.recovery_steps))
    config = RecoveryConfig(steps=b.recovery_steps, batch=b.batch, lr=b.lr, seed=seed, anneal_steps=anneal,
                            progress=ctx.progress)
    torch.manual_seed(seed)
    student, record = recover(ctx.teacher, result.mask, ctx.data, ctx.perceptual, config)
    after = evaluate(student, ctx.teacher, result.mask, ctx.eval_set)
    cost = dict(getattr(result, "cost", None) or {})
    history = record.loss_history
    tail = max(1, len(history) // 10)
    row: dict[str, Any] = {
        "strategy": name, "seed": seed, "settings_hash": ctx.digest,
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
        row[f"per_crop_{when}"] = {m: [round(r[m], 6) for r in ev["rows"]] for m in ev["metrics"]}
    if getattr(result, "scores", None) is not None:
        row["scores"] = result.scores
    if getattr(result, "trajectory", None):
        row["trajectory"] = result.trajectory
    return row


# ----- the comparison ----------------------------------------------------------------------------------------------

def comparison_settings(teacher, source, preset, b: Budget, quick: bool, perceptual_note: str,
                        split: str = "held_out") -> dict[str, Any]:
    """Everything a row's numbers depend on besides strategy and seed (hashed to match finished rows)."""
    from pruneseek.latents import select_images
    from pruneseek.losses import lpips_status

    r = recipes.RECOVERY
    return {
        "model": teacher.name, "weights_sha256": source.weights_fingerprint(), "preset": preset.name,
        "data": {"images": [p.name for p in select_images("train")], "crops": b.crops, "crop_size": b.crop_size,
                 "seed": DATA_SEED, "degradation": teacher.degradation},
        "search": {"steps": b.search_steps, "batch": b.batch,
                   "strategy_overrides": recipes.QUICK_STRATEGY_SETTINGS if quick else {}},
        "recovery": {"steps": b.recovery_steps, "batch": b.batch, "lr": b.lr, "weight_decay": r["weight_decay"],
                     "clip_norm": r["clip_norm"], "lambda_l1": r["lambda_l1"],
                     "lambda_perceptual": r["lambda_perceptual"], "anneal_fraction": ANNEAL_FRACTION,
                     "schedule": r["schedule"]},
        "eval": {"split": split, "images": [p.name for p in select_images(split)], "crop": b.eval_crop,
                 "seeds": list(b.eval_seeds), "per_image": b.eval_per_image, "tile": recipes.EVAL["tile"]},
        "perceptual": "lpips" if perceptual_note.startswith("LPIPS") else "gmsd",
        "lpips_metric": lpips_status()[0],
    }


def summary_lines(rows: list[dict]) -> list[str]:
    """Strategies best first by the key metric after recovery, and the agreement with TinySR's order."""
    summary = summarise(rows)
    order = ordering(summary, rows)
    lines = [f"after recovery, mean [95 % CI over seeds and crops]; vs {BASELINE}: paired difference, 'tie' when "
             "its interval contains 0"]
    for name in order["order"]:
        s = summary[name]
        cells = [_cell(m, s[m]) for m in (f"{KEY_METRIC}_after", "psnr_after", "haarpsi_after") if m in s]
        lines.append(f"  {name:<12} {', '.join(cells)} (n={len(s['seeds'])})")
    tau = order["kendall_tau_vs_paper"]
    if tau is not None:
        ci = order.get("kendall_tau_ci95")
        lines.append(f"ordering by {order['metric']} vs TinySR Table 2: Kendall τ = {tau:+.2f}"
                     + (f" [95 % CI {ci[0]:+.2f} … {ci[1]:+.2f}]" if ci else ""))
    return lines


def _cell(column: str, stat: dict) -> str:
    text = f"{column.rsplit('_', 1)[0]} {stat['mean']:.4g}"
    if "ci95" in stat:
        text += f" [{stat['ci95'][0]:.4g}, {stat['ci95'][1]:.4g}]"
    vs = stat.get(f"vs_{BASELINE}")
    if vs is not None and column == f"{KEY_METRIC}_after":
        text += f" ({vs['verdict']}: {vs['diff']:+.3g} [{vs['ci95'][0]:+.3g}, {vs['ci95'][1]:+.3g}])"
    return text


def row_line(i: int, total: int, row: dict, seconds: float) -> str:
    k = KEY_METRIC
    return (f"[{i}/{total}] {row['strategy']} seed {row['seed']}: kept {row['kept']}; "
            f"PSNR {row['psnr_before']:.2f} → {row['psnr_after']:.2f} dB, "
            f"{k} {row[f'{k}_before']:.2f} → {row[f'{k}_after']:.2f} dB; "
            f"search {row['search_seconds']:.1f} s, recovery {row['recovery_seconds']:.1f} s, {seconds:.1f} s in all")


def _paths(out: Path, stem: str) -> dict[str, Path]:
    return {"json": out / f"{stem}.json", "csv": out / f"{stem}.csv", "metrics": out / f"{stem}-metrics.png",
            "masks": out / f"{stem}-masks.png", "trajectories": out / f"{stem}-trajectories.png",
            "cost": out / f"{stem}-cost.png"}


def _plots(rows: list[dict], paths: dict[str, Path], title: str, num_layers: int, report) -> list[Path]:
    from pruneseek.experiment.plots import plot_cost, plot_masks, plot_metrics, plot_trajectories

    plot_metrics(rows, paths["metrics"], title)
    plot_masks(rows, num_layers, paths["masks"], title)
    plot_cost(rows, paths["cost"], title, KEY_METRIC)
    written = [paths["metrics"], paths["masks"], paths["cost"]]
    if plot_trajectories(rows, paths["trajectories"], title):
        written.append(paths["trajectories"])
    else:
        report("no strategy in the rows recorded a trajectory: no trajectory plot")
    return written


def run_comparison(settings: CompareSettings, report: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the comparison's unfinished rows, write rows, summary and plots; the JSON document is returned."""
    from pruneseek.experiment.search import resolve_space
    from pruneseek.io import check_writable, rescued
    from pruneseek.losses import lpips_status, perceptual_loss
    from pruneseek.strategies import available

    started = time.perf_counter()
    names = list(settings.strategies or available())
    unknown = [n for n in names if n not in available()]
    if unknown:
        raise CompareError(f"unknown strategy {unknown[0]!r}; available: {', '.join(available())}")
    check_writable(settings.out)  # before the target loads and the first row's calibration
    b = settings.budget
    teacher = settings.source.load()
    preset = resolve_space(settings.model, settings.ratio, settings.space, teacher.num_layers)
    perceptual, note = perceptual_loss(settings.perceptual)
    fixed = comparison_settings(teacher, settings.source, preset, b, settings.quick, note)
    digest = settings_hash(fixed)
    stem = f"compare-{teacher.name}-r{float(preset.space.ratio):.2g}"
    paths = _paths(settings.out, stem)
    rows, commands = load_previous(paths["json"], fixed, digest, settings.fresh)
    done = {(r["strategy"], r["seed"]) for r in rows}
    todo = [(n, s) for s in b.seeds for n in names if (n, s) not in done]
    lpips_ok, lpips_why = lpips_status()
    doc = {"format": FORMAT, "command": settings.command, "commands": commands + [settings.command],
           "settings": fixed, "settings_hash": digest, "target": teacher.name, "space": preset.name,
           "strategies": names, "seeds": list(b.seeds), "quick": bool(settings.quick),
           "protocol": "pruneseek.recovery (see its module docstring)", "device": str(settings.source.device),
           "loss": f"L1 to the teacher's latent + {note}",
           "lpips": "LPIPS computed" if lpips_ok else f"LPIPS not computed: {lpips_why}"}
    report(f"target: {teacher.name}; space: {preset.name} ({preset.space.describe()}); loss: L1 + {note}")
    report(f"budget: search {b.search_steps} steps (learned), recovery {b.recovery_steps} steps, batch {b.batch}, "
           f"{b.crops} crops of {b.crop_size} px; held-out {b.eval_crop} px grid crops × {len(b.eval_seeds)} degradations; "
           f"settings {digest}")
    report(f"rows: {len(done & {(n, s) for n in names for s in b.seeds})} finished and reused, {len(todo)} to run")
    save_rows(paths, doc, rows)
    if todo:
        ctx = row_context(teacher, preset, b, perceptual, digest, settings.out / stem / "masks", settings.quick,
                          settings.progress, mini=not settings.source.is_real)
        _run_rows(todo, ctx, rows, paths, doc, report)
    written = [paths["csv"], paths["json"]]
    if rows:
        def finish(folder: Path) -> list[Path]:
            here = _paths(folder, stem)
            if folder != settings.out:  # a rescue folder: the rows beside the plots
                write_outputs(here, doc, rows)
            return _plots(rows, here, f"{teacher.name}, {preset.name}", teacher.num_layers, report)

        written += rescued(settings.out, finish, "comparison's rows and plots")
        for line in summary_lines(rows):
            report(line)
    report(f"{len(todo)} rows run in {time.perf_counter() - started:.0f} s; wrote {', '.join(map(str, written))}")
    return doc


def _run_rows(todo, ctx: RowContext, rows: list[dict], paths: dict[str, Path], doc: dict, report) -> None:
    """Run ``todo`` rows one by one, writing every finished row at once (an interrupt keeps them)."""
    for i, (name, seed) in enumerate(todo, 1):
        row_started = time.perf_counter()
        try:
            row = run_row(name, seed, ctx)
        except KeyboardInterrupt:
            report(f"interrupted during {name} seed {seed}; {len(rows)} finished rows are kept in {paths['json']}; "
                   "rerun the same command to continue")
            raise
        rows.append(row)
        save_rows(paths, doc, rows)
        report(row_line(i, len(todo), row, time.perf_counter() - row_started))
