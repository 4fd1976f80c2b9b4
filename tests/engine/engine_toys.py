"""Tiny, seeded models and problems for the engine tests (CPU, single thread friendly).

A uniquely named helper module (not ``conftest``) so that test directories cannot shadow each other."""
from __future__ import annotations

import torch
from torch import nn

from pruneseek.engine import MaskedStack, SingleStream
from pruneseek.spaces import BlockSpace
from pruneseek.strategies import SearchProblem

DIM = 16


class ResBlock(nn.Module):
    """``x + tanh(W x + b)``: zero weights make it an exact identity."""

    def __init__(self, dim: int = DIM):
        super().__init__()
        self.lin = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.tanh(self.lin(x))


class Toy(nn.Module):
    def __init__(self, blocks: nn.ModuleList):
        super().__init__()
        self.blocks = blocks


def make_blocks(kinds: list[str], seed: int, dim: int = DIM) -> nn.ModuleList:
    """``kinds[i]`` ∈ {"needed", "identity", "harmful"}: needed blocks make the target, identities do nothing,
    harmful blocks push the state somewhere the target never goes."""
    gen = torch.Generator().manual_seed(seed)
    blocks = nn.ModuleList()
    for kind in kinds:
        block = ResBlock(dim)
        with torch.no_grad():
            if kind == "identity":
                block.lin.weight.zero_()
                block.lin.bias.zero_()
            elif kind == "needed":
                block.lin.weight.copy_(torch.randn(dim, dim, generator=gen) * 1.5 / dim**0.5)
                block.lin.bias.copy_(torch.randn(dim, generator=gen) * 0.5)
            elif kind == "harmful":
                block.lin.weight.copy_(torch.randn(dim, dim, generator=gen) * 2.0 / dim**0.5)
                block.lin.bias.copy_(torch.randn(dim, generator=gen) * 1.0)
            else:
                raise ValueError(kind)
        blocks.append(block)
    return blocks


def toy_problem(kinds: list[str], space: BlockSpace, steps: int, seed: int = 0, batch: int = 16, topology="pairs", k=1):
    """A :class:`SearchProblem` whose target is the stack of its needed blocks only; loss = MSE."""
    blocks = make_blocks(kinds, seed)
    model = Toy(blocks)
    stack = MaskedStack(blocks, SingleStream())
    needed = [i for i, kind in enumerate(kinds) if kind == "needed"]

    def batches():
        gen = torch.Generator().manual_seed(1000 + seed)
        while True:
            x = torch.randn(batch, DIM, generator=gen)
            with torch.no_grad():
                y = stack.forward_kept(x, needed)
            yield x, y

    def loss_fn(batch, masks, mode):
        x, y = batch
        return ((stack(x, masks, mode=mode) - y) ** 2).mean()

    problem = SearchProblem(
        model=model, stack=stack, loss_fn=loss_fn, batches=batches, space=space, topology=topology, k=k, steps=steps
    )
    return problem, needed
