"""`pruneseek evaluate`: the papers' metrics of a model (or of existing SR images) on image folders.

Three modes (docs/design.md §9.4): ``--sr SR_DIR --hr HR_DIR`` scores existing SR images; ``--model M --hr HR_DIR
--lr LR_DIR`` runs a model on each LR image; ``--model M --hr HR_DIR`` synthesises each LR from its HR with the
degradation preset of the model (``--seed``, ``--degradation``). The work is :func:`pruneseek.evaluation.evaluate_folders`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from pruneseek.commands.args import (
    add_target_arguments,
    add_threads_argument,
    command_parser,
    nonnegative_int,
    positive_int,
    target_source,
    torch_threads,
)

HELP = "PSNR/SSIM (Y, BasicSR), HaarPSI, GMSD of a model or of SR images against HR folders"
DESCRIPTION = (
    "Score super-resolution against HR images with the papers' convention: PSNR and SSIM on the Y channel of "
    "8-bit images with a border crop of --scale pixels (BasicSR), plus HaarPSI, GMSD and LPIPS (when its weights "
    "are local). --model is an export folder, 'tsdsr' (the unpruned model from the model options: the bundled "
    "tsdsr-mini by default) or 'bicubic'. Files pair by name: " + "{rule}."
)
EXAMPLES = """examples:
  pruneseek evaluate --sr SR_DIR --hr HR_DIR                       # score existing SR images
  pruneseek evaluate --model pruned-mini --hr HR_DIR --lr LR_DIR   # run an export folder on real LR images
  pruneseek evaluate --model tsdsr --hr HR_DIR --seed 0            # LR synthesised from HR (the model's preset)
  pruneseek evaluate --model bicubic --hr HR_DIR --json --out eval/
  pruneseek evaluate --model DIR --hr HR --lr LR --base SD3_DIR --lora LORA_DIR --embeddings EMB_DIR \\
                     --tile 512 --device cuda                       # an export of the real TSD-SR
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    from pruneseek.evaluation import NAME_RULE

    p = command_parser(sub, "evaluate", HELP, DESCRIPTION.format(rule=NAME_RULE), EXAMPLES)
    p.add_argument("--model", help="an export folder, 'tsdsr' (unpruned, from the model options) or 'bicubic'")
    p.add_argument("--hr", type=Path, help="folder of HR (ground-truth) images")
    p.add_argument("--lr", type=Path, help="folder of LR images (with --model); default: synthesised from HR")
    p.add_argument("--sr", type=Path, help="folder of SR images to score (without --model)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="degradation seed of synthesised LR (default 0)")
    p.add_argument("--degradation", choices=["realesrgan", "testbed"], default=None,
                   help="degradation preset of synthesised LR (default: the model's own; realesrgan for bicubic)")
    p.add_argument("--tile", type=positive_int, default=64, help="SR tile side, a multiple of 16 (default 64)")
    p.add_argument("--scale", type=positive_int, default=4, help="upscaling factor and border crop (default 4)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--out", type=Path, help="write evaluate.json and evaluate.csv into this folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no per-image lines")
    add_threads_argument(p)
    add_target_arguments(p)
    p.set_defaults(run=run)


def resolve_model(args: argparse.Namespace):
    """``(model, label)`` for ``--model``: ``"bicubic"``, the unpruned target of the model options (``tsdsr``),
    or an export folder loaded with :class:`~pruneseek.targets.load.TargetSource` ``(pruned=DIR)``."""
    from pruneseek.errors import TargetError
    from pruneseek.targets.load import TargetSource

    spec = args.model
    options = [f"--{k}" for k in ("weights", "base", "lora", "embeddings") if getattr(args, k) is not None]
    if spec == "bicubic":
        if options:
            raise TargetError(f"--model bicubic runs no network; drop {', '.join(options)}")
        return "bicubic", "bicubic"
    if spec == "tsdsr":
        target = target_source(args).load()
        return target, target.name
    folder = Path(spec)
    if not folder.is_dir():
        raise TargetError(f"--model {spec}: not 'tsdsr', 'bicubic' or a folder written by 'pruneseek export'")
    target = TargetSource(weights=args.weights, base=args.base, lora=args.lora, embeddings=args.embeddings,
                          device=args.device, pruned=folder).load()
    return target, f"{target.name} ({folder.name})"


def _check(args: argparse.Namespace) -> None:
    """Everything that can be checked before a model loads: the options, the folders, the files' headers."""
    from pruneseek.errors import DataError
    from pruneseek.evaluation import check_sr_settings, folder_items

    if args.hr is None:
        raise DataError("give --hr HR_DIR (and --sr SR_DIR, or --model M with or without --lr LR_DIR)")
    folder_items(args.hr, args.sr, args.lr, with_model=args.model is not None)
    if args.model not in (None, "bicubic"):
        check_sr_settings(args.tile, args.scale)


def _print(result: dict, quiet: bool) -> None:
    names = list(result["mean"])
    fmt = lambda v: "-" if v is None else f"{v:.4f}"
    header = f"{'image':<24} {'size':>11} " + " ".join(f"{n:>8}" for n in names)
    model = f", model {result['model']}" if result["model"] else ""
    print(f"{result['images']} images, {result['mode']} mode{model}")
    if not quiet:
        print(header)
        for stem, row in result["per_image"].items():
            print(f"{stem[:24]:<24} {row['size']:>11} " + " ".join(f"{fmt(row.get(n)):>8}" for n in names))
    print(f"{'mean':<24} {'':>11} " + " ".join(f"{fmt(result['mean'][n]):>8}" for n in names))
    for note in result["notes"]:
        print(f"note: {note}")
    for name, why in result["unavailable"].items():
        print(f"not computed: {name} ({why})")


def run(args: argparse.Namespace) -> int:
    from pruneseek.errors import DataError
    from pruneseek.evaluation import evaluate_folders, evaluation_csv
    from pruneseek.io import atomic_write_json, atomic_write_text, json_text

    _check(args)
    with torch_threads(args.threads):
        model, label = resolve_model(args) if args.model is not None else (None, None)
        result = evaluate_folders(args.hr, sr_dir=args.sr, lr_dir=args.lr, model=model, model_name=label,
                                  seed=args.seed, scale=args.scale, tile=args.tile, progress=not args.quiet,
                                  degradation=args.degradation)
    if args.out is not None:
        try:
            atomic_write_json(args.out / "evaluate.json", result)
            atomic_write_text(args.out / "evaluate.csv", evaluation_csv(result))
        except OSError as exc:
            raise DataError(f"cannot write into --out {args.out}: {exc}") from None
    if args.json:
        print(json_text(result))
    else:
        _print(result, args.quiet)
        if args.out is not None:
            print(f"wrote {args.out / 'evaluate.json'} and {args.out / 'evaluate.csv'}")
    return 0
