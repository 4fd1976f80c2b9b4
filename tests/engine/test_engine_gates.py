import math

import pytest
import torch

from pruneseek.engine import (
    BlockGates,
    EngineError,
    LogitEMA,
    confidence,
    decide,
    hard_gumbel_softmax,
    log_marginals,
    marginals,
    option_tables,
    probabilities,
)
from pruneseek.engine.gates import gumbel_noise
from pruneseek.spaces import BlockSpace

OPTIONS_4_2 = option_tables(BlockSpace([(4, 2)]))[0]  # {0,1} {0,2} {0,3} {1,2} {1,3} {2,3}


def test_marginals_hand_computed_4_keep_2():
    p = torch.tensor([0.1, 0.2, 0.3, 0.15, 0.05, 0.2])
    # π_0 = p{0,1}+p{0,2}+p{0,3}; π_1 = p{0,1}+p{1,2}+p{1,3}; π_2 = p{0,2}+p{1,2}+p{2,3}; π_3 = p{0,3}+p{1,3}+p{2,3}
    expected = torch.tensor([0.6, 0.3, 0.55, 0.55])
    torch.testing.assert_close(marginals(p, OPTIONS_4_2), expected)
    assert float(marginals(p, OPTIONS_4_2).sum()) == pytest.approx(2.0)


def test_marginals_concatenate_blocks_and_batch():
    space = BlockSpace([(4, 2), (2, 1)])
    opts = option_tables(space)
    p0 = torch.tensor([[0.1, 0.2, 0.3, 0.15, 0.05, 0.2], [1.0, 0, 0, 0, 0, 0]])
    p1 = torch.tensor([[0.25, 0.75], [0.5, 0.5]])
    out = marginals([p0, p1], opts)
    torch.testing.assert_close(out, torch.tensor([[0.6, 0.3, 0.55, 0.55, 0.25, 0.75], [1.0, 1.0, 0.0, 0.0, 0.5, 0.5]]))


def test_probabilities_decide_confidence():
    logits = torch.tensor([0.0, math.log(3.0) / 100])
    torch.testing.assert_close(probabilities(logits, 100.0), torch.tensor([0.25, 0.75]))
    space = BlockSpace([(4, 2), (2, 1)])
    opts = option_tables(space)
    l0 = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.02, 0.01])  # option 4 = {1, 3}
    l1 = torch.tensor([0.03, 0.0])  # option 0 = {0}
    assert decide([l0, l1], opts).tolist() == [0, 1, 0, 1, 1, 0]
    conf = confidence([l0, l1], 100.0)
    e = math.e
    torch.testing.assert_close(conf, torch.tensor([e**2 / (4 + e**2 + e), e**3 / (e**3 + 1)]))
    # untrained: ties go to option 0
    assert decide([torch.zeros(6), torch.zeros(2)], opts).tolist() == [1, 1, 0, 0, 1, 0]


def test_logit_ema_two_updates_by_hand():
    ema = LogitEMA([torch.tensor([0.02, 0.02])], decay=0.999)
    ema.update([torch.tensor([1.0, -1.0])])
    torch.testing.assert_close(ema.value[0], torch.tensor([0.02098, 0.01898]))
    ema.update([torch.tensor([2.0, 0.0])])
    torch.testing.assert_close(ema.value[0], torch.tensor([0.999 * 0.02098 + 0.002, 0.999 * 0.01898]))
    with pytest.raises(EngineError):
        LogitEMA([torch.zeros(1)], decay=1.0)


