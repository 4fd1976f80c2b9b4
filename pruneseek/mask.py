"""The layer mask: one 0/1 value per layer of a transformer stack (1 = keep, 0 = drop).

A :class:`Mask` is validated once, when it is made, and is then trusted everywhere it travels: the
mask file, the strategies' scoring, recovery and export all take one. It holds the 0/1 values
(the ``prune_mask`` list TinySR's merge step takes, TinySR §3.2), and answers the questions the
callers ask of it: which layers it keeps and drops, as a list or a tensor row.

Errors are :class:`~pruneseek.errors.MaskError` by default; a caller that reports masks under its own
error class (recovery, strategies) passes ``error=`` so a user sees one kind of error per command.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pruneseek.errors import MaskError


def _values(mask: Any) -> list:
    """Plain Python values of a list, tuple, numpy array or torch tensor (one dimension expected)."""
    if isinstance(mask, Mask):
        return list(mask.values)
    if hasattr(mask, "detach"):  # torch tensor
        mask = mask.detach().cpu()
    if hasattr(mask, "tolist"):  # numpy array or tensor
        mask = mask.tolist()
    if isinstance(mask, (str, bytes)) or not isinstance(mask, Sequence):
        raise MaskError(f"a mask is a list of 0/1 values, one per layer, got {type(mask).__name__}")
    return list(mask)


def _is_bit(value: Any) -> bool:
    """0 or 1 as an int, bool or integral float (a float tensor's 0.0 / 1.0); never a string."""
    if isinstance(value, bool):
        return True
    if isinstance(value, (int, float)):
        return value in (0, 1)
    return False


@dataclass(frozen=True)
class Mask:
    """A validated 0/1 layer mask. Make one with :meth:`of` (or :meth:`from_keep`)."""

    values: tuple[int, ...]

    @classmethod
    def of(cls, mask: Any, num_layers: int | None = None, *, error: type[Exception] = MaskError,
           what: str = "the mask") -> "Mask":
        """Check ``mask`` (list, tuple, array, tensor or :class:`Mask`) and return it as a :class:`Mask`.

        It must hold one 0/1 value per layer (``num_layers``, when given) and keep at least one layer;
        otherwise ``error`` is raised with a message naming the entry at fault and the fix.
        """
        values = _values(mask)
        if any(isinstance(v, (list, tuple)) for v in values):
            raise error(f"{what} must be one row of 0/1 values, got a nested list; give one 0/1 entry per layer")
        if num_layers is not None and len(values) != num_layers:
            raise error(f"{what} has {len(values)} entries but the model has {num_layers} layers; "
                        "give one 0/1 entry per layer")
        bad = [i for i, v in enumerate(values) if not _is_bit(v)]
        if bad:
            raise error(f"{what}: entry {bad[0]} is {values[bad[0]]!r}; a mask holds only 0 (drop) and 1 (keep), "
                        "values of 0 or 1")
        if not any(values):
            raise error(f"{what} drops every layer; keep at least one")
        return cls(tuple(int(v) for v in values))

    @classmethod
    def from_keep(cls, keep: Sequence[int], num_layers: int, *, error: type[Exception] = MaskError) -> "Mask":
        """The mask keeping the layer indices ``keep`` (distinct, inside ``[0, num_layers)``)."""
        keep = sorted(int(i) for i in keep)
        if not keep:
            raise error("the mask keeps no layer; a pruned model needs at least one")
        if len(set(keep)) != len(keep):
            raise error(f"the kept layers repeat an index: {keep}")
        outside = [i for i in keep if not 0 <= i < num_layers]
        if outside:
            raise error(f"kept layer {outside[0]} is outside a {num_layers}-layer model")
        return cls.of([1 if i in set(keep) else 0 for i in range(num_layers)], num_layers, error=error)

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self) -> Iterator[int]:
        return iter(self.values)

    def __getitem__(self, index: int) -> int:
        return self.values[index]

    @property
    def num_layers(self) -> int:
        return len(self.values)

    @property
    def kept(self) -> list[int]:
        """Indices of the kept layers, ascending."""
        return [i for i, v in enumerate(self.values) if v]

    @property
    def dropped(self) -> list[int]:
        """Indices of the dropped layers, ascending."""
        return [i for i, v in enumerate(self.values) if not v]

    @property
    def num_kept(self) -> int:
        return sum(self.values)

    def tolist(self) -> list[int]:
        return list(self.values)

    def text(self) -> str:
        """The mask for messages: its 0/1 string and kept indices."""
        return f"{''.join(map(str, self.values))} (keeps {self.kept})"

    def row(self, dtype=None, device=None):
        """The mask as a float tensor row ``(N,)`` (torch is imported only here)."""
        import torch

        return torch.tensor(self.values, dtype=dtype or torch.float32, device=device)
