"""The mask file, ``pruneseek.mask/v1``: which layers a search decided to keep, and how it decided.

A mask file is one JSON object::

    {
      "format": "pruneseek.mask/v1",
      "model": {"name": "tsdsr", "num_layers": 24},
      "keep": [0, 3, 5, ...],                # sorted kept layer indices
      "mask": [1, 0, 0, 1, ...],             # 0/1 per layer (TinySR's merge script: prune_mask)
      "strategy": {"name": "tinyfusion", "settings": {...}},
      "space": {"blocks": [[4, 2], ...], "preset": "tsdsr-24-r50", "transfer": {"k": 1, "topology": "pairs"}},
      "probabilities": [[...], ...] | null,  # final option probabilities per block
      "marginals": [...] | null,             # keep probability per layer
      "seed": 0 | null,
      "steps": 2000,
      "created": "...", "pruneseek_version": "...", "confidence": ..., "metrics": {...}, "notes": "..."
    }

The last five keys are optional; no other top-level key is allowed. ``space.blocks``, ``space.preset``
and ``space.transfer`` are each optional (``from_mask`` always writes ``blocks``: the full space
``[[N, M]]`` when no space is given). Reading checks everything and raises :class:`MaskFileError`
naming the file and the field. JSON is strict: NaN and infinity are refused on write and on read.

Membership: without ``space.transfer`` the mask must keep exactly ``s_j`` layers in every block; with
it (TinySR's inter-block transfers), the mask must be reachable in ``TransferSpace(blocks, k, topology)``.
"""
from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from pruneseek import __version__
from pruneseek.errors import MaskFileError, SpaceError
from pruneseek.io import atomic_write_text, json_text
from pruneseek.mask import Mask
from pruneseek.spaces.blocks import BlockSpace
from pruneseek.spaces.presets import SpacePreset, load_preset
from pruneseek.spaces.transfer import TransferSpace

FORMAT = "pruneseek.mask/v1"
#: Per-block option probabilities must sum to 1 within this.
PROBABILITY_TOLERANCE = 1e-3
#: Marginals may stray this far outside [0, 1] (float round-off); further is an error.
MARGINAL_TOLERANCE = 1e-6

REQUIRED_KEYS = ("format", "model", "keep", "mask", "strategy", "space", "probabilities", "marginals", "seed", "steps")
EXTRA_KEYS = ("created", "pruneseek_version", "confidence", "metrics", "notes")
_MODEL_KEYS = ("name", "num_layers")
_STRATEGY_KEYS = ("name", "settings")
_SPACE_KEYS = ("blocks", "preset", "transfer")
_TRANSFER_KEYS = ("k", "topology")



# ----- plain JSON values -------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """numpy/torch scalars and arrays, tuples → plain JSON-like Python values; anything else unchanged."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.ndarray, np.generic)):
        if value.dtype.kind == "f" and value.dtype.itemsize < 8:
            # float16/32: the shortest decimal that reads back as the same value, not its float64 expansion
            short = np.array([float(str(x)) for x in np.ravel(value)], dtype=object)
            return _plain(short.reshape(np.shape(value)).tolist())
        return _plain(value.tolist())
    if hasattr(value, "detach") and hasattr(value, "tolist"):  # a torch tensor
        try:
            return _plain(value.detach().cpu().numpy())
        except (TypeError, RuntimeError):  # bfloat16 and other dtypes numpy lacks
            return _plain(value.detach().cpu().tolist())
    return value