def test_hard_gumbel_forward_exact_one_hot_backward_soft_gradient():
    logits = torch.tensor([0.01, 0.02, -0.01, 0.0], requires_grad=True)
    w = torch.tensor([0.3, -1.0, 2.0, 0.5])
    tau, scaling = 0.7, 100.0
    y, index = hard_gumbel_softmax(logits, tau, scaling, torch.Generator().manual_seed(5), batch=8)
    assert set(y.detach().unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(y.detach().sum(-1), torch.ones(8))
    assert torch.equal(y.detach().argmax(-1), index)
    (y * w).sum().backward()
    # Same noise, soft sample by hand: the straight-through gradient is the soft sample's gradient.
    ref = logits.detach().clone().requires_grad_(True)
    g = gumbel_noise((8, 4), torch.Generator().manual_seed(5))
    soft = torch.softmax((ref * scaling + g) / tau, dim=-1)
    (soft * w).sum().backward()
    torch.testing.assert_close(logits.grad, ref.grad)
    assert torch.equal(soft.detach().argmax(-1), index)


def test_gumbel_max_frequencies_follow_softmax_of_scaled_logits():
    probs = torch.tensor([0.5, 0.3, 0.2])
    logits = probs.log() / 100.0
    gen = torch.Generator().manual_seed(0)
    _, index = hard_gumbel_softmax(logits, tau=2.0, scaling=100.0, generator=gen, batch=20000)
    freq = torch.bincount(index, minlength=3).float() / 20000
    torch.testing.assert_close(freq, probs, atol=0.015, rtol=0)


def test_invalid_options_are_never_sampled_and_gradients_stay_finite():
    logits = torch.zeros(3, requires_grad=True)
    valid = torch.tensor([[True, True, False], [False, True, False]]).repeat(50, 1)
    y, index = hard_gumbel_softmax(logits, 1.0, 1.0, torch.Generator().manual_seed(1), batch=100, valid=valid)
    assert bool(valid.gather(1, index[:, None]).all())
    assert (index[1::2] == 1).all()
    (y * torch.arange(3.0)).sum().backward()
    assert torch.isfinite(logits.grad).all()
    with pytest.raises(EngineError):
        hard_gumbel_softmax(logits, 1.0, 1.0, None, batch=1, valid=torch.zeros(1, 3, dtype=torch.bool))


def test_block_gates_sample_is_seeded_per_sample_and_in_space():
    space = BlockSpace([(4, 2), (3, 1), (2, 2)])
    gates = BlockGates(space)
    assert [p.shape[0] for p in gates.logits] == [6, 3, 1]
    assert all(torch.all(p == 0.02) for p in gates.logits)
    a = gates.sample(64, 4.0, 100.0, torch.Generator().manual_seed(3))
    b = gates.sample(64, 4.0, 100.0, torch.Generator().manual_seed(3))
    assert torch.equal(a.mask, b.mask) and torch.equal(a.index, b.index)
    assert a.mask.shape == (64, 9)
    assert all(space.contains(m) for m in a.mask.detach().int().numpy())
    assert len({tuple(m) for m in a.mask.detach().int().tolist()}) > 5  # each sample draws its own mask
    for j, opts in enumerate(gates.options):
        b_ = space.blocks[j]
        assert torch.equal(a.mask[:, b_.start : b_.stop].detach(), opts[a.index[:, j]])


def test_block_gates_gradient_reaches_logits():
    space = BlockSpace([(4, 2)])
    gates = BlockGates(space)
    s = gates.sample(4, 1.0, 100.0, torch.Generator().manual_seed(0))
    (s.mask * torch.tensor([1.0, -1.0, 2.0, 0.0])).sum().backward()
    assert gates.logits[0].grad is not None and gates.logits[0].grad.abs().sum() > 0


def test_log_marginals_order_like_marginals_without_underflow():
    opts = OPTIONS_4_2
    logits = torch.tensor([0.1, 0.2, -0.3, 0.05, 0.0, 0.15], dtype=torch.float64)
    torch.testing.assert_close(log_marginals(logits, opts, 100.0).exp(), marginals(probabilities(logits, 100.0), opts))
    # far-apart logits: π of layers 2 and 3 underflows to 0 in float64, log π still orders them
    far = torch.tensor([20.0, 0.0, -5.0, 0.0, -5.0, -10.0], dtype=torch.float64)
    pi = marginals(probabilities(far, 100.0), opts)
    assert pi[2] == pi[3] == 0.0
    lp = log_marginals(far, opts, 100.0)
    assert lp[2] > lp[3] and torch.isfinite(lp).all()
