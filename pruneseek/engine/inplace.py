"""Masks applied in place: the model's own ``forward`` runs, each block of the stack gated where it sits.

:meth:`~pruneseek.engine.stack.MaskedStack.install` replaces every block's ``forward`` (an instance attribute,
so parameter names, state dicts, ``from_pretrained`` and peft are untouched) with :func:`gated_forward`. While no
mask is set (:meth:`~pruneseek.engine.stack.MaskedStack.masking`) a gated block is the block itself (observers
still see it). With a ``(batch, N)`` mask set, block ``i`` returns

    m_i · φ_i(x_i) + (1 − m_i) · x_i          (TinySR eq. 1, per sample, on every token stream)

in *blend* mode, and in *skip* mode returns ``x_i`` unchanged without computing ``φ_i`` when no sample keeps it.
This is how diffusers' own ``skip_layers`` and layer-skip hook treat a skipped block, so a hard mask equals the
model with the dropped blocks physically deleted, for any model family whose forward simply chains its blocks.

Where the token streams sit in a block's arguments and return value (:class:`BlockIO`) comes from diffusers'
``TransformerBlockRegistry`` (it knows SD3's ``JointTransformerBlock``, FLUX's double- and single-stream blocks,
``BasicTransformerBlock`` used by DiT, and many more); any other block (a transformers decoder layer, a test
toy) is read as one stream: the argument ``hidden_states`` (or the first) in, a tensor out; a one-stream block
that returns anything else is refused, since its skipped twin could not return the same shape of value.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pruneseek.errors import EngineError


@dataclass(frozen=True)
class BlockIO:
    """Where a block's streams are: argument names and positions in; for two streams, their indices in the
    returned tuple (a one-stream block returns its hidden states as a tensor)."""

    hidden: str = "hidden_states"
    hidden_pos: int | None = 0
    encoder: str | None = None
    encoder_pos: int | None = None
    out_hidden: int | None = None
    out_encoder: int | None = None

    @property
    def two_streams(self) -> bool:
        return self.encoder is not None

    def state(self, args: tuple, kwargs: dict) -> Any:
        """The block's input state: ``x`` or ``(h, c)`` (as :class:`~pruneseek.engine.adapters.MMDiTStream` holds it)."""
        h = _argument(self.hidden, self.hidden_pos, args, kwargs)
        if not self.two_streams:
            return h
        return h, _argument(self.encoder, self.encoder_pos, args, kwargs)

    def output_state(self, out: Any) -> Any:
        """The state a block's return value carries (same layout as :meth:`state`)."""
        if self.two_streams:
            return out[self.out_hidden], out[self.out_encoder]
        if isinstance(out, torch.Tensor):
            return out
        # A skipped block returns its input tensor; a model that unpacks a tuple would then read the tensor's first
        # row as the hidden states. Refuse rather than risk that (transformers < 5 layers returned tuples).
        raise EngineError(f"a gated one-stream block returned {type(out).__name__}, not a tensor of hidden states; "
                          "pruneseek gates blocks that return their hidden states (transformers ≥ 5, diffusers)")

    def pack(self, state: Any) -> Any:
        """``state`` in the block's return format."""
        if not self.two_streams:
            return state
        h, c = state
        items = [None, None]
        items[self.out_hidden], items[self.out_encoder] = h, c
        return tuple(items)


def _argument(name: str, position: int | None, args: tuple, kwargs: dict) -> Any:
    if name in kwargs:
        return kwargs[name]
    if position is not None and position < len(args):
        return args[position]
    return None


def _position(cls: type, name: str) -> int | None:
    params = list(inspect.signature(cls.forward).parameters)[1:]  # drop self
    return params.index(name) if name in params else None


def block_io(block: nn.Module) -> BlockIO:
    """How to read and write ``block``'s streams: diffusers' registry for its blocks, else one stream."""
    cls = type(block)
    meta = None
    try:
        from diffusers.hooks._helpers import TransformerBlockRegistry

        meta = TransformerBlockRegistry.get(cls)
    except (ImportError, ValueError, AttributeError):
        meta = None
    if meta is None or meta.return_encoder_hidden_states_index is None:
        name = getattr(meta, "hidden_states_argument_name", "hidden_states")
        position = _position(cls, name)
        return BlockIO(hidden=name, hidden_pos=0 if position is None else position)
    hidden, encoder = meta.hidden_states_argument_name, meta.encoder_hidden_states_argument_name
    return BlockIO(hidden=hidden, hidden_pos=_position(cls, hidden), encoder=encoder,
                   encoder_pos=_position(cls, encoder), out_hidden=meta.return_hidden_states_index,
                   out_encoder=meta.return_encoder_hidden_states_index)


class Gate:
    """What an installed block knows: its stack, its index in the stack and how to read its streams."""

    def __init__(self, stack: Any, index: int, io: BlockIO):
        self.stack, self.index, self.io = stack, index, io


#: The attribute an installed block carries its :class:`Gate` under.
GATE = "_pruneseek_gate"


def gated_forward(block: nn.Module, *args: Any, **kwargs: Any) -> Any:
    """An installed block's ``forward``: the class's own forward under the stack's current mask (module docstring)."""
    gate: Gate = getattr(block, GATE)
    return gate.stack._gated(gate.index, gate.io, lambda *a, **k: type(block).forward(block, *a, **k), args, kwargs)


def installed_stack(blocks: list[nn.Module]) -> Any:
    """The stack that gates exactly ``blocks`` in this order, or None."""
    gates = [getattr(b, GATE, None) for b in blocks]
    if not gates or gates[0] is None:
        return None
    stack = gates[0].stack
    same = len(stack.blocks) == len(blocks) and all(g is not None and g.stack is stack and g.index == i
                                                     for i, g in enumerate(gates))
    return stack if same else None


def install(block: nn.Module, stack: Any, index: int) -> None:
    """Gate ``block`` as block ``index`` of ``stack`` (the latest stack installed over a block owns it)."""
    object.__setattr__(block, GATE, Gate(stack, index, block_io(block)))
    object.__setattr__(block, "forward", gated_forward.__get__(block))


def uninstall(block: nn.Module) -> None:
    """Restore the block's class ``forward``."""
    for name in (GATE, "forward"):
        if name in block.__dict__:
            object.__delattr__(block, name)