def _kind(value: Any) -> str:
    """A JSON type name for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return f"a Python {type(value).__name__}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ----- validation ----------------------------------------------------------------------------------


class _Checker:
    """Raises :class:`MaskFileError` with ``<file>: field '<name>': <problem>``."""

    def __init__(self, where: str | None):
        self.prefix = f"{where}: " if where else ""

    def fail(self, name: str | None, message: str) -> MaskFileError:
        if name is None:
            return MaskFileError(f"{self.prefix}{message}")
        shown = f"'{name}'" if name.isprintable() else repr(name)  # a key with control characters: escaped
        return MaskFileError(f"{self.prefix}field {shown}: {message}")

    def json_values(self, value: Any, name: str) -> None:
        """Every value JSON can hold, finite; object keys strings."""
        if isinstance(value, float):
            if not math.isfinite(value):
                raise self.fail(name, f"is {value!r}; JSON numbers must be finite (no NaN or infinity)")
        elif value is None or isinstance(value, (bool, int, str)):
            return
        elif isinstance(value, Mapping):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise self.fail(name, f"has key {key!r}; object keys must be strings")
                self.json_values(item, f"{name}.{key}" if name else key)
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                self.json_values(item, f"{name}[{i}]")
        else:
            raise self.fail(name, f"holds {_kind(value)}, which JSON cannot represent")

    def obj(self, doc: Mapping, name: str, allowed: Sequence[str], required: Sequence[str]) -> Mapping:
        value = _get(doc, name.rsplit(".", 1)[-1])
        if not isinstance(value, Mapping):
            raise self.fail(name, f"must be an object with {list(allowed)}, got {_kind(value)}")
        unknown = [k for k in value if k not in allowed]
        if unknown:
            raise self.fail(f"{name}.{unknown[0]}", f"unknown key; '{name}' has {list(allowed)}")
        for key in required:
            if key not in value:
                raise self.fail(f"{name}.{key}", "missing")
        return value

    def name_str(self, value: Any, name: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(name, f"must be a non-empty string, got {_short(value)}")
        return value

    def int_list(self, value: Any, name: str) -> list[int]:
        if not isinstance(value, (list, tuple)):
            raise self.fail(name, f"must be a list of integers, got {_kind(value)}")
        for i, v in enumerate(value):
            if not _is_int(v):
                raise self.fail(name, f"entry {i} is {_short(v)} ({_kind(v)}); entries must be integers")
        return list(value)

    def float_list(self, value: Any, name: str) -> list[float]:
        if not isinstance(value, (list, tuple)):
            raise self.fail(name, f"must be a list of numbers, got {_kind(value)}")
        for i, v in enumerate(value):
            if not _is_number(v):
                raise self.fail(f"{name}[{i}]", f"must be a number, got {_short(v)} ({_kind(v)})")
            if not math.isfinite(v):
                raise self.fail(f"{name}[{i}]", f"is {v!r}; numbers must be finite")
        return [float(v) for v in value]


_MISSING = object()


def _get(doc: Mapping, key: str) -> Any:
    return doc.get(key, _MISSING) if isinstance(doc, Mapping) else _MISSING


def _check_document(doc: Any, where: str | None) -> dict[str, Any]:
    """Validate a mask-file JSON object; return the keyword arguments of :class:`MaskFile`."""
    c = _Checker(where)
    _check_top_level(c, doc)
    model_name, n = _check_model(c, doc)
    mask = _check_mask_and_keep(c, doc, n)
    strategy_name, settings = _check_strategy(c, doc)
    space_out, space, transfer = _check_space(c, doc, n)
    if space is not None:
        _check_membership(c, mask, space, transfer)
    probabilities = _check_probabilities(c, doc["probabilities"], space)
    marginals = _check_marginals(c, doc["marginals"], n)
    seed, steps = _check_seed_and_steps(c, doc)
    extras = {k: doc[k] for k in EXTRA_KEYS if k in doc}
    _check_extras(c, extras)
    return dict(
        model_name=model_name,
        mask=tuple(mask),
        strategy_name=strategy_name,
        settings=copy.deepcopy(dict(settings)),
        space=space_out,
        probabilities=probabilities,
        marginals=marginals,
        seed=seed,
        steps=steps,
        extras=copy.deepcopy(extras),
    )


def _check_top_level(c: _Checker, doc: Any) -> None:
    """A JSON object of the right format, with the required keys and no unknown ones, all JSON values."""
    if not isinstance(doc, Mapping):
        hint = ""
        if isinstance(doc, list):
            hint = (
                "; a bare 0/1 list is a TinySR prune_mask: turn it into a mask file with "
                "MaskFile.from_mask(mask_from_prune_list(...), ...)"
            )
        raise c.fail(None, f"not a pruneseek mask file: expected a JSON object, got {_kind(doc)}{hint}")

    if "format" not in doc:
        raise c.fail(None, "not a pruneseek mask file (no 'format' key)")
    fmt = doc["format"]
    if fmt != FORMAT:
        if isinstance(fmt, str) and fmt.startswith("pruneseek.mask/"):
            raise c.fail("format", f"unknown format {fmt!r}; this pruneseek reads {FORMAT} — upgrade pruneseek")
        raise c.fail(
            "format", f"unknown format {_short(fmt)}; this pruneseek reads {FORMAT} (is this a pruneseek mask file?)"
        )
    unknown = [k for k in doc if k not in REQUIRED_KEYS and k not in EXTRA_KEYS]
    if unknown:
        raise c.fail(
            unknown[0],
            f"unknown key; a {FORMAT} file has {list(REQUIRED_KEYS)} and optionally {list(EXTRA_KEYS)} "
            "(put free-form results under 'metrics' or 'notes')",
        )
    for key in REQUIRED_KEYS:
        if key not in doc:
            raise c.fail(key, f"missing; a {FORMAT} file needs {list(REQUIRED_KEYS)}")
    c.json_values(doc, "")


def _check_model(c: _Checker, doc: Mapping) -> tuple[str, int]:
    """``model``: its name and number of layers."""
    model = c.obj(doc, "model", _MODEL_KEYS, _MODEL_KEYS)
    model_name = c.name_str(model["name"], "model.name")
    n = model["num_layers"]
    if not _is_int(n) or n < 1:
        raise c.fail("model.num_layers", f"must be an integer ≥ 1, got {_short(n)}")
    return model_name, n


def _check_mask_and_keep(c: _Checker, doc: Mapping, n: int) -> list[int]:
    """``mask`` (0/1 per layer, keeping at least one) and ``keep`` (its sorted kept indices)."""
    mask = c.int_list(doc["mask"], "mask")
    if len(mask) != n:
        raise c.fail("mask", f"has {len(mask)} entries, but model.num_layers is {n}; give one 0/1 entry per layer")
    bad = [i for i, v in enumerate(mask) if v not in (0, 1)]
    if bad:
        raise c.fail("mask", f"entry {bad[0]} is {mask[bad[0]]}; a mask holds only 0 (drop) and 1 (keep)")
    kept = [i for i, v in enumerate(mask) if v]
    if not kept:
        raise c.fail("mask", "keeps no layers; a pruned model needs at least one")
    keep = c.int_list(doc["keep"], "keep")
    out_of_range = [v for v in keep if not 0 <= v < n]
    if out_of_range:
        raise c.fail("keep", f"index {out_of_range[0]} is out of range; layers are numbered 0..{n - 1}")
    if any(a >= b for a, b in zip(keep, keep[1:])):
        raise c.fail("keep", f"must be sorted and without repeats, got {_short(keep)}")
    if keep != kept:
        raise c.fail("keep", f"{_short(keep)} does not match 'mask', which keeps {_short(kept)}")
    return mask


def _check_strategy(c: _Checker, doc: Mapping) -> tuple[str, Mapping]:
    """``strategy``: its name and settings object."""
    strategy = c.obj(doc, "strategy", _STRATEGY_KEYS, _STRATEGY_KEYS)
    strategy_name = c.name_str(strategy["name"], "strategy.name")
    settings = strategy["settings"]
    if not isinstance(settings, Mapping):
        raise c.fail("strategy.settings", f"must be an object, got {_kind(settings)}")
    return strategy_name, settings


def _check_space(
    c: _Checker, doc: Mapping, n: int
) -> tuple[dict[str, Any], BlockSpace | None, TransferSpace | None]:
    """``space``: the normalised ``space`` dict, and its block space and transfer space (each or None)."""
    space_doc = c.obj(doc, "space", _SPACE_KEYS, ())
    space_out: dict[str, Any] = {}
    space: BlockSpace | None = None
    if space_doc.get("blocks") is not None:
        space = _check_blocks(c, space_doc["blocks"], n)
        space_out["blocks"] = [list(p) for p in space.shape]
    if space_doc.get("preset") is not None:
        space_out["preset"] = c.name_str(space_doc["preset"], "space.preset")
    transfer: TransferSpace | None = None
    if space_doc.get("transfer") is not None:
        transfer, space_out["transfer"] = _check_transfer(c, space_doc, space)
    return space_out, space, transfer


def _check_blocks(c: _Checker, blocks: Any, n: int) -> BlockSpace:
    """``space.blocks``: [size, keep] pairs whose sizes add up to the model's layers."""
    if not isinstance(blocks, (list, tuple)) or not blocks:
        raise c.fail("space.blocks", f"must be a non-empty list of [size, keep] pairs, got {_kind(blocks)}")
    for j, pair in enumerate(blocks):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(_is_int(v) for v in pair):
            raise c.fail(
                "space.blocks", f"block {j} is {_short(pair)}; each block is a [size, keep] pair of integers"
            )
    try:
        space = BlockSpace([tuple(p) for p in blocks])
    except SpaceError as exc:
        raise c.fail("space.blocks", str(exc)) from None
    if space.num_layers != n:
        raise c.fail("space.blocks", f"block sizes add up to {space.num_layers}, but model.num_layers is {n}")
    return space


