"""`pruneseek bench`: speed and memory as ratios measured side by side in one run, written to results/."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from pruneseek import recipes
from pruneseek.commands.args import (add_threads_argument, comma_list, command_parser, positive_int, seed_list,
                                     torch_threads)

EXAMPLES = """examples:
  pruneseek bench engine --json                 # CPU: 24-block SD3 MMDiT at bench width
  pruneseek bench engine --steps 4 --rounds 2   # quicker, noisier
  pruneseek bench engine --device cuda --shape sd3-medium --dtype bfloat16 --lora-rank 64
  pruneseek bench export --json                 # full vs pruned 12/24 vs pre-cached: tsdsr-mini + SD3-medium shape
  pruneseek bench export --models tsdsr-mini --rounds 3
  pruneseek bench retrain --model pruned=pruned-mini --model stage1=retrained-mini --model stage2=retrained-mini-s2
  pruneseek bench testbed --json                # headroom, harm and discrimination power of the bundled testbed
  pruneseek bench testbed --ratios 0.5 --masks 8 --seeds 0,1,2
  pruneseek bench real-shape --json             # SD3-medium shape, bf16 + gradient checkpointing, 128 px crops
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = command_parser(
        sub, "bench", "benchmarks (ratios measured side by side), written as JSON to results/",
        "Run a benchmark and write its JSON to results/ (atomically).", EXAMPLES)
    p.add_argument("what", choices=["engine", "export", "retrain", "testbed", "real-shape"],
                   help="engine: search step vs plain LoRA step, blend and skip modes; "
                        "export: forward of full vs pruned (12/24) vs pruned + pre-cached modulation; "
                        "retrain: bicubic, teacher and pruned/retrained folders on the held-out set, with costs; "
                        "testbed: the teacher's headroom over bicubic and how well recovered masks are told apart; "
                        "real-shape: two search steps of the SD3-medium shape (2.03 B parameters, TSD-SR's LoRA) on "
                        "the CPU with the memory estimate checked against the measured peak, and what fits which card")
    p.add_argument("--model", action="append", default=[], metavar="LABEL=DIR",
                   help="retrain: a pruned or retrained folder to measure, with its label (repeat)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--shape", choices=["cpu", "sd3-medium"], default=None,
                   help="cpu: 24 blocks at bench width (default on CPU); sd3-medium: docs/design.md §7's full shape with "
                        "512 px latents (default on CUDA)")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                   help="default float32 on CPU, bfloat16 on CUDA")
    p.add_argument("--batch", type=positive_int, default=2)
    p.add_argument("--steps", type=positive_int, default=None,
                   help="engine: timed steps per variant and round (default 8); real-shape: search steps (default 2)")
    p.add_argument("--rounds", type=positive_int, default=None, help="interleaved rounds (engine 3, export 5)")
    p.add_argument("--models", default="tsdsr-mini,sd3-medium-shape",
                   help="export: comma-separated models (tsdsr-mini, sd3-medium-shape)")
    p.add_argument("--lora-rank", type=positive_int, default=None, help="default 8 on CPU, 64 on CUDA (TSD-SR's)")
    p.add_argument("--strategy", choices=["tinysr", "tinyfusion"], default="tinysr")
    p.add_argument("--out", type=Path, default=None,
                   help="output JSON (default results/bench-<what>.json; engine on CUDA: results/bench-engine-gpu.json)")
    p.add_argument("--ratios", type=comma_list, default=["0.33", "0.5", "0.67"],
                   help="testbed: pruning ratios (default 0.33,0.5,0.67)")
    p.add_argument("--masks", type=positive_int, default=8, help="testbed: diverse masks per ratio (default 8)")
    p.add_argument("--seeds", type=seed_list, default=[0, 1, 2], help="testbed: recovery seeds per mask (default 0,1,2)")
    p.add_argument("--quick", action="store_true", help="testbed: the comparison's --quick budget (a smoke run)")
    p.add_argument("--latent-side", type=positive_int, default=16,
                   help="real-shape: latent side of the measured CPU run (default 16: 128 px crops)")
    add_threads_argument(p)
    p.add_argument("--json", action="store_true", help="also print the JSON to stdout")
    p.set_defaults(run=run)


