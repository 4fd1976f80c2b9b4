"""Mutation check: does the test suite notice realistic bugs? (issue 18, "Reliability as figures").

Method. The catalog below lists hand-written mutations of pruneseek's source, each a realistic bug (an
off-by-one in a count, a flipped sign or comparison, a skipped validation, a missing restore on resume, a
wrong default or axis...) with the few test files that should catch it. The runner

1. copies the repository's tracked and untracked-but-not-ignored files (``git ls-files -co
   --exclude-standard``) into a temporary folder once, and checks that ``import pruneseek`` there, with
   ``PYTHONPATH`` set to the copy, loads the copy's package (not the editable install);
2. runs every distinct test selection once unmutated and refuses to go on if any fails (a mutation
   "caught" by an already-failing test would mean nothing);
3. for each mutation replaces its ``find`` snippet (which must occur exactly once in its file) by
   ``replace`` in the copy, runs ``python -m pytest -x -q -p no:cacheprovider <tests>`` there with one
   OpenMP thread and a timeout, records whether the tests failed ("caught") and which test ids failed,
   then restores the file.

The working tree is never touched. The result goes to ``results/reliability-mutations.json``, written
atomically: the command, git HEAD, how many mutations were caught, and one row per mutation. A mutation
that survives marks a gap in the suite: add a test that would catch the real bug (tests/reliability/).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import commit  # this folder's report.py (the script's folder is on sys.path)

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "results" / "reliability-mutations.json"
TIMEOUT_S = 300
AREAS = ("spaces", "gates", "transfers", "strategies", "mask file", "export", "checkpoint/resume", "metrics",
         "data pipeline", "engine", "io", "families", "landscape")
GUARDS = "tests/reliability/test_mutation_guards.py"


def M(id, file, area, description, find, replace, tests):  # noqa: A002 - the catalog's field names
    return dict(id=id, file=file, area=area, description=description, find=find, replace=replace, tests=tests)


CATALOG = [
    # ----- spaces -------------------------------------------------------------------------------------------------
    M("spaces-full-size-off-by-one", "pruneseek/spaces/blocks.py", "spaces",
      "|M_full| counted as C(N, M-1) instead of C(N, M).",
      "return math.comb(self.num_layers, self.num_kept)", "return math.comb(self.num_layers, self.num_kept - 1)",
      ["tests/test_spaces.py"]),
    M("spaces-rank-skips-one", "pruneseek/spaces/blocks.py", "spaces",
      "combination_rank skips one candidate per kept index, so ranks collide.",
      "for v in range(previous + 1, c):", "for v in range(previous + 2, c):",
      ["tests/test_spaces.py"]),
    M("spaces-sample-keeps-one-more", "pruneseek/spaces/blocks.py", "spaces",
      "sampling keeps one layer too many per block, leaving the space.",
      "[:, : b.keep]", "[:, : b.keep + 1]",
      ["tests/test_spaces.py"]),
    M("spaces-ratio-allows-removing-all", "pruneseek/spaces/ratio.py", "spaces",
      "keep_for_ratio considers keeping 0 layers of a block.",
      "for s in range(size, 0, -1)}", "for s in range(size, -1, -1)}",
      ["tests/test_spaces.py", GUARDS]),
    # ----- transfers ----------------------------------------------------------------------------------------------
    M("transfers-count-strict-k", "pruneseek/spaces/transfer.py", "transfers",
      "the reachable count lets an edge carry fewer than k layers (|t| < k instead of <= k).",
      "if abs(d) <= self.k and w}", "if abs(d) < self.k and w}",
      ["tests/test_spaces.py"]),
    M("transfers-pairs-become-chain", "pruneseek/spaces/transfer.py", "transfers",
      "the 'pairs' topology joins every adjacent block (a chain) instead of (0,1),(2,3),...",
      "g.add_edges_from((j, j + 1) for j in range(0, num_blocks - 1, 2))",
      "g.add_edges_from((j, j + 1) for j in range(0, num_blocks - 1, 1))",
      ["tests/test_spaces.py"]),
    M("transfers-contains-capacity", "pruneseek/spaces/transfer.py", "transfers",
      "membership lets each edge move k+1 layers.",
      "flow.add_edge(j, h, capacity=self.k)", "flow.add_edge(j, h, capacity=self.k + 1)",
      ["tests/test_spaces.py"]),
    M("transfers-feasible-strict", "pruneseek/engine/transfer.py", "transfers",
      "a block with exactly k eligible layers is judged unable to corrode/expand.",
      "return indicator, eligible.sum(dim=-1) >= k", "return indicator, eligible.sum(dim=-1) > k",
      ["tests/engine/test_engine_transfer.py", GUARDS]),
    M("transfers-corrode-best-layers", "pruneseek/engine/transfer.py", "transfers",
      "corrosion drops the kept layers of highest instead of lowest marginal.",
      "drop, can_corrode = _pick(key, kept, k, largest=False, generator=generator)",
      "drop, can_corrode = _pick(key, kept, k, largest=True, generator=generator)",
      ["tests/engine/test_engine_transfer.py"]),
    # ----- gates --------------------------------------------------------------------------------------------------
    M("gates-gumbel-sign", "pruneseek/engine/gates.py", "gates",
      "Gumbel noise drawn with the wrong sign (log(-log U) instead of -log(-log U)).",
      "return (-torch.log(-torch.log(u)))", "return (torch.log(-torch.log(u)))",
      ["tests/engine/test_engine_gates.py"]),
    M("gates-decide-argmin", "pruneseek/engine/gates.py", "gates",
      "the decision takes the option of lowest instead of highest logit.",
      "return torch.cat([o[l.argmax(dim=-1)] for l, o in zip(logits, options)], dim=-1)",
      "return torch.cat([o[l.argmin(dim=-1)] for l, o in zip(logits, options)], dim=-1)",
      ["tests/engine/test_engine_gates.py"]),
    M("gates-ema-weights-swapped", "pruneseek/engine/gates.py", "gates",
      "the logit EMA weights the new value by decay instead of 1 - decay.",
      "add_(l.detach(), alpha=1.0 - self.decay)", "add_(l.detach(), alpha=self.decay)",
      ["tests/engine/test_engine_gates.py"]),
    M("gates-scaling-ignored", "pruneseek/engine/gates.py", "gates",
      "the Gumbel-softmax sample ignores the logit scaling.",
      "z = (logits * scaling + g) / tau", "z = (logits + g) / tau",
      ["tests/engine/test_engine_gates.py"]),
    # ----- strategies ---------------------------------------------------------------------------------------------
    M("strategies-rank-removes-best", "pruneseek/strategies/scoring.py", "strategies",
      "score-based strategies remove the highest-scored (most important) layers.",
      "key=lambda i: (values[i], i))", "key=lambda i: (-values[i], i))",
      ["tests/test_strategies_baselines.py"]),
    M("strategies-shortgpt-bi-sign", "pruneseek/strategies/shortgpt.py", "strategies",
      "Block Influence computed as cos - 1 instead of 1 - cos (sign flipped).",
      "return [1.0 - c for c in mean_cosines]", "return [c - 1.0 for c in mean_cosines]",
      ["tests/test_strategies_baselines.py"]),
    M("strategies-sensitivity-sign", "pruneseek/strategies/sensitivity.py", "strategies",
      "drop-one sensitivity recorded as full - loss instead of loss - full.",
      "return [loss - full for loss in losses], [full, *losses]",
      "return [full - loss for loss in losses], [full, *losses]",
      ["tests/test_strategies_baselines.py"]),
    M("strategies-shortgpt-keep-last-default", "pruneseek/strategies/shortgpt.py", "strategies",
      "shortgpt's keep_last defaults to false (TinyFusion's DiT port protects the last block).",
      '"keep_last": True}', '"keep_last": False}',
      ["tests/test_strategies_baselines.py", "tests/test_strategy_presets.py"]),
    # ----- mask file ----------------------------------------------------------------------------------------------
    M("maskfile-keep-mismatch-accepted", "pruneseek/maskfile.py", "mask file",
      "a mask file whose 'keep' disagrees with its 'mask' is accepted.",
      "if keep != kept:", "if keep != kept and False:",
      ["tests/test_maskfile.py"]),
    M("maskfile-membership-total-only", "pruneseek/maskfile.py", "mask file",
      "space membership checks only the total kept count, not each block's.",
      "if counts != wanted:", "if sum(counts) != sum(wanted):",
      ["tests/test_maskfile.py"]),
    M("maskfile-probabilities-no-abs", "pruneseek/maskfile.py", "mask file",
      "option probabilities summing to less than 1 are accepted (missing abs).",
      "if abs(total - 1.0) > PROBABILITY_TOLERANCE:", "if total - 1.0 > PROBABILITY_TOLERANCE:",
      ["tests/test_maskfile.py", GUARDS]),
    # ----- export -------------------------------------------------------------------------------------------------
    M("export-text-stream-exact", "pruneseek/export/folder.py", "export",
      "EXPORT.json records text-stream removal (--drop-text-stream) as exact, needing no retraining.",
      '"exact": key == "precache_modulation",\n                "requires_retraining": key == "drop_text_stream",',
      '"exact": True,\n                "requires_retraining": False,',
      ["tests/test_export.py"]),
    M("export-context-norm-order", "pruneseek/export/prune.py", "export",
      "the new last block's context norm gets [shift; scale] instead of [scale; shift].",
      "torch.cat([scale, shift], dim=0)", "torch.cat([shift, scale], dim=0)",
      ["tests/test_export.py"]),
    M("export-no-last-block-conversion", "pruneseek/export/prune.py", "export",
      "the new last block is not converted to a context-free block when the old last block is dropped.",
      "convert = last_old != num_layers - 1", "convert = last_old != num_layers",
      ["tests/test_export.py"]),
    M("export-overwrites-other-export", "pruneseek/export/folder.py", "export",
      "an --out folder holding a different pruneseek export is replaced without --force.",
      "if previous == fingerprint:", "if previous is not None:",
      ["tests/test_export.py"]),
    # ----- checkpoint/resume --------------------------------------------------------------------------------------
    M("resume-torch-rng-not-restored", "pruneseek/engine/checkpoint.py", "checkpoint/resume",
      "restore_rng_states no longer restores torch's global CPU RNG.",
      'torch.set_rng_state(states["torch"])', "pass",
      ["tests/engine/test_engine_resilience.py"]),
    M("resume-fast-forward-short", "pruneseek/engine/search.py", "checkpoint/resume",
      "resume fast-forwards the batch stream one batch short, repeating a batch.",
      'for _ in range(state["batches_consumed"]):', 'for _ in range(state["batches_consumed"] - 1):',
      ["tests/engine/test_engine_resilience.py"]),
    M("resume-history-loses-row", "pruneseek/engine/search.py", "checkpoint/resume",
      "resume drops the last row of the loss history.",
      'self.history[:] = state["history"]', 'self.history[:] = state["history"][:-1]',
      ["tests/engine/test_engine_resilience.py"]),
    M("resume-ema-not-restored", "pruneseek/engine/search.py", "checkpoint/resume",
      "resume keeps the freshly initialised logit EMA instead of the saved one.",
      'self.ema.load_state_dict([t.to(v.device) for v, t in zip(self.ema.value, state["ema"])])', "pass",
      ["tests/engine/test_engine_resilience.py"]),
    M("resume-fingerprint-unchecked", "pruneseek/engine/checkpoint.py", "checkpoint/resume",
      "a checkpoint written under other settings is resumed (fingerprint compared with itself).",
      'refuse_mismatch(state.get("fingerprint", {}), ckpt.fingerprint,',
      "refuse_mismatch(ckpt.fingerprint, ckpt.fingerprint,",
      ["tests/engine/test_engine_resilience.py"]),
    # ----- metrics ------------------------------------------------------------------------------------------------
    M("metrics-psnr-20log", "pruneseek/metrics.py", "metrics",
      "PSNR computed as 20·log10(1/MSE) (the amplitude form applied to a power).",
      "return 10 * torch.log10(1.0 / (mse + eps))", "return 20 * torch.log10(1.0 / (mse + eps))",
      ["tests/test_metrics.py"]),
    M("metrics-ssim-c2-unsquared", "pruneseek/metrics.py", "metrics",
      "SSIM's C2 constant not squared.",
      "c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2", "c1, c2 = (0.01 * peak) ** 2, (0.03 * peak)",
      ["tests/test_metrics.py", GUARDS]),
    M("metrics-gmsd-mean", "pruneseek/metrics.py", "metrics",
      "GMSD pooled with the mean instead of the standard deviation of the similarity map.",
      "return gms.flatten(1).std(dim=1)", "return gms.flatten(1).mean(dim=1)",
      ["tests/test_metrics.py"]),
    M("metrics-luminance-bgr", "pruneseek/metrics.py", "metrics",
      "luminance weights applied in BGR order (channel axis reversed).",
      "return 0.299 * r + 0.587 * g + 0.114 * b", "return 0.299 * b + 0.587 * g + 0.114 * r",
      ["tests/test_metrics.py"]),
    # ----- data pipeline ------------------------------------------------------------------------------------------
    M("data-load-image-axes", "pruneseek/data/images.py", "data pipeline",
      "images loaded as (3, W, H) instead of (3, H, W): wrong permute.",
      ".permute(2, 0, 1)", ".permute(2, 1, 0)",
      ["tests/data/test_data_pipeline.py"]),
    M("data-crop-axes-swapped", "pruneseek/data/images.py", "data pipeline",
      "the HR crop uses the left offset for rows and the top offset for columns.",
      "hr = img[:, top : top + s, left : left + s]", "hr = img[:, left : left + s, top : top + s]",
      ["tests/data/test_data_pipeline.py"]),
    M("data-same-rng-every-item", "pruneseek/data/images.py", "data pipeline",
      "every training pair draws its crop and degradation from the same seed, whatever its index.",
      "rng = np.random.default_rng([self.seed, i])", "rng = np.random.default_rng(self.seed)",
      ["tests/data/test_data_pipeline.py", GUARDS]),
    M("data-degrade-out-size-swapped", "pruneseek/data/degrade.py", "data pipeline",
      "the degraded LR image gets (W/s, H/s) instead of (H/s, W/s).",
      "out_size = (h // cfg.scale, w // cfg.scale)", "out_size = (w // cfg.scale, h // cfg.scale)",
      ["tests/data/test_data_pipeline.py", GUARDS]),
    # ----- engine -------------------------------------------------------------------------------------------------
    M("engine-skip-needs-every-sample", "pruneseek/engine/stack.py", "engine",
      "skip mode runs a block only when every sample keeps it, bypassing it for the samples that do.",
      "\n        active = (masks.detach() != 0).any(dim=0)", "\n        active = (masks.detach() != 0).all(dim=0)",
      ["tests/engine/test_engine_stack.py"]),
    # ----- landscape ----------------------------------------------------------------------------------------------
    M("landscape-greedy-is-one-shot", "pruneseek/landscape/baselines.py", "landscape",
      "the lab's sensitivity-greedy baseline runs the one-shot sensitivity rule.",
      '"sensitivity-greedy": sensitivity_greedy,', '"sensitivity-greedy": sensitivity,',
      ["tests/landscape/test_lab_search.py", GUARDS]),
    M("landscape-drop-one-half-interactions", "pruneseek/landscape/landscapes.py", "landscape",
      "drop-one deltas use W's rows only, forgetting the transposed half of the pair interactions.",
      "return -(self.a + self.symmetric.sum(axis=1))", "return -(self.a + self.W.sum(axis=1))",
      ["tests/landscape/test_lab_landscapes.py"]),
]


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                         capture_output=True).stdout.decode()
    return [p for p in out.split("\0") if p and (ROOT / p).is_file()]


def make_copy() -> Path:
    """The working tree's files in a fresh temporary folder."""
    copy = Path(tempfile.mkdtemp(prefix="pruneseek-mutations-"))
    for rel in tracked_files():
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, copy / rel)
    return copy


