"""`pruneseek space`: the exact sizes of a search space (docs/design.md §3)."""
from __future__ import annotations

import argparse
import json
from typing import Any

from pruneseek.commands.args import command_parser, nonnegative_int, positive_int, ratio, resolve_space
from pruneseek.spaces import BlockSpace, TransferSpace, list_presets, load_preset

EXAMPLES = """examples:
  pruneseek space tsdsr-24-r50
  pruneseek space --layers 24 --block 4 --keep 2 --json
  pruneseek space --layers 24 --block 3 --ratio 0.33 --transfer-k 1 --topology chain
  pruneseek space --blocks 4:2,4:2,4:2,6:3,6:3 --transfer-k 1 --topology 0-1,1-2,3-4
  pruneseek space --list
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = command_parser(
        sub, "space", "print the exact sizes of a search space",
        "Print the full, block-factored (valid) and transfer-reachable sizes of a search space, "
        "from a preset or from --layers/--block/--keep.", EXAMPLES)
    p.add_argument("preset", nargs="?", help="a bundled preset name (see --list) or a path to a .toml preset")
    p.add_argument("--list", action="store_true", help="list the bundled presets and exit")
    p.add_argument("--layers", type=positive_int, metavar="N", help="number of layers N")
    p.add_argument("--block", type=positive_int, metavar="B", help="layers per block (must divide N)")
    shape = p.add_mutually_exclusive_group()
    shape.add_argument("--keep", type=nonnegative_int, metavar="S", help="layers kept per block")
    shape.add_argument("--ratio", type=ratio, metavar="R", help="fraction of layers removed, e.g. 0.5")
    p.add_argument(
        "--blocks", metavar="B:S,...", help="uneven blocks as size:keep pairs, e.g. 4:2,4:2,6:3 (instead of --block)"
    )
    p.add_argument("--transfer-k", type=nonnegative_int, metavar="K", help="kept layers a transfer may move per pair")
    p.add_argument(
        "--topology", metavar="T", help="pair topology: pairs (default), chain, or an edge list such as 0-1,1-2"
    )
    p.add_argument("--json", action="store_true", help="print a JSON object instead of a table")
    p.set_defaults(run=run)


def summary(name: str, space: BlockSpace, transfer: TransferSpace | None) -> dict[str, Any]:
    """The cardinalities as a JSON-ready dict (exact integers; fractions also as 'p/q' strings)."""
    out: dict[str, Any] = {
        "name": name,
        "layers": space.num_layers,
        "kept": space.num_kept,
        "ratio": float(space.ratio),
        "blocks": [list(b) for b in space.shape],
        "full": space.full_size(),
        "valid": space.size(),
        "fraction": float(space.fraction()),
        "fraction_exact": str(space.fraction()),
    }
    if transfer is not None:
        out["transfer"] = {"k": transfer.k, "topology": transfer.topology}
        out["reachable"] = transfer.size()
        out["reachable_fraction"] = float(transfer.fraction())
        out["reachable_fraction_exact"] = str(transfer.fraction())
    return out


def _percent(x: float) -> str:
    return f"{100 * x:.4g} %"


def format_table(info: dict[str, Any], space: BlockSpace) -> str:
    rows = [
        ("full", f"C({info['layers']}, {info['kept']})", info["full"], 1.0),
        ("valid", "Π C(B_j, s_j)", info["valid"], info["fraction"]),
    ]
    if "reachable" in info:
        t = info["transfer"]
        rows.append(("reachable", f"k={t['k']}, {t['topology']}", info["reachable"], info["reachable_fraction"]))
    head = f"{info['name']}: {space.describe()} (ratio {info['ratio']:.4g})"
    lines = [head, "", f"  {'space':<10} {'rule':<22} {'masks':>16} {'of full':>10}"]
    for label, rule, count, frac in rows:
        lines.append(f"  {label:<10} {rule:<22} {count:>16,} {_percent(frac):>10}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.list:
        for name in list_presets():
            preset = load_preset(name)
            print(f"{name:<20} {preset.space.describe():<40} {preset.description}")
        return 0
    name, space, transfer = resolve_space(args)
    info = summary(name, space, transfer)
    print(json.dumps(info, indent=2) if args.json else format_table(info, space))
    return 0