def run_testbed(args: argparse.Namespace) -> int:
    from pruneseek.bench.testbed import METRICS, bench_testbed
    from pruneseek.errors import PruneseekError

    try:
        ratios = [float(r) for r in args.ratios]
    except ValueError:
        raise PruneseekError(f"--ratios {','.join(args.ratios)}: give numbers such as 0.33,0.5,0.67") from None
    out = args.out or Path("results") / "bench-testbed.json"
    doc = bench_testbed(ratios, args.masks, tuple(args.seeds), out, quick=args.quick)
    for name in ("psnr", "haarpsi"):
        g = doc["teacher_minus_bicubic"][name]
        print(f"teacher − bicubic {name}: {g['mean']:+.4g} [95 % CI {g['ci_low']:+.4g}, {g['ci_high']:+.4g}] on "
              f"{doc['held_out_crops']} held-out crops")
    for ratio, block in doc["ratios"].items():
        cells = ", ".join(f"{m} {block['power'][m]['discrimination_ratio']:.1f} (paired "
                          f"{block['power'][m]['discrimination_ratio_paired']:.1f})" for m in METRICS)
        print(f"ratio {ratio}: discrimination (spread of {block['power'][METRICS[0]]['masks']} masks / recovery-seed "
              f"std): {cells}")
    if args.json:
        print(json.dumps(doc, indent=2))
    print(f"wrote {out}")
    return 0