def _check_transfer(
    c: _Checker, space_doc: Mapping, space: BlockSpace | None
) -> tuple[TransferSpace, dict[str, Any]]:
    """``space.transfer``: the transfer space and its normalised ``{"k", "topology"}`` dict."""
    t = c.obj(space_doc, "space.transfer", _TRANSFER_KEYS, _TRANSFER_KEYS)
    if space is None:
        raise c.fail("space.transfer", "needs 'space.blocks': a transfer moves layers between blocks")
    k, topology = t["k"], t["topology"]
    if not _is_int(k) or k < 0:
        raise c.fail("space.transfer.k", f"must be an integer ≥ 0, got {_short(k)}")
    if not isinstance(topology, (str, list, tuple)):
        raise c.fail(
            "space.transfer.topology",
            "must be 'pairs', 'chain', an edge string such as '0-1,2-3' or a list of [j, h] pairs, "
            f"got {_kind(topology)}",
        )
    try:
        transfer = TransferSpace(space, k, topology)
    except (SpaceError, TypeError, ValueError) as exc:
        raise c.fail("space.transfer.topology", str(exc)) from None
    return transfer, {"k": k, "topology": topology if isinstance(topology, str) else transfer.topology}


def _check_membership(c: _Checker, mask: list[int], space: BlockSpace, transfer: TransferSpace | None) -> None:
    """The mask lies in the declared space (exact per-block counts, or reachable by transfers)."""
    counts = space.block_counts(mask)
    wanted = [b.keep for b in space.blocks]
    if transfer is None:
        if counts != wanted:
            where_bad = next(j for j, (a, b) in enumerate(zip(counts, wanted)) if a != b)
            raise c.fail(
                "mask",
                f"is not in the declared space: it keeps {counts} layers per block, but space.blocks keeps "
                f"{wanted} (first difference in block {where_bad}); a mask from TinySR transfers needs "
                "'space.transfer'",
            )
    elif not transfer.contains(mask):
        raise c.fail(
            "mask",
            f"is not reachable in the declared space: it keeps {counts} layers per block; space.blocks keeps "
            f"{wanted} and transfers of up to k={transfer.k} layers over the '{transfer.topology}' topology "
            "cannot move layers that way",
        )


