"""MaskedStack.observe: strategies read each computed block's input and output without touching model code."""
import pytest
import torch
from torch import nn

from pruneseek.engine import MaskedStack, MMDiTStream, SingleStream

from engine_toys import make_blocks


def record(log):
    return lambda i, x, y: log.append((i, x.clone(), y.clone()))


def test_observe_reports_every_block_input_and_output_unmasked_and_kept():
    blocks = make_blocks(["needed", "identity", "harmful", "needed"], seed=0)
    stack = MaskedStack(blocks, SingleStream())
    x = torch.randn(3, 16)
    log = []
    with stack.observe(record(log)):
        out = stack(x)
    assert [i for i, _, _ in log] == [0, 1, 2, 3]
    state = x
    for i, x_in, y in log:
        assert torch.equal(x_in, state) and torch.equal(y, blocks[i](state))
        state = y
    assert torch.equal(out, state)
    log.clear()
    with stack.observe(record(log)):
        stack.forward_kept(x, [0, 3])
    assert [i for i, _, _ in log] == [0, 3]


def test_observe_masked_blend_and_skip_reports_the_block_output_before_the_blend():
    blocks = make_blocks(["needed", "harmful", "needed", "harmful"], seed=1)
    stack = MaskedStack(blocks, SingleStream())
    x = torch.randn(2, 16)
    masks = torch.tensor([[1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 1.0, 1.0]])
    for mode, computed in (("blend", [0, 1, 2, 3]), ("skip", [0, 2, 3])):
        log = []
        with stack.observe(record(log)):
            out = stack(x, masks, mode=mode)
        assert [i for i, _, _ in log] == computed, mode
        for i, x_in, y in log:
            assert torch.equal(y, blocks[i](x_in))  # the block's own output, not the blended state
        assert torch.equal(out, stack(x, masks, mode=mode))  # observing changes nothing
    # the blended state is what the next block reads: block 1 is dropped for both samples
    assert torch.equal(log[1][1], log[0][2])


def test_observers_nest_and_are_removed_on_exit_and_on_error():
    stack = MaskedStack(make_blocks(["needed", "needed"], seed=2), SingleStream())
    x = torch.randn(1, 16)
    outer, inner = [], []
    with stack.observe(record(outer)):
        with stack.observe(record(inner)):
            stack(x)
        stack(x)
    assert len(outer) == 4 and len(inner) == 2
    assert stack._observers == ()
    with pytest.raises(RuntimeError, match="boom"):
        with stack.observe(record(outer)):
            raise RuntimeError("boom")
    assert stack._observers == ()
    stack(x)
    assert len(outer) == 4


class JointToy(nn.Module):
    """A two-stream block ``(h, c) -> (c', h')``; ``last`` mimics SD3's context_pre_only block."""

    def __init__(self, last: bool = False):
        super().__init__()
        self.lin = nn.Linear(8, 8)
        self.last = last

    def forward(self, hidden_states, encoder_hidden_states, temb=None):
        h = hidden_states + torch.tanh(self.lin(hidden_states)) + temb
        return (None if self.last else encoder_hidden_states * 0.5), h


def test_primary_stream_is_the_image_tokens_for_mmdit():
    assert torch.equal(SingleStream().primary(torch.ones(2)), torch.ones(2))
    h, c = torch.randn(2, 5, 8), torch.randn(2, 3, 8)
    assert MMDiTStream().primary((h, c)) is h
    stack = MaskedStack(nn.ModuleList([JointToy(), JointToy(last=True)]), MMDiTStream())
    seen = []
    primary = stack.adapter.primary
    with stack.observe(lambda i, s_in, s_out: seen.append((i, primary(s_in), primary(s_out)))):
        out_h, out_c = stack((h, c), torch.ones(2, 2), mode="skip", temb=torch.zeros(1))
    assert [i for i, _, _ in seen] == [0, 1] and seen[0][1] is h
    assert torch.equal(seen[1][2], out_h) and out_c is None