def environment(copy: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(copy), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTEST_ADDOPTS", None)
    return env


def check_shadowing(copy: Path) -> None:
    """Fail loudly unless ``import pruneseek`` in the copy loads the copy's package."""
    code = "import pruneseek; print(pruneseek.__file__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=copy, env=environment(copy), capture_output=True,
                         text=True, check=True).stdout.strip()
    if not Path(out).resolve().is_relative_to(copy.resolve()):
        sys.exit(f"error: in the copy, pruneseek is imported from {out}, not from {copy}; mutations would not apply")


def check_catalog(catalog: list[dict], copy: Path) -> None:
    """Every mutation names a known area and a ``find`` snippet that occurs exactly once in its file."""
    ids = [m["id"] for m in catalog]
    if len(set(ids)) != len(ids):
        sys.exit("error: duplicate mutation ids in the catalog")
    for m in catalog:
        if m["area"] not in AREAS:
            sys.exit(f"error: mutation {m['id']}: unknown area {m['area']!r}; use one of {list(AREAS)}")
        text = (copy / m["file"]).read_text(encoding="utf-8")
        count = text.count(m["find"])
        if count != 1:
            sys.exit(f"error: mutation {m['id']}: its find snippet occurs {count} times in {m['file']} "
                     f"(must be exactly once): {m['find']!r}")


