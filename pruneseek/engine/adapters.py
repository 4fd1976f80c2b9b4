"""How to call one block of a stack and how to blend it per sample (docs/design.md §2, TinySR eq. 1).

    x_{i+1} = m_i · φ_i(x_i) + (1 − m_i) · x_i                                  (TinySR eq. 1)

``m_i`` is one value per sample, shape ``(batch,)``, broadcast over every other dimension. With a
hard mask (exactly 0 or 1) the blend is exact: ``1·φ + 0·x == φ`` and ``0·φ + 1·x == x`` bit for bit,
so a masked forward equals physically deleting the dropped blocks.

An adapter is stateless: :meth:`Adapter.call` runs a block on a state, :meth:`Adapter.blend` mixes the
block's output with its input per sample. :class:`SingleStream` carries one tensor;
:class:`MMDiTStream` carries the SD3 pair ``(image tokens h, context tokens c)``.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn


def blend(new: torch.Tensor, old: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``m·new + (1 − m)·old`` with ``m`` of shape ``(batch,)`` broadcast over the trailing dims (eq. 1)."""
    m = m.to(dtype=new.dtype).reshape(m.shape[0], *([1] * (new.dim() - 1)))
    return m * new + (1 - m) * old


class Adapter:
    """Calls one block and blends its output into the running state, per sample."""

    def call(self, block: nn.Module, state: Any, **kwargs: Any) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def blend(self, new: Any, old: Any, m: torch.Tensor) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def batch_size(self, state: Any) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def primary(self, state: Any) -> torch.Tensor:  # pragma: no cover - interface
        """The state's main token stream (what similarity scores such as ShortGPT's Block Influence read)."""
        raise NotImplementedError

    def step(self, block: nn.Module, state: Any, m: torch.Tensor | None, **kwargs: Any) -> Any:
        """One block of the masked stack: the block's output blended with its input by ``m`` (or unmasked)."""
        new = self.call(block, state, **kwargs)
        return new if m is None else self.blend(new, state, m)


class SingleStream(Adapter):
    """State is one tensor ``x`` (batch first); a block is called as ``block(x, **kwargs) -> x``."""

    def call(self, block: nn.Module, state: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return block(state, **kwargs)

    def blend(self, new: torch.Tensor, old: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        return blend(new, old, m)

    def batch_size(self, state: torch.Tensor) -> int:
        return state.shape[0]

    def primary(self, state: torch.Tensor) -> torch.Tensor:
        """The state itself."""
        return state


class MMDiTStream(Adapter):
    """State is ``(h, c)``: image and context tokens of a diffusers ``JointTransformerBlock`` stack (SD3).

    A block is called as ``block(hidden_states=h, encoder_hidden_states=c, temb=temb, **kwargs)`` and
    returns ``(c_out, h_out)``. Both streams are blended (docs/design.md §2). The last SD3 block is
    ``context_pre_only`` and returns ``c_out = None``: then only ``h`` is blended, and the context
    becomes ``None`` exactly as in diffusers — unless no sample keeps the block, in which case ``c`` passes
    through unchanged, as ``skip_layers`` does. (After that block nothing reads the context, so the
    per-sample mix never matters; the rule only keeps *blend* and *skip* outputs identical.)
    """

    def call(self, block: nn.Module, state: tuple, **kwargs: Any) -> tuple:
        h, c = state
        c_out, h_out = block(hidden_states=h, encoder_hidden_states=c, **kwargs)
        return h_out, c_out

    def blend(self, new: tuple, old: tuple, m: torch.Tensor) -> tuple:
        (h_new, c_new), (h_old, c_old) = new, old
        h = blend(h_new, h_old, m)
        if c_new is None:  # context_pre_only block (a shape-only pass on the meta device counts it as kept)
            kept_anywhere = m.device.type == "meta" or bool((m.detach() != 0).any())
            return h, (None if kept_anywhere else c_old)
        if c_old is None:
            raise ValueError("an MMDiT block after a context_pre_only block has no context to read")
        return h, blend(c_new, c_old, m)

    def batch_size(self, state: tuple) -> int:
        return state[0].shape[0]

    def primary(self, state: tuple) -> torch.Tensor:
        """The image tokens ``h`` (the context stream is conditioning, and the last block drops it)."""
        return state[0]
