"""`pruneseek upscale`: 4× super-resolution of image files with an export folder, the unpruned model or bicubic.

Each input image (any size) is upscaled bicubic, super-resolved on half-overlapping tiles and written as an 8-bit
``<stem>.png`` at 4× its size, atomically (:func:`pruneseek.evaluation.upscale_images`, docs/design.md §9.4).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from pruneseek.commands.args import (
    add_target_arguments,
    add_threads_argument,
    command_parser,
    positive_int,
    torch_threads,
)

HELP = "4x super-resolve image files with an export folder, tsdsr or bicubic"
DESCRIPTION = (
    "Write OUT/<stem>.png (8-bit RGB, 4x the input's size) for an image file or every image of a folder. "
    "--model is an export folder, 'tsdsr' (the unpruned model from the model options: the bundled tsdsr-mini by "
    "default) or 'bicubic'. Alpha is dropped and the EXIF orientation applied."
)
EXAMPLES = """examples:
  pruneseek upscale --model pruned-mini --input photo.png --out sr/
  pruneseek upscale --model tsdsr --input LR_DIR --out sr/ --quiet
  pruneseek upscale --model DIR --input LR_DIR --out sr/ --base SD3_DIR --lora LORA_DIR --embeddings EMB_DIR \\
                    --tile 512 --device cuda
then score them:  pruneseek evaluate --sr sr/ --hr HR_DIR
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = command_parser(sub, "upscale", HELP, DESCRIPTION, EXAMPLES)
    p.add_argument("--model", required=True, help="an export folder, 'tsdsr' (unpruned) or 'bicubic'")
    p.add_argument("--input", type=Path, required=True, help="an image file or a folder of images")
    p.add_argument("--out", type=Path, required=True, help="output folder (created; <stem>.png per input)")
    p.add_argument("--tile", type=positive_int, default=64, help="SR tile side, a multiple of 16 (default 64)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_threads_argument(p)
    add_target_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pruneseek.commands.evaluate import resolve_model
    from pruneseek.evaluation import check_readable, check_sr_settings, image_files, upscale_images

    check_readable(image_files(args.input, "input"))  # a missing, empty or non-image input fails before the model loads
    if args.model != "bicubic":
        check_sr_settings(args.tile, 4)
    with torch_threads(args.threads):
        model, label = resolve_model(args)
        written = upscale_images(model, args.input, args.out, tile=args.tile, progress=not args.quiet)
    print(f"{label}: wrote {len(written)} image{'s' if len(written) != 1 else ''} into {args.out}")
    return 0