def _check_probabilities(
    c: _Checker, probabilities: Any, space: BlockSpace | None
) -> tuple[tuple[float, ...], ...] | None:
    """``probabilities``: null, or one list of option probabilities per block, each summing to 1."""
    if probabilities is None:
        return None
    if space is None:
        raise c.fail("probabilities", "needs 'space.blocks' to say which options they are over")
    if not isinstance(probabilities, (list, tuple)):
        raise c.fail("probabilities", f"must be a list (one list per block) or null, got {_kind(probabilities)}")
    if len(probabilities) != space.num_blocks:
        raise c.fail(
            "probabilities", f"has {len(probabilities)} lists, but space.blocks has {space.num_blocks} blocks"
        )
    rows = []
    for j, (row, b) in enumerate(zip(probabilities, space.blocks)):
        name = f"probabilities[{j}]"
        row = c.float_list(row, name)
        if len(row) != b.num_options:
            raise c.fail(
                name,
                f"has {len(row)} probabilities, but block {j} ({b.size} keep {b.keep}) has "
                f"C({b.size}, {b.keep}) = {b.num_options} options",
            )
        negative = [i for i, p in enumerate(row) if p < 0]
        if negative:
            raise c.fail(f"{name}[{negative[0]}]", f"is {row[negative[0]]}; probabilities must be ≥ 0")
        total = math.fsum(row)
        if abs(total - 1.0) > PROBABILITY_TOLERANCE:
            raise c.fail(name, f"sums to {total:.6g}; a block's option probabilities must sum to 1")
        rows.append(tuple(row))
    return tuple(rows)


