"""Named search-space presets: TOML files in ``search_spaces/``, loadable by name or path.

A preset gives the layer count and either a uniform shape (``block``, ``keep``) or uneven ``blocks``
as ``[[B_0, s_0], [B_1, s_1], …]``, plus an optional ``[transfer]`` table (``k`` and ``topology`` =
"pairs" | "chain", or ``edges`` = ``[[j, h], …]``) for the TinySR transfer-reachable space::

    name = "tsdsr-24-r50"
    model = "tsdsr"
    description = "TSD-SR 24 → 12 as 6 × (4 keep 2)"
    source = "TinySR §3.1"
    layers = 24
    block = 4
    keep = 2

    [transfer]
    k = 1
    topology = "pairs"

A malformed preset fails with a :class:`PresetError` naming the file and the field.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from pruneseek.errors import PresetError, SpaceError
from pruneseek.resources import bundled_dir
from pruneseek.spaces.blocks import BlockSpace
from pruneseek.spaces.ratio import RATIO_TOLERANCE, check_ratio
from pruneseek.spaces.transfer import TransferSpace, make_topology, topology_name

_TOP_KEYS = {"name", "model", "description", "source", "layers", "block", "keep", "blocks", "transfer"}
_TRANSFER_KEYS = {"k", "topology", "edges"}


@dataclass(frozen=True)
class SpacePreset:
    """A named search space, with the transfer (k, topology) its TinySR search uses by default."""

    name: str
    space: BlockSpace
    model: str | None = None
    description: str = ""
    source: str = ""
    transfer_k: int | None = None
    topology: str = "pairs"
    path: Path | None = field(default=None, compare=False)

    def transfer_space(self, k: int | None = None, topology: str | None = None) -> TransferSpace | None:
        """The transfer-reachable space for ``k`` (default: the preset's), or None without a transfer."""
        k = self.transfer_k if k is None else k
        if k is None:
            return None
        return TransferSpace(self.space, k, topology or self.topology)


def presets_dir() -> Path:
    return bundled_dir("search_spaces")


def list_presets() -> list[str]:
    """Names of the bundled presets, sorted."""
    return sorted(p.stem for p in presets_dir().glob("*.toml"))


def _field(path: Path, name: str, message: str) -> PresetError:
    return PresetError(f"{path}: field '{name}': {message}")


def _int(path: Path, data: dict, name: str, minimum: int = 0, prefix: str = "") -> int:
    value = data[name]
    if not isinstance(value, int) or isinstance(value, bool):
        raise _field(path, prefix + name, f"must be an integer, got {value!r}")
    if value < minimum:
        raise _field(path, prefix + name, f"must be at least {minimum}, got {value}")
    return value


def _parse(path: Path, data: dict[str, Any]) -> SpacePreset:
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise _field(path, unknown[0], f"unknown field; a search-space preset has {sorted(_TOP_KEYS)}")
    if "layers" not in data:
        raise _field(path, "layers", "missing; give the number of layers N")
    layers = _int(path, data, "layers", minimum=1)
    for text in ("name", "model", "description", "source"):
        if text in data and not isinstance(data[text], str):
            raise _field(path, text, f"must be a string, got {data[text]!r}")

    if "blocks" in data:
        for extra in ("block", "keep"):
            if extra in data:
                raise _field(path, extra, "give either 'blocks' (uneven) or 'block' and 'keep' (uniform), not both")
        blocks = data["blocks"]
        if not isinstance(blocks, list) or not blocks:
            raise _field(path, "blocks", "must be a non-empty list of [size, keep] pairs")
        try:
            space = BlockSpace([tuple(b) if isinstance(b, list) else (b,) for b in blocks])
        except SpaceError as exc:
            raise _field(path, "blocks", str(exc)) from None
        if space.num_layers != layers:
            raise _field(path, "blocks", f"block sizes add up to {space.num_layers}, but layers = {layers}")
    else:
        for needed in ("block", "keep"):
            if needed not in data:
                raise _field(path, needed, "missing; give 'block' and 'keep' (or an uneven 'blocks' list)")
        block, keep = _int(path, data, "block", minimum=1), _int(path, data, "keep")
        if layers % block:
            raise _field(path, "block", f"block size {block} does not divide layers = {layers}")
        if keep > block:
            raise _field(path, "keep", f"cannot keep {keep} of a block of {block} layers")
        space = BlockSpace.uniform(layers, block, keep)

    transfer_k, topology = None, "pairs"
    if "transfer" in data:
        transfer = data["transfer"]
        if not isinstance(transfer, dict):
            raise _field(path, "transfer", "must be a table with 'k' and 'topology' or 'edges'")
        unknown = sorted(set(transfer) - _TRANSFER_KEYS)
        if unknown:
            raise _field(path, f"transfer.{unknown[0]}", f"unknown field; [transfer] has {sorted(_TRANSFER_KEYS)}")
        if "k" not in transfer:
            raise _field(path, "transfer.k", "missing; how many kept layers a transfer moves")
        transfer_k = _int(path, transfer, "k", prefix="transfer.")
        if "topology" in transfer and "edges" in transfer:
            raise _field(path, "transfer.edges", "give either 'topology' or 'edges', not both")
        try:
            if "edges" in transfer:
                edges = transfer["edges"]
                if not isinstance(edges, list) or not all(isinstance(e, list) for e in edges):
                    raise SpaceError("must be a list of [j, h] block pairs")
                topology = topology_name(make_topology(edges, space.num_blocks))
            elif "topology" in transfer:
                if not isinstance(transfer["topology"], str):
                    raise SpaceError("must be 'pairs', 'chain' or an edge list such as '0-1,2-3'")
                topology = topology_name(make_topology(transfer["topology"], space.num_blocks))
        except SpaceError as exc:
            name = "transfer.edges" if "edges" in transfer else "transfer.topology"
            raise _field(path, name, str(exc)) from None

    return SpacePreset(
        name=data.get("name", path.stem),
        space=space,
        model=data.get("model"),
        description=data.get("description", ""),
        source=data.get("source", ""),
        transfer_k=transfer_k,
        topology=topology,
        path=path,
    )


def load_preset(name_or_path: str | Path) -> SpacePreset:
    """Load a preset by bundled name (``tsdsr-24-r50``) or by path to a TOML file."""
    text = str(name_or_path)
    path = Path(text)
    if not (text.endswith(".toml") or path.is_file()):
        path = presets_dir() / f"{text}.toml"
        if not path.is_file():
            raise PresetError(
                f"unknown search-space preset {text!r}; bundled presets: {', '.join(list_presets())} "
                "(or give a path to a .toml file)"
            )
    if not path.is_file():
        raise PresetError(f"{path}: no such preset file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PresetError(f"{path}: not valid TOML: {exc}") from None
    return _parse(path, data)


def find_preset(model: str, ratio: float | Fraction) -> SpacePreset:
    """The bundled preset for ``model`` whose ratio matches ``ratio`` (two-decimal tolerance)."""
    r = check_ratio(ratio)
    candidates = [load_preset(n) for n in list_presets()]
    candidates = [p for p in candidates if p.model == model]
    if not candidates:
        raise PresetError(f"no bundled search-space preset for model {model!r}; give --space NAME or a .toml path")
    for preset in candidates:
        if abs(preset.space.ratio - r) <= RATIO_TOLERANCE:
            return preset
    offered = ", ".join(f"{float(p.space.ratio):.4g} ({p.name})" for p in sorted(candidates, key=lambda p: p.space.ratio))
    raise PresetError(
        f"no bundled {model} preset realises ratio {float(r):.4g}; available ratios: {offered}; "
        "or give --space with a preset of your own"
    )


def stack_space(model: str, sizes: list[int], ratio: float | Fraction) -> SpacePreset:
    """A space for a model without a bundled preset of its size: one block per stack (full space within each), each
    keeping the share ``1 − ratio`` (FLUX: its double and single stacks pruned apart, as Flux.1-Lite reads them).
    When a stack cannot realise ``ratio`` on its own, one block over all layers (the full space C(N, M))."""
    from pruneseek.spaces.ratio import keep_for_ratio

    try:
        blocks = [(size, keep_for_ratio(ratio, size, what="stack")) for size in sizes]
    except SpaceError:
        blocks = [(sum(sizes), keep_for_ratio(ratio, sum(sizes), what="model"))]
    space = BlockSpace(blocks)
    name = f"{model}-{space.num_layers}-r{float(space.ratio):.2g}-stacks"
    return SpacePreset(name=name, space=space, model=model, source="pruneseek: one full block per stack",
                       description=f"{model} {space.num_layers} → {sum(k for _, k in blocks)}: {space.describe()}")


def family_preset(model: str, ratio: float | Fraction | None, space: str | None, sizes: list[int]) -> SpacePreset:
    """``--space`` if given, else the bundled preset for ``model`` with this layer count and ``ratio``, else
    :func:`stack_space`."""
    if space:
        return load_preset(space)
    r = check_ratio(0.5 if ratio is None else ratio)
    for name in list_presets():
        preset = load_preset(name)
        if (preset.model == model and preset.space.num_layers == sum(sizes)
                and abs(preset.space.ratio - r) <= RATIO_TOLERANCE):
            return preset
    return stack_space(model, sizes, r)