def run_pytest(copy: Path, tests: list[str], timeout: float) -> tuple[int | None, str, float]:
    """(return code or None on timeout, combined output, seconds) of pytest on ``tests`` in the copy."""
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=copy, env=environment(copy), capture_output=True, text=True, timeout=timeout)
        code, output = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout or ""
        code, output = None, out if isinstance(out, str) else out.decode(errors="replace")
    return code, output, time.perf_counter() - start


def failing_tests(output: str) -> list[str]:
    """Test node ids of pytest's 'FAILED'/'ERROR' summary lines."""
    ids = re.findall(r"^(?:FAILED|ERROR) (\S+)", output, flags=re.MULTILINE)
    return list(dict.fromkeys(ids))


def run_baselines(copy: Path, catalog: list[dict], timeout: float) -> None:
    """Each distinct test selection once, unmutated; refuse to go on if any fails."""
    selections = list(dict.fromkeys(tuple(m["tests"]) for m in catalog))
    for tests in selections:
        code, output, seconds = run_pytest(copy, list(tests), timeout)
        print(f"baseline {' '.join(tests)}: {'ok' if code == 0 else 'FAILED'} ({seconds:.0f} s)", flush=True)
        if code != 0:
            print(output[-3000:], file=sys.stderr)
            sys.exit("error: a baseline test selection fails unmutated; fix it before checking mutations")