def _check_marginals(c: _Checker, marginals: Any, n: int) -> tuple[float, ...] | None:
    """``marginals``: null, or one keep probability in [0, 1] per layer."""
    if marginals is None:
        return None
    values = c.float_list(marginals, "marginals")
    if len(values) != n:
        raise c.fail("marginals", f"has {len(values)} entries, but model.num_layers is {n}")
    outside = [i for i, p in enumerate(values) if not -MARGINAL_TOLERANCE <= p <= 1 + MARGINAL_TOLERANCE]
    if outside:
        raise c.fail(f"marginals[{outside[0]}]", f"is {values[outside[0]]}; keep probabilities lie in [0, 1]")
    return tuple(values)


def _check_seed_and_steps(c: _Checker, doc: Mapping) -> tuple[int | None, int]:
    """``seed`` (an integer or null) and ``steps`` (an integer ≥ 0)."""
    seed = doc["seed"]
    if seed is not None and not _is_int(seed):
        raise c.fail("seed", f"must be an integer or null, got {_short(seed)}")
    steps = doc["steps"]
    if not _is_int(steps) or steps < 0:
        raise c.fail("steps", f"must be an integer ≥ 0, got {_short(steps)}")
    return seed, steps


def _check_extras(c: _Checker, extras: Mapping[str, Any]) -> None:
    unknown = [k for k in extras if k not in EXTRA_KEYS]
    if unknown:
        raise c.fail(unknown[0], f"unknown key; the optional keys are {list(EXTRA_KEYS)}")
    for key in ("created", "pruneseek_version", "notes"):
        if key in extras and not isinstance(extras[key], str):
            raise c.fail(key, f"must be a string, got {_kind(extras[key])}")
    if "created" in extras:
        try:
            datetime.fromisoformat(extras["created"])
        except ValueError:
            raise c.fail(
                "created", f"{extras['created']!r} is not an ISO 8601 time such as 2025-01-31T12:00:00+00:00"
            ) from None
    if "confidence" in extras:
        conf = extras["confidence"]
        values = conf if isinstance(conf, (list, tuple)) else [conf]
        for v in values:
            if not _is_number(v) or not 0 <= v <= 1:
                raise c.fail("confidence", f"must be a probability in [0, 1] or a list of them, got {_short(conf)}")
    if "metrics" in extras and not isinstance(extras["metrics"], Mapping):
        raise c.fail("metrics", f"must be an object, got {_kind(extras['metrics'])}")


# ----- masks from other forms -------------------------------------------------------------------------


def mask_from_prune_list(prune_mask: Any) -> tuple[int, ...]:
    """A 0/1 mask (1 = keep) from TinySR's ``prune_mask`` list, a numpy/torch vector, or text like ``"1,0,1"``.

    Entries may be 0/1 integers, booleans, or the floats 0.0/1.0; anything else is an error.
    """
    value = prune_mask
    if isinstance(value, str):
        text = value.strip()
        try:
            value = json.loads(text) if text.startswith("[") else [int(p) for p in text.replace(",", " ").split()]
        except ValueError:
            raise MaskFileError(
                f"cannot read prune_mask {_short(prune_mask)}; write it as 0/1 values, e.g. '1,0,1,1' or '[1, 0, 1, 1]'"
            ) from None
    value = _plain(value)
    if not isinstance(value, list):
        raise MaskFileError(f"prune_mask must be a list of 0/1 values, got {_kind(value)}")
    if not value:
        raise MaskFileError("prune_mask is empty; give one 0/1 value per layer")
    mask = []
    for i, v in enumerate(value):
        if isinstance(v, bool) or (_is_number(v) and v in (0, 1)):
            mask.append(int(v))
        else:
            raise MaskFileError(f"prune_mask entry {i} is {_short(v)}; a mask holds only 0 (drop) and 1 (keep)")
    return tuple(mask)


