"""`pruneseek teacher train|eval`: the bundled tsdsr-mini teacher, trained and measured by project code."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from pruneseek import recipes
from pruneseek.commands.args import command_parser, nonnegative_int, positive_int

EXAMPLES = """examples:
  pruneseek teacher train                     # writes pruneseek/weights/tsdsr-mini.safetensors
  pruneseek teacher train --steps 200 --out mini.safetensors
  pruneseek teacher eval --json               # PSNR/SSIM vs bicubic on the held-out photographs
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = command_parser(
        sub, "teacher", "train or evaluate the bundled tsdsr-mini teacher",
        "Train tsdsr-mini on the built-in train photographs, or evaluate it against bicubic "
        "upsampling on the held-out ones.", EXAMPLES)
    p.add_argument("action", choices=["train", "eval"])
    t = recipes.TEACHER
    p.add_argument("--steps", type=positive_int, default=t["steps"], help=f"train: optimisation steps (default {t['steps']})")
    p.add_argument("--batch", type=positive_int, default=t["batch"], help=f"train: crops per step (default {t['batch']})")
    p.add_argument("--lr", type=float, default=t["lr"], help=f"train: peak learning rate (default {t['lr']:g}, cosine "
                   f"to {t['min_lr']:g})")
    p.add_argument("--degradation", choices=sorted(recipes.DEGRADATIONS), default=t["degradation"],
                   help=f"train: degradation preset of the LR inputs (default {t['degradation']}; docs/design.md §8)")
    p.add_argument("--seed", type=nonnegative_int, default=0)
    p.add_argument("--init", type=Path, help="train: continue from these weights (default: a fresh model)")
    p.add_argument("--first-pair", type=nonnegative_int, default=0,
                   help="train: index of the first training crop (continue with crops not seen before)")
    p.add_argument("--out", type=Path, help="train: weights file (default: the bundled path); eval: JSON file")
    p.add_argument("--weights", type=Path, help="eval: weights to evaluate (default: the bundled ones)")
    p.add_argument("--json", action="store_true", help="eval: print the JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pruneseek.io import atomic_write_json
    from pruneseek.targets.mini import WEIGHTS
    from pruneseek.evaluation import eval_teacher
    from pruneseek.teacher import TeacherConfig, command_line, train_teacher

    if args.action == "train":
        cfg = TeacherConfig(steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed, degradation=args.degradation,
                            init=str(args.init) if args.init else None, first_pair=args.first_pair)
        out = args.out or WEIGHTS
        record = train_teacher(cfg, out, command=command_line(), progress=not args.quiet)
        print(f"L1 {record['first_l1']:.4f} -> {record['final_l1']:.4f} in {record['seconds']:.0f} s; wrote {out}")
        return 0
    result = eval_teacher(args.weights)
    if args.out:
        atomic_write_json(args.out, result)
    if args.json:
        print(json.dumps(result, indent=2))
    m, gain = result["mean"], result["teacher_minus_bicubic"]
    print(f"held-out mean over {result['crops']} crops ({', '.join(result['images'])}; {result['degradation']} "
          f"degradation): teacher PSNR {m['psnr_teacher']:.2f} dB, HaarPSI {m['haarpsi_teacher']:.4f}; bicubic PSNR "
          f"{m['psnr_bicubic']:.2f} dB, HaarPSI {m['haarpsi_bicubic']:.4f}")
    for name, unit in (("psnr", " dB"), ("haarpsi", "")):
        g = gain[name]
        print(f"teacher − bicubic {name}: {g['mean']:+.4g}{unit} (95 % CI {g['ci_low']:+.4g} … {g['ci_high']:+.4g}; "
              f"{g['verdict']})")
    return 0
