"""`pruneseek landscape`: simulated searches on landscapes with a known optimum (issue 8, the landscape lab).

Runs a sweep (landscape family × algorithm × seeds) and writes ``<out>/landscape-<name>.json``
(atomically) with, per family and algorithm, the success rate (found the exact optimum), mean and worst
regret and mean rank percentile of the chosen mask, plus ``<out>/landscape-<name>.png``. With
``--bench`` it measures search throughput instead and writes ``<out>/bench-landscape.json``.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from pruneseek.commands.args import (command_parser, nonnegative_float, nonnegative_int, positive_float, positive_int, ratio,
                                     resolve_space)
from pruneseek.errors import PruneseekError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

EXAMPLES = """examples:
  pruneseek landscape                                    # tsdsr-24-r50: 24 layers, 6 × (4 keep 2), pairs, k=1
  pruneseek landscape --layers 24 --block 4 --keep 2 --seeds 500 --steps 500 --json
  pruneseek landscape --families inside,transfer --algorithms tinyfusion,tinysr-marginal,tinysr-next-option
  pruneseek landscape --layers 12 --block 4 --keep 2 --seeds 50 --steps 200 --name small
  pruneseek landscape --bench                            # results/bench-landscape.json (runs_per_minute)

families:   planted-inside (inside), planted-outside-1-transfer (transfer), planted-outside-far (far),
            random-quadratic (random)
algorithms: tinyfusion, tinysr-marginal (tinysr), tinysr-next-option (next-option), random-min,
            sensitivity, sensitivity-greedy, shortgpt
"""

DEFAULT_PRESET = "tsdsr-24-r50"


def _names(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of names")
    return names


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = command_parser(
        sub, "landscape", "simulated mask searches on landscapes whose best mask is known exactly",
        "Landscape lab: run every search algorithm on synthetic quadratic landscapes over masks, "
        "score each decision against the exact enumeration of all C(N, M) masks, and write the summary.", EXAMPLES)
    p.add_argument("preset", nargs="?", help=f"a bundled preset name or .toml path (default {DEFAULT_PRESET} "
                   "when no --layers is given)")
    p.add_argument("--layers", type=positive_int, metavar="N", help="number of layers N")
    p.add_argument("--block", type=positive_int, metavar="B", help="layers per block (must divide N)")
    shape = p.add_mutually_exclusive_group()
    shape.add_argument("--keep", type=nonnegative_int, metavar="S", help="layers kept per block")
    shape.add_argument("--ratio", type=ratio, metavar="R", help="fraction of layers removed, e.g. 0.5")
    p.add_argument("--blocks", metavar="B:S,...", help="uneven blocks as size:keep pairs, e.g. 4:2,4:2,6:3")
    p.add_argument("--transfer-k", type=nonnegative_int, metavar="K", help="layers a TinySR transfer moves (default 1)")
    p.add_argument("--topology", metavar="T", help="pair topology; must be a matching such as 'pairs' (default)")
    p.add_argument("--seeds", type=positive_int, metavar="S",
                   help="landscapes per family, one search of each algorithm on each (default 200; --bench: 1000)")
    p.add_argument("--steps", type=positive_int, default=500, help="optimisation steps per learned search (500)")
    p.add_argument("--samples", type=positive_int, default=4, help="masks drawn per step (4)")
    p.add_argument("--lr", type=positive_float, default=None, help="Adam learning rate on the logits (3e-3)")
    p.add_argument("--ruggedness", type=nonnegative_float, default=0.3,
                   help="planted families: random-interaction size relative to the planted signal (0.3)")
    p.add_argument("--coupling", type=nonnegative_float, default=0.0,
                   help="planted families: positive-definite pairwise structure in the planted signal that "
                   "scrambles per-layer scores (0 = linear signal)")
    p.add_argument("--families", type=_names, default=None, help="comma-separated families (default: all four)")
    p.add_argument("--algorithms", type=_names, default=None, help="comma-separated algorithms (default: all)")
    p.add_argument("--name", help="result name: <out>/landscape-<name>.json (default: the preset or shape)")
    p.add_argument("--out", type=Path, default=Path("results"), help="output folder (default results/)")
    p.add_argument("--no-plot", action="store_true", help="do not write the PNG plot")
    p.add_argument("--bench", action="store_true", help="measure searches per minute; write <out>/bench-landscape.json")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--json", action="store_true", help="print the JSON summary instead of a table")
    p.set_defaults(run=run)


def _space(args: argparse.Namespace):
    from pruneseek.spaces import TransferSpace

    if args.preset is None and args.layers is None and args.blocks is None:
        args.preset = DEFAULT_PRESET
    if args.preset is None and args.transfer_k is None:
        args.transfer_k = 1  # TinySR's default transfer: one layer per pair
    name, space, transfer = resolve_space(args)
    if transfer is None:
        transfer = TransferSpace(space, 1, args.topology or "pairs")
    if name == "custom" and space.is_uniform:
        b = space.blocks[0]
        name = f"n{space.num_layers}-b{b.size}-s{b.keep}"
    return name, space, transfer


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from pruneseek.io import atomic_write_json
    from pruneseek.landscape.landscapes import FAMILIES
    from pruneseek.landscape.search_jax import SearchConfig
    from pruneseek.landscape.sweep import (ALGORITHMS, bench_landscape, log_stderr, plot_summary, run_sweep,
                                           summary_table)

    if args.name is not None and not _NAME.fullmatch(args.name):
        raise PruneseekError(f"--name {args.name!r} must be letters, digits, '.', '_' or '-' (it names a file)")
    name, space, transfer = _space(args)
    cfg = SearchConfig(steps=args.steps, samples=args.samples, k=transfer.k, topology=transfer.topology)
    if args.lr is not None:
        cfg = replace(cfg, lr=args.lr)
    log = None if args.quiet else log_stderr
    if args.bench:
        out = args.out / "bench-landscape.json"
        result = bench_landscape(seeds=args.seeds or 1000, steps=args.steps, space=space,
                                 algorithms=args.algorithms or ("tinyfusion", "tinysr-marginal", "tinysr-next-option"),
                                 config=cfg, out=out)
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            per = ", ".join(f"{k} {v['runs_per_minute']:.0f}" for k, v in result["per_algorithm"].items())
            print(f"{result['runs_per_minute']:.0f} searches of {args.steps} steps per minute ({per}) -> {out}")
        return 0
    summary = run_sweep(space, transfer, families=args.families or list(FAMILIES),
                        algorithms=args.algorithms or list(ALGORITHMS), seeds=args.seeds or 200, config=cfg,
                        ruggedness=args.ruggedness, coupling=args.coupling, name=args.name or name, log=log)
    stem = f"landscape-{summary['name']}"
    path = atomic_write_json(args.out / f"{stem}.json", summary)
    if not args.no_plot:
        plot_summary(summary, args.out / f"{stem}.png")
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(summary_table(summary))
        print(f"-> {path}")
    return 0