def _space_from_args(space: Any, preset: Any) -> BlockSpace | None:
    if isinstance(space, SpacePreset):
        return space.space
    if isinstance(space, TransferSpace):
        return space.space
    if isinstance(space, BlockSpace) or space is None:
        if space is None and isinstance(preset, SpacePreset):
            return preset.space
        return space
    try:
        return BlockSpace([tuple(p) for p in space])
    except (SpaceError, TypeError) as exc:
        raise MaskFileError(f"space must be a BlockSpace, a preset or a list of (size, keep) pairs: {exc}") from None


def _transfer_from_args(transfer: Any, space: Any) -> dict[str, Any] | None:
    if transfer is None and isinstance(space, TransferSpace):
        transfer = space
    if transfer is None:
        return None
    if isinstance(transfer, TransferSpace):
        return {"k": transfer.k, "topology": transfer.topology}
    if isinstance(transfer, Mapping):
        return {"k": _plain(transfer.get("k")), "topology": _plain(transfer.get("topology", "pairs"))}
    if isinstance(transfer, (tuple, list)) and len(transfer) == 2:
        return {"k": _plain(transfer[0]), "topology": _plain(transfer[1])}
    raise MaskFileError(
        f"transfer must be a TransferSpace, {{'k': …, 'topology': …}} or (k, topology), got {_short(transfer)}"
    )


