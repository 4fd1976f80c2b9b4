"""What sub-commands share: argument types (each rejects bad input with a one-line argparse error), the parser
boilerplate, the model options and their :class:`~pruneseek.targets.load.TargetSource`, thread control."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable


def _number(cast: type, adjective: str, minimum: float, inclusive: bool) -> Callable[[str], float]:
    """An argparse type: ``cast(text)``, refusing values below ``minimum`` (or equal to it, if not inclusive)."""
    noun = "integer" if cast is int else "number"

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {adjective} {noun}, got {text!r}") from None
        if value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(f"expected a {adjective} {noun}, got {value:g}")
        return value

    return parse


positive_int = _number(int, "positive", 1, inclusive=True)
nonnegative_int = _number(int, "non-negative", 0, inclusive=True)
nonnegative_float = _number(float, "non-negative", 0.0, inclusive=True)
positive_float = _number(float, "positive", 0.0, inclusive=False)


def ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a ratio in [0, 1) such as 0.5, got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(
            f"the ratio is the fraction of layers removed and must lie in [0, 1), got {value:g}"
        )
    return value


def command_parser(sub: argparse._SubParsersAction, name: str, help: str, description: str, epilog: str = ""
                   ) -> argparse.ArgumentParser:
    """A sub-command's parser with its one-line help, description and examples (kept as written)."""
    return sub.add_parser(name, help=help, description=description, epilog=epilog,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def add_target_arguments(p: argparse.ArgumentParser) -> None:
    """The model options every command that loads a model shares (:class:`~pruneseek.targets.load.TargetSource`)."""
    p.add_argument("--weights", type=Path, help="tsdsr-mini weights (default: the bundled ones)")
    p.add_argument("--base", type=Path, help="real TSD-SR: SD3-medium folder in diffusers layout; other --model "
                   "families: the model folder (config.json) or pipeline folder (model in transformer/)")
    p.add_argument("--lora", type=Path, help="real TSD-SR: LoRA folder (transformer.safetensors, vae.safetensors)")
    p.add_argument("--embeddings", type=Path, help="real TSD-SR: folder with prompt_embeds.pt and pool_embeds.pt")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")


def add_calibration_arguments(p: argparse.ArgumentParser) -> None:
    """The calibration-data options of ``search`` and ``retrain``: crops, their side, the image folder, the seed."""
    from pruneseek import recipes

    p.add_argument("--crops", type=positive_int, default=recipes.SEARCH["crops"],
                   help=f"calibration crops (default {recipes.SEARCH['crops']})")
    p.add_argument("--crop-size", type=positive_int, default=recipes.SEARCH["crop_size"],
                   help=f"HR crop side in pixels (default {recipes.SEARCH['crop_size']}); other families: latent "
                   "side (sd3, dit; flux packs it 2×2) or tokens per sequence (causal-lm)")
    p.add_argument("--data", type=Path, help="tsdsr: folder of HR images (default: the built-in photographs, train "
                   "split); sd3/flux/dit: image folder encoded with the pipeline's VAE; causal-lm: a text file "
                   "(default for other families: synthetic inputs)")
    p.add_argument("--seed", type=nonnegative_int, default=recipes.SEARCH["seed"])


def target_source(args: argparse.Namespace):
    """The :class:`~pruneseek.targets.load.TargetSource` the model options name."""
    from pruneseek.targets.load import TargetSource

    return TargetSource(weights=args.weights, base=args.base, lora=args.lora, embeddings=args.embeddings,
                        device=args.device, family=getattr(args, "model", "tsdsr"))


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


def add_threads_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=positive_int,
                   help="torch CPU threads (default: torch's choice; 1 avoids OpenMP stalls on a shared machine)")


class torch_threads:
    """Context manager: ``torch.set_num_threads(n)`` inside (``n`` None: unchanged), the old value restored after."""

    def __init__(self, n: int | None):
        self.n = n

    def __enter__(self):
        import torch

        self.old = torch.get_num_threads()
        if self.n:
            torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.old)
        return False


def _parse_blocks(text: str):
    from pruneseek.errors import SpaceError
    from pruneseek.spaces import BlockSpace

    pairs = []
    for part in text.split(","):
        pieces = part.strip().split(":")
        if len(pieces) != 2 or not all(x.strip().isdigit() for x in pieces):
            raise SpaceError(f"cannot read block {part.strip()!r}; write blocks as size:keep, e.g. 4:2,4:2,6:3")
        pairs.append((int(pieces[0]), int(pieces[1])))
    return BlockSpace(pairs)


def resolve_space(args: argparse.Namespace):
    """``(name, space, transfer space or None)`` the space options of ``space``/``landscape`` describe (a preset,
    or --layers/--block/--keep|--ratio, or --blocks; --transfer-k/--topology for the transfer space)."""
    from pruneseek.errors import SpaceError
    from pruneseek.spaces import BlockSpace, TransferSpace, load_preset, space_for_ratio

    if args.preset is not None:
        for flag in ("layers", "block", "keep", "ratio", "blocks"):
            if getattr(args, flag) is not None:
                raise SpaceError(f"give either a preset or --{flag} and its companions, not both")
        preset = load_preset(args.preset)
        return preset.name, preset.space, preset.transfer_space(args.transfer_k, args.topology)
    if args.blocks is not None:
        if args.block is not None or args.keep is not None or args.ratio is not None:
            raise SpaceError("--blocks gives each block's size and keep; do not combine it with --block/--keep/--ratio")
        space = _parse_blocks(args.blocks)
        if args.layers is not None and args.layers != space.num_layers:
            raise SpaceError(f"--blocks add up to {space.num_layers} layers, but --layers is {args.layers}")
    else:
        if args.layers is None or args.block is None or (args.keep is None and args.ratio is None):
            raise SpaceError("give a preset name, or --layers N --block B with --keep S or --ratio R (or --blocks)")
        if args.ratio is not None:
            space = space_for_ratio(args.layers, args.block, args.ratio)
        else:
            space = BlockSpace.uniform(args.layers, args.block, args.keep)
    transfer = None
    if args.transfer_k is not None:
        transfer = TransferSpace(space, args.transfer_k, args.topology or "pairs")
    elif args.topology is not None:
        raise SpaceError("--topology needs --transfer-k K (how many kept layers a transfer moves)")
    return "custom", space, transfer


#: ``--model`` choices: the flagship SR target and the families of :mod:`pruneseek.targets.family`.
MODELS = ("tsdsr", "sd3", "flux", "dit", "causal-lm")