def run_retrain(args: argparse.Namespace) -> int:
    from pruneseek.bench.retrain import bench_retrain
    from pruneseek.errors import PruneseekError
    from pruneseek.io import atomic_write_json

    folders = {}
    for item in args.model:
        label, sep, folder = item.partition("=")
        if not sep or not label or not folder or label in ("teacher", "bicubic") or label in folders:
            raise PruneseekError(f"--model {item!r}: give LABEL=DIR with a new label other than teacher and bicubic")
        folders[label] = Path(folder)
    if not folders:
        raise PruneseekError("bench retrain needs at least one --model LABEL=DIR (a folder from export or retrain)")
    result = bench_retrain(folders, rounds=args.rounds or 5)
    out = args.out or Path("results") / "retrain-tsdsr-mini.json"
    atomic_write_json(out, result)
    for name, m in result["metrics"].items():
        cells = []
        for metric in ("psnr", "haarpsi"):
            e = m[metric]
            cell = f"{metric} {e['mean']:.4g} [{e['ci95'][0]:.4g}, {e['ci95'][1]:.4g}]"
            if "minus_teacher" in e:
                d = e["minus_teacher"]
                cell += f" (vs teacher {d['mean']:+.3g}, {d['verdict']})"
            cells.append(cell)
        cost = result["costs"].get(name)
        extra = (f"; {cost['params']:,} params, {cost['macs']:,} MACs, latency {cost['latency_over_teacher']:.3f} of "
                 "the teacher's") if cost else ""
        print(f"  {name:<10} {', '.join(cells)}{extra}")
    if args.json:
        print(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


def run_real_shape(args: argparse.Namespace) -> int:
    from pruneseek.bench.real_shape import bench_real_shape
    from pruneseek.io import atomic_write_json

    dtype = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", None: "bf16"}[args.dtype]
    result = bench_real_shape(latent_side=args.latent_side, steps=args.steps or 2, dtype=dtype,
                              batch=1)
    out = args.out or Path("results") / "bench-real-shape.json"
    atomic_write_json(out, result)
    if args.json:
        print(json.dumps(result, indent=2))
    est = result["estimate"]
    print(f"{result['params']:,} parameters, {dtype}, {result['pixels']} px crops, gradient checkpointing: "
          f"{', '.join(f'{s:.1f}' for s in result['step_seconds'])} s per step; measured {result['measured_run_gb']:.2f} GB "
          f"over the process's start (peak RSS {result['peak_rss_gb']:.2f} GB), estimated {est['total_gb']:.2f} GB")
    for row in result["cards"]["rows"]:
        fits = ", ".join(card for card, ok in row["fits"].items() if ok) or "none"
        ck = "with" if row["gradient_checkpointing"] else "without"
        print(f"  512 px, batch {row['batch']}, {ck} checkpointing: {row['estimate_gb']:6.1f} GB -> fits {fits}")
    print(f"wrote {out}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from pruneseek.bench.export import ExportBenchConfig, bench_export
    from pruneseek.errors import PruneseekError
    from pruneseek.io import atomic_write_json

    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    unknown = [m for m in models if m not in ("tsdsr-mini", "sd3-medium-shape")]
    if unknown or not models:
        raise PruneseekError(f"unknown --models {unknown or args.models!r}; choose from tsdsr-mini, sd3-medium-shape")
    cfg = ExportBenchConfig(models=models, rounds=args.rounds or 5, device=args.device)
    result = bench_export(cfg)
    out = args.out or Path("results") / "bench-export.json"
    atomic_write_json(out, result)
    if args.json:
        print(json.dumps(result, indent=2))
    print(f"-> {out}")
    return 0


def engine_defaults(device: str, shape: str | None = None, dtype: str | None = None,
                    lora_rank: int | None = None) -> tuple[str, str, int]:
    """``(shape, dtype, lora_rank)`` with the engine bench's device-dependent defaults filled in: on CUDA the
    SD3-medium shape at 512 px equivalent latents, bfloat16 and LoRA rank 64 (TSD-SR's setting); on CPU the
    bench-width model, float32, rank 8 (TinyFusion's)."""
    cuda = str(device).startswith("cuda")
    return (shape or ("sd3-medium" if cuda else "cpu"), dtype or ("bfloat16" if cuda else "float32"),
            lora_rank or (recipes.TINYSR["lora_rank"] if cuda else recipes.LEARNED_MASK["lora_rank"]))


def run(args: argparse.Namespace) -> int:
    from pruneseek.bench.engine import SD3_MEDIUM, EngineBenchConfig, bench_engine
    from pruneseek.errors import PruneseekError
    from pruneseek.io import atomic_write_json

    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise PruneseekError("--device cuda was asked for, but torch sees no CUDA device here; use --device cpu")
    if args.what == "export":
        return run_export(args)
    if args.what == "retrain":
        return run_retrain(args)
    if args.what == "testbed":
        with torch_threads(args.threads):
            return run_testbed(args)
    if args.what == "real-shape":
        with torch_threads(args.threads):
            return run_real_shape(args)
    args.shape, args.dtype, args.lora_rank = engine_defaults(args.device, args.shape, args.dtype, args.lora_rank)
    cfg = EngineBenchConfig(
        batch=args.batch, steps=args.steps or 8, rounds=args.rounds or 3, lora_rank=args.lora_rank,
        lora_alpha=float(args.lora_rank if args.shape == "sd3-medium" else 2 * args.lora_rank),
        strategy=args.strategy, device=args.device, dtype=args.dtype,
    )
    if args.shape == "sd3-medium":
        cfg.model, cfg.model_name, cfg.latent, cfg.context_tokens = dict(SD3_MEDIUM), "sd3-medium-shape", 64, 333
    result = bench_engine(cfg)
    out = args.out or Path("results") / ("bench-engine-gpu.json" if args.device.startswith("cuda") else "bench-engine.json")
    atomic_write_json(out, result)
    if args.json:
        print(json.dumps(result, indent=2))
    print(
        f"blend/plain {result['blend_over_plain']:.3f}, skip/plain {result['skip_over_plain']:.3f}; "
        f"peak MB plain {result['peak_mem_plain_mb']:.0f}, blend {result['peak_mem_blend_mb']:.0f}, "
        f"skip {result['peak_mem_skip_mb']:.0f} -> {out}"
    )
    return 0