# ----- the mask file --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MaskFile:
    """A validated ``pruneseek.mask/v1`` mask file. Construction validates; an instance is always valid.

    ``extras`` holds the optional keys (``created``, ``pruneseek_version``, ``confidence``, ``metrics``,
    ``notes``). ``path`` is where it was loaded from or saved to (not part of equality).
    """

    model_name: str
    mask: tuple[int, ...]
    strategy_name: str
    settings: dict[str, Any] = field(default_factory=dict)
    space: dict[str, Any] = field(default_factory=dict)
    probabilities: tuple[tuple[float, ...], ...] | None = None
    marginals: tuple[float, ...] | None = None
    seed: int | None = None
    steps: int = 0
    extras: dict[str, Any] = field(default_factory=dict)
    path: Path | None = field(default=None, compare=False, repr=False)

    format = FORMAT

    def __post_init__(self) -> None:
        mask = _plain(self.mask)
        if not isinstance(mask, list):
            where = f"{self.path}: " if self.path is not None else ""
            raise MaskFileError(f"{where}field 'mask': must be a list of 0/1 integers, got {_kind(mask)}")
        object.__setattr__(self, "mask", tuple(mask))
        for name in ("settings", "space", "extras"):
            object.__setattr__(self, name, copy.deepcopy(_plain(getattr(self, name))))
        for name in ("probabilities", "marginals", "seed", "steps"):
            object.__setattr__(self, name, _plain(getattr(self, name)))
        checked = _check_document(self.to_json(), self._where())
        for name in ("mask", "space", "probabilities", "marginals"):
            object.__setattr__(self, name, checked[name])

    __hash__ = None  # holds dicts

    def _where(self) -> str | None:
        return str(self.path) if self.path is not None else None

    # ----- constructors -----------------------------------------------------------------------------
    @classmethod
    def from_mask(
        cls,
        mask: Any,
        model_name: str,
        strategy_name: str,
        settings: Mapping[str, Any] | None = None,
        space: BlockSpace | SpacePreset | TransferSpace | str | Sequence[tuple[int, int]] | None = None,
        preset: str | SpacePreset | None = None,
        transfer: TransferSpace | Mapping[str, Any] | tuple[int, str] | None = None,
        probabilities: Any = None,
        marginals: Any = None,
        seed: int | None = None,
        steps: int = 0,
        **extras: Any,
    ) -> "MaskFile":
        """Build a mask file from a 0/1 mask (list, numpy or torch vector, bools accepted).

        ``space`` may be a BlockSpace, a preset (object, name or path) or (size, keep) pairs; it defaults
        to ``preset``'s space, else the full space ``[[N, M]]``. ``transfer`` (or a
        :class:`TransferSpace` given as ``space``) records TinySR's transfer-reachable space. ``created``
        (now, UTC) and ``pruneseek_version`` are filled in unless given; pass ``created=None`` to omit it.
        """
        m = mask_from_prune_list(mask)
        if isinstance(space, str):
            space = load_preset(space)
        if space is None and isinstance(preset, str):
            preset = load_preset(preset)
        block_space = _space_from_args(space, preset)
        if block_space is None:
            block_space = BlockSpace.full(len(m), sum(m))
        if block_space.num_layers != len(m):
            raise MaskFileError(
                f"the mask has {len(m)} entries, but the space ({block_space.describe()}) has "
                f"{block_space.num_layers} layers; give one 0/1 entry per layer"
            )
        space_doc: dict[str, Any] = {"blocks": [list(p) for p in block_space.shape]}
        if isinstance(preset, SpacePreset):
            preset = preset.name
        if isinstance(space, SpacePreset) and preset is None:
            preset = space.name
        if preset is not None:
            space_doc["preset"] = preset
        transfer_doc = _transfer_from_args(transfer, space)
        if transfer_doc is not None:
            space_doc["transfer"] = transfer_doc

        unknown = [k for k in extras if k not in EXTRA_KEYS]
        if unknown:
            raise MaskFileError(f"unknown mask-file key {unknown[0]!r}; the optional keys are {list(EXTRA_KEYS)}")
        extras = dict(extras)
        extras.setdefault("created", datetime.now(timezone.utc).replace(microsecond=0).isoformat())
        extras.setdefault("pruneseek_version", __version__)
        extras = {k: _plain(extras[k]) for k in EXTRA_KEYS if k in extras and extras[k] is not None}

        probabilities = _plain(probabilities)
        if isinstance(probabilities, list):
            probabilities = tuple(tuple(row) if isinstance(row, list) else row for row in probabilities)
        marginals = _plain(marginals)
        if isinstance(marginals, list):
            marginals = tuple(marginals)
        return cls(
            model_name=model_name,
            mask=m,
            strategy_name=strategy_name,
            settings=dict(settings or {}),
            space=space_doc,
            probabilities=probabilities,
            marginals=marginals,
            seed=seed,
            steps=steps,
            extras=extras,
        )

    # ----- derived --------------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return len(self.mask)

    @property
    def keep(self) -> tuple[int, ...]:
        """Sorted kept layer indices."""
        return tuple(i for i, v in enumerate(self.mask) if v)

    @property
    def num_kept(self) -> int:
        return sum(self.mask)

    @property
    def mask_value(self) -> Mask:
        """The mask as a :class:`~pruneseek.mask.Mask` value (already validated by this file)."""
        return Mask(tuple(self.mask))

    @property
    def dropped(self) -> tuple[int, ...]:
        """Sorted dropped layer indices (diffusers' ``skip_layers``)."""
        return tuple(i for i, v in enumerate(self.mask) if not v)

    @property
    def ratio(self) -> Fraction:
        """Fraction of layers removed, exact."""
        return Fraction(self.num_layers - self.num_kept, self.num_layers)

    @property
    def preset(self) -> str | None:
        return self.space.get("preset")

    def space_object(self) -> BlockSpace | None:
        """The block-factored space from ``space.blocks``, or None when the file gives none."""
        blocks = self.space.get("blocks")
        return BlockSpace([tuple(p) for p in blocks]) if blocks else None

    def transfer_space(self) -> TransferSpace | None:
        """The transfer-reachable space from ``space.transfer``, or None when the file gives none."""
        t = self.space.get("transfer")
        space = self.space_object()
        return TransferSpace(space, t["k"], t["topology"]) if t and space is not None else None

    # ----- JSON and files ------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The mask file as a JSON-ready dict (a fresh copy)."""
        mask = list(self.mask) if isinstance(self.mask, (list, tuple)) else self.mask
        keep = [i for i, v in enumerate(mask) if v] if isinstance(mask, list) else []
        probabilities = self.probabilities
        if isinstance(probabilities, (list, tuple)):
            probabilities = [list(r) if isinstance(r, (list, tuple)) else r for r in probabilities]
        marginals = list(self.marginals) if isinstance(self.marginals, (list, tuple)) else self.marginals
        doc: dict[str, Any] = {
            "format": FORMAT,
            "model": {"name": self.model_name, "num_layers": len(mask) if isinstance(mask, list) else 0},
            "keep": keep,
            "mask": mask,
            "strategy": {"name": self.strategy_name, "settings": copy.deepcopy(self.settings)},
            "space": copy.deepcopy(self.space),
            "probabilities": probabilities,
            "marginals": marginals,
            "seed": self.seed,
            "steps": self.steps,
        }
        extras = self.extras if isinstance(self.extras, Mapping) else {}
        for key in EXTRA_KEYS:
            if key in extras:
                doc[key] = copy.deepcopy(extras[key])
        for key in extras:
            if key not in EXTRA_KEYS:
                doc[key] = copy.deepcopy(extras[key])  # refused by validation, with its name
        return doc

    def to_text(self) -> str:
        """Pretty strict JSON with a trailing newline: exactly what :meth:`save` writes."""
        return json_text(self.to_json()) + "\n"

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the file atomically (folders created); return the path. Sets :attr:`path`."""
        path = Path(path)
        self.validate()
        try:
            atomic_write_text(path, self.to_text())
        except OSError as exc:
            raise MaskFileError(f"{path}: cannot write the mask file: {exc.strerror or exc}") from None
        object.__setattr__(self, "path", path)
        return path

    @classmethod
    def from_json(cls, doc: Any, where: str | os.PathLike[str] | None = None) -> "MaskFile":
        """A mask file from a parsed JSON object; errors name ``where``."""
        path = Path(where) if where is not None else None
        return cls(**_check_document(doc, str(path) if path else None), path=path)

    @classmethod
    def loads(cls, text: str, where: str | os.PathLike[str] | None = None) -> "MaskFile":
        """A mask file from JSON text (strict: NaN, infinity and repeated keys are refused)."""
        prefix = f"{where}: " if where is not None else ""
        try:
            doc = json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as exc:
            what = "the file is empty" if not text.strip() else f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
            raise MaskFileError(f"{prefix}not a pruneseek mask file: not valid JSON ({what})") from None
        except _StrictJSONError as exc:
            raise MaskFileError(f"{prefix}not strict JSON: {exc}") from None
        except RecursionError:
            raise MaskFileError(f"{prefix}not a pruneseek mask file: JSON nested too deeply") from None
        return cls.from_json(doc, where)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "MaskFile":
        """Read and validate a mask file; every problem is a :class:`MaskFileError` naming the file."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise MaskFileError(f"{path}: no such mask file") from None
        except IsADirectoryError:
            raise MaskFileError(f"{path}: is a folder, not a mask file") from None
        except OSError as exc:
            raise MaskFileError(f"{path}: cannot read the mask file: {exc.strerror or exc}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise MaskFileError(f"{path}: not a pruneseek mask file: not UTF-8 text") from None
        return cls.loads(text, path)

    def validate(self) -> "MaskFile":
        """Check the whole file again (as reading would); return self."""
        _check_document(self.to_json(), self._where())
        return self

    def check_model(self, name: str | None = None, num_layers: int | None = None) -> "MaskFile":
        """Refuse a mask meant for another model; return self when it fits."""
        name_bad = name is not None and name != self.model_name
        layers_bad = num_layers is not None and num_layers != self.num_layers
        if not (name_bad or layers_bad):
            return self
        label = str(self.path) if self.path is not None else "this mask"
        if name_bad and num_layers is not None:
            this = f"this model is {name!r} with {num_layers} layers"
        elif name_bad:
            this = f"this model is {name!r}"
        else:
            this = f"this model has {num_layers} layers"
        raise MaskFileError(
            f"{label} is for model {self.model_name!r} with {self.num_layers} layers, but {this}; "
            "search a mask for this model or pass the right --mask"
        )


class _StrictJSONError(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _StrictJSONError(f"{name} is not a JSON number; mask files hold finite numbers only")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _StrictJSONError(f"key {key!r} appears twice in one object")
        out[key] = value
    return out


__all__ = ["FORMAT", "MaskFile", "MaskFileError", "mask_from_prune_list"]
