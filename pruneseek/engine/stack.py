"""A stack of residual blocks under a per-sample depth mask (docs/design.md §2 and §4, execution modes).

:class:`MaskedStack` runs ``x_{i+1} = m_i·φ_i(x_i) + (1 − m_i)·x_i`` (TinySR eq. 1) over a
``(batch, N)`` mask in one of two modes:

- ``"blend"`` — every block is computed for every sample. Under the straight-through estimator the
  mask gradient is exact: ``dL/dm_i = ⟨dL/dx_{i+1}, φ_i(x_i) − x_i⟩`` per sample (what TinyFusion does).
- ``"skip"`` — a block whose mask is 0 for *every* sample of the batch is not computed (TinySR: "calculation
  for a layer is bypassed if its associated mask value is 0"). Its term of the logit gradient is then
  missing: that is the trade-off for the saved compute. With per-sample masks a block is skipped only
  when no sample keeps it; ``share_across_batch`` (one mask per batch, the reference code's behaviour)
  makes skipping effective at batch > 1.

For the same hard mask both modes give identical outputs, equal to the stack with the dropped blocks
physically deleted.

Two ways to run it. :meth:`MaskedStack.forward` loops over the blocks itself (models written around the
stack, the engine's toys). For a real model, :meth:`MaskedStack.install` gates the blocks where they sit and
the model's *own* forward runs under the mask set by :meth:`MaskedStack.masking` (:mod:`pruneseek.engine.inplace`):
no re-implemented model forward, nothing to drift when diffusers or transformers change theirs.

Observation: :meth:`MaskedStack.observe` registers ``fn(index, state_in, state_out)``, called after every
block the stack computes with the block's input state and its own output (before the per-sample
blend), so strategies can read what blocks do (ShortGPT's Block Influence, FLUX.1-Lite's MSE) without
touching model code. With no observer the forward is unchanged.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from pruneseek.errors import EngineError
from pruneseek.engine.adapters import Adapter

MODES = ("blend", "skip")


class MaskedStack(nn.Module):
    """``blocks`` (an ``nn.ModuleList`` owned by the model) run under a per-sample mask through ``adapter``."""

    def __init__(self, blocks: nn.ModuleList | Sequence[nn.Module], adapter: Adapter):
        super().__init__()
        if not isinstance(blocks, nn.ModuleList):
            blocks = nn.ModuleList(blocks)
        self.blocks = blocks  # the model's own ModuleList, shared (not copied)
        self.adapter = adapter
        self._observers: tuple[Callable[[int, Any, Any], None], ...] = ()
        self._forced: list[bool] | None = None
        #: Gradient checkpointing: each block's activations are recomputed in the backward pass instead of kept
        #: (torch.utils.checkpoint, non-reentrant); same values and gradients, less memory, about one more forward.
        self.checkpointing = False
        #: The mask of the running in-place forward: ``(masks, active flags or None)``, or None (unmasked).
        self._masking: tuple[torch.Tensor, list[bool] | None] | None = None
        self._installed = False

    @classmethod
    def over(cls, blocks: nn.ModuleList | Sequence[nn.Module]) -> "MaskedStack":
        """A stack over a model's blocks, installed in place, its adapter chosen by the blocks' streams
        (:func:`~pruneseek.engine.inplace.block_io`): one stream or an MMDiT pair (SD3, FLUX)."""
        from pruneseek.engine.adapters import MMDiTStream, SingleStream
        from pruneseek.engine.inplace import block_io, installed_stack

        blocks = list(blocks)
        if not blocks:
            raise EngineError("a masked stack needs at least one block")
        existing = installed_stack(blocks)
        if existing is not None:
            return existing
        kinds = {block_io(b).two_streams for b in blocks}
        if len(kinds) > 1:
            raise EngineError("the blocks mix one-stream and two-stream blocks; mask each kind as its own stack")
        return cls(blocks, MMDiTStream() if kinds.pop() else SingleStream()).install()

    def install(self) -> "MaskedStack":
        """Gate every block in place: its ``forward`` now reads :meth:`masking`'s mask (idempotent)."""
        from pruneseek.engine.inplace import install

        for i, block in enumerate(self.blocks):
            install(block, self, i)
        self._installed = True
        return self

    def uninstall(self) -> None:
        """Give every block its own ``forward`` back."""
        from pruneseek.engine.inplace import uninstall

        for block in self.blocks:
            uninstall(block)
        self._installed = False

    @contextlib.contextmanager
    def masking(self, masks: torch.Tensor | None, mode: str = "blend") -> Iterator["MaskedStack"]:
        """Within the block, the installed blocks run under ``masks`` ``(batch, N)`` in ``mode`` (``None``:
        unmasked); call the model's own forward inside."""
        if not self._installed:
            raise EngineError("masking() gates blocks in place: call install() first (or use MaskedStack.over)")
        if mode not in MODES:
            raise EngineError(f"unknown execution mode {mode!r}; use 'blend' or 'skip'")
        run = None
        if masks is not None:
            if masks.dim() != 2 or masks.shape[1] != len(self.blocks):
                raise EngineError(f"masks must be (batch, {len(self.blocks)}), got {tuple(masks.shape)}")
            active = (masks.detach() != 0).any(dim=0).tolist() if mode == "skip" else None  # one device sync
            if active is not None and self._forced is not None:
                active = [a or f for a, f in zip(active, self._forced)]
            run = (masks, active)
        previous, self._masking = self._masking, run
        try:
            yield self
        finally:
            self._masking = previous

    def _gated(self, i: int, io, call, args: tuple, kwargs: dict) -> Any:
        """Block ``i`` of an in-place forward: computed, blended or passed through (module docstring)."""
        run, observed = self._masking, bool(self._observers)
        if run is None and not observed:
            return self._run(call, *args, **kwargs)
        state = io.state(args, kwargs)
        if run is not None:
            masks, active = run
            if masks.shape[0] != self.adapter.batch_size(state):
                raise EngineError(f"masks hold {masks.shape[0]} rows for a batch of {self.adapter.batch_size(state)}")
            if active is not None and not active[i]:
                return io.pack(state)
        out = self._run(call, *args, **kwargs)
        if run is None:
            self._notify(i, state, io.output_state(out))
            return out
        new = io.output_state(out)
        if observed:
            self._notify(i, state, new)
        return io.pack(self.adapter.blend(new, state, run[0][:, i]))

    @contextlib.contextmanager
    def observe(self, fn: Callable[[int, Any, Any], None]) -> Iterator["MaskedStack"]:
        """Within the block, call ``fn(index, state_in, state_out)`` after each computed block.

        ``state_out`` is the block's own output (for a masked forward, before the blend with its
        input); blocks a *skip* forward does not compute are not reported. Observers nest; each is
        removed when its block exits, also on error.
        """
        self._observers = self._observers + (fn,)
        try:
            yield self
        finally:
            observers = list(self._observers)
            observers.remove(fn)
            self._observers = tuple(observers)

    @contextlib.contextmanager
    def computing(self, active: Sequence[bool]) -> Iterator["MaskedStack"]:
        """Within the block, a *skip* forward also computes the blocks flagged in ``active``.

        Data-parallel search passes the blocks any sample of the *global* batch keeps, so each shard skips
        exactly what one process with the whole batch would skip (and its gate gradients match).
        """
        if len(active) != len(self.blocks):
            raise EngineError(f"active must hold {len(self.blocks)} flags, got {len(active)}")
        previous, self._forced = self._forced, [bool(a) for a in active]
        try:
            yield self
        finally:
            self._forced = previous

    def _run(self, fn, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, checkpointed when :attr:`checkpointing` is on and autograd records."""
        if self.checkpointing and torch.is_grad_enabled():
            from torch.utils.checkpoint import checkpoint

            return checkpoint(fn, *args, use_reentrant=False, **kwargs)
        return fn(*args, **kwargs)

    def _notify(self, index: int, state_in: Any, state_out: Any) -> None:
        for fn in self._observers:
            fn(index, state_in, state_out)

    @property
    def num_layers(self) -> int:
        return len(self.blocks)

    def forward(self, state: Any, masks: torch.Tensor | None = None, mode: str = "blend", **block_kwargs: Any) -> Any:
        """Run every block on ``state``; ``masks`` is ``(batch, N)`` (``None`` runs the unmasked stack)."""
        if mode not in MODES:
            raise EngineError(f"unknown execution mode {mode!r}; use 'blend' or 'skip'")
        observed = bool(self._observers)
        if masks is None:
            for i, block in enumerate(self.blocks):
                new = self._run(self.adapter.call, block, state, **block_kwargs)
                if observed:
                    self._notify(i, state, new)
                state = new
            return state
        if masks.dim() != 2 or masks.shape[1] != len(self.blocks):
            raise EngineError(f"masks must be (batch, {len(self.blocks)}), got {tuple(masks.shape)}")
        batch = self.adapter.batch_size(state)
        if masks.shape[0] != batch:
            raise EngineError(f"masks hold {masks.shape[0]} rows for a batch of {batch}")
        active = (masks.detach() != 0).any(dim=0).tolist() if mode == "skip" else None  # one device sync
        if active is not None and self._forced is not None:
            active = [a or f for a, f in zip(active, self._forced)]
        for i, block in enumerate(self.blocks):
            if active is not None and not active[i]:
                continue
            if observed:
                new = self._run(self.adapter.call, block, state, **block_kwargs)
                self._notify(i, state, new)
                state = self.adapter.blend(new, state, masks[:, i])
            else:
                state = self._run(self.adapter.step, block, state, masks[:, i], **block_kwargs)
        return state

    def forward_kept(self, state: Any, kept: Sequence[int], **block_kwargs: Any) -> Any:
        """The physically pruned stack: only the blocks in ``kept`` run, unmasked, in order."""
        observed = bool(self._observers)
        for i in sorted(kept):
            new = self.adapter.call(self.blocks[i], state, **block_kwargs)
            if observed:
                self._notify(i, state, new)
            state = new
        return state

    def computed_blocks(self, masks: torch.Tensor, mode: str = "blend") -> int:
        """How many blocks a forward in ``mode`` computes for ``masks`` (for measuring skip's saving)."""
        if mode == "blend":
            return len(self.blocks)
        return int((masks.detach() != 0).any(dim=0).sum())