def run_mutation(copy: Path, m: dict, timeout: float) -> dict:
    """Apply one mutation in the copy, run its tests, restore the file; its result row."""
    path = copy / m["file"]
    original = path.read_text(encoding="utf-8")
    path.write_text(original.replace(m["find"], m["replace"], 1), encoding="utf-8")
    try:
        code, output, seconds = run_pytest(copy, m["tests"], timeout)
    finally:
        path.write_text(original, encoding="utf-8")
    caught_by = ["<timeout>"] if code is None else failing_tests(output)
    caught = code != 0
    if caught and not caught_by:
        caught_by = [f"<pytest exit code {code}>"]
    return {"id": m["id"], "file": m["file"], "area": m["area"], "description": m["description"],
            "caught": caught, "caught_by": caught_by, "seconds": round(seconds, 1)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Method: see the module docstring (scripts/reliability/mutations.py).")
    p.add_argument("--only", nargs="+", metavar="ID", help="run only these mutation ids")
    p.add_argument("--list", action="store_true", help="list the catalog and exit")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="result JSON (default: results/reliability-mutations.json in the repository)")
    p.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds per pytest run (default: %(default)s)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    catalog = CATALOG
    if args.only:
        unknown = sorted(set(args.only) - {m["id"] for m in CATALOG})
        if unknown:
            sys.exit(f"error: unknown mutation ids {unknown}; see --list")
        catalog = [m for m in CATALOG if m["id"] in args.only]
    if args.list:
        for m in catalog:
            print(f"{m['id']:40s} {m['area']:18s} {m['file']}: {m['description']}")
        return 0
    started = time.perf_counter()
    copy = make_copy()
    try:
        check_catalog(catalog, copy)
        check_shadowing(copy)
        run_baselines(copy, catalog, args.timeout)
        results = []
        for m in catalog:
            row = run_mutation(copy, m, args.timeout)
            results.append(row)
            verdict = f"caught by {row['caught_by'][0]}" if row["caught"] else "SURVIVED"
            print(f"{m['id']:40s} {verdict} ({row['seconds']:.0f} s)", flush=True)
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    return report(args, results, time.perf_counter() - started)


def report(args: argparse.Namespace, results: list[dict], seconds: float) -> int:
    from pruneseek.io import atomic_write_json

    caught = sum(r["caught"] for r in results)
    command = "python scripts/reliability/mutations.py" + "".join(f" {a}" for a in sys.argv[1:])
    atomic_write_json(args.out, {"command": command, "commit": commit(), "mutations": len(results),
                                 "mutations_caught": caught, "seconds": round(seconds, 1), "results": results})
    survivors = [r["id"] for r in results if not r["caught"]]
    print(f"{caught} of {len(results)} mutations caught in {seconds / 60:.1f} min; wrote {args.out}")
    if survivors:
        print("survived: " + ", ".join(survivors))
    return 0 if not survivors else 1


if __name__ == "__main__":
    sys.exit(main())
