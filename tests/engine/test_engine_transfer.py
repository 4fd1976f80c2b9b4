import pytest
import torch

from pruneseek.engine import EngineError, MaskLearner, TransferGates, transfer_decision
from pruneseek.engine.gates import BlockGates
from pruneseek.spaces import BlockSpace, TransferSpace

SHAPES = {
    "uniform": [(4, 2)] * 4,
    "uneven": [(3, 1), (4, 2), (2, 1), (5, 3)],
    "tight": [(2, 2), (3, 0), (4, 2), (3, 1)],  # blocks that cannot corrode / expand
}


def randomised(learner: MaskLearner, seed: int) -> MaskLearner:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in learner.gate_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    return learner


@pytest.mark.parametrize("rule", ["marginal", "next-option"])
@pytest.mark.parametrize("topology", ["pairs", "chain"])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_kept_count_is_constant_for_every_sample_of_every_step(rule, topology, shape):
    space = BlockSpace(SHAPES[shape])
    reach = TransferSpace(space, 1, topology)
    learner = randomised(MaskLearner(space, TransferGates(space, topology, k=1, rule=rule)), seed=7)
    gen = torch.Generator().manual_seed(0)
    moved = 0
    for step in range(30):
        tau = 4.0 - 3.9 * step / 29
        masks = learner.sample(32, tau, 100.0, gen)
        hard = masks.detach()
        assert ((hard == 0) | (hard == 1)).all()
        assert (hard.sum(dim=1) == space.num_kept).all(), (step, hard.sum(dim=1))
        for row in hard.int().numpy():
            assert reach.contains(row)
        moved += sum(not space.contains(row) for row in hard.int().numpy())
    assert moved > 0  # transfers do happen, so the invariant was exercised


@pytest.mark.parametrize("rule", ["marginal", "next-option"])
def test_kept_count_with_k2_and_user_edges(rule):
    space = BlockSpace([(6, 3), (6, 3), (4, 2), (5, 2)])
    edges = [(0, 2), (1, 2), (2, 3), (0, 3)]  # a graph with a cycle
    reach = TransferSpace(space, 2, edges)
    learner = randomised(MaskLearner(space, TransferGates(space, edges, k=2, rule=rule)), seed=3)
    gen = torch.Generator().manual_seed(1)
    moved = 0
    for _ in range(20):
        hard = learner.sample(32, 1.0, 100.0, gen).detach()
        assert (hard.sum(dim=1) == space.num_kept).all()
        assert all(reach.contains(r) for r in hard.int().numpy())
        moved += sum(not space.contains(r) for r in hard.int().numpy())
    assert moved > 0


def test_impossible_transforms_are_masked_out_per_sample():
    # block 0 keeps all of its 2 layers (cannot expand), block 1 keeps none of 3 (cannot corrode):
    # m⁺ (expand 0, corrode 1) is impossible; m⁻ (corrode 0, expand 1) is possible.
    space = BlockSpace([(2, 2), (3, 0)])
    tg = TransferGates(space, "pairs", k=1)
    with torch.no_grad():
        tg.q[0].copy_(torch.tensor([0.0, 0.0, 10.0]))  # strongly prefers the impossible m⁺
    block_mask = torch.tensor([[1.0, 1, 0, 0, 0]]).expand(64, -1)
    gates = BlockGates(space)
    out = tg.apply(block_mask, list(gates.logits), 1.0, 100.0, torch.Generator().manual_seed(0))
    assert not out.valid[:, 0, 2].any() and out.valid[:, 0, 0].all()
    assert (out.choice != 1).all()
    assert (out.mask.detach().sum(1) == 2).all()


def test_marginal_rule_moves_lowest_and_highest_pi_layers():
    space = BlockSpace([(4, 2), (4, 2)])
    tg = TransferGates(space, "pairs", k=1, rule="marginal")
    gates = BlockGates(space)
    with torch.no_grad():
        # block 0: p ∝ softmax(100·l): option {0,1} (idx 0) likely, {1,2} (idx 3) next → π_2 > π_3
        gates.logits[0].copy_(torch.tensor([0.03, 0.0, 0.0, 0.02, 0.0, 0.0]))
        # block 1: option {1,2} (idx 3) highest, {0,1} second → π_1 > π_2 > π_0 > π_3;
        # kept {1,2}: the lowest π is layer 2
        gates.logits[1].copy_(torch.tensor([0.02, 0.0, 0.0, 0.03, 0.0, 0.0]))
        tg.q[0].copy_(torch.tensor([-10.0, -10.0, 10.0]))  # always m⁺: expand block 0, corrode block 1
    block_mask = torch.tensor([[1.0, 1, 0, 0, 0, 1, 1, 0]])
    out = tg.apply(block_mask, list(gates.logits), 1.0, 100.0, torch.Generator().manual_seed(0))
    assert out.mask.detach().tolist() == [[1, 1, 1, 0, 0, 1, 0, 0]]
    with torch.no_grad():
        tg.q[0].copy_(torch.tensor([10.0, -10.0, -10.0]))  # always m⁻: corrode block 0, expand block 1
    out = tg.apply(block_mask, list(gates.logits), 1.0, 100.0, torch.Generator().manual_seed(0))
    # block 0 kept {0,1}: π_0 = p{0,1}+… vs π_1 = p{0,1}+p{1,2}+… → layer 0 has the lower π and goes;
    # block 1 dropped {0,3}: π_0 = p{0,1}+… > π_3 → layer 0 (global 4) comes in.
    assert out.mask.detach().tolist() == [[0, 1, 0, 0, 1, 1, 1, 0]]


def test_marginal_rule_breaks_exact_ties_at_random():
    space = BlockSpace([(4, 2), (4, 2)])
    tg = TransferGates(space, "pairs", k=1, rule="marginal")
    gates = BlockGates(space)  # uniform logits: every π equal
    with torch.no_grad():
        tg.q[0].copy_(torch.tensor([10.0, -10.0, -10.0]))
    block_mask = torch.tensor([[1.0, 1, 0, 0, 1, 1, 0, 0]]).expand(400, -1)
    out = tg.apply(block_mask, list(gates.logits), 1.0, 100.0, torch.Generator().manual_seed(0)).mask.detach()
    dropped_first = (out[:, 0] == 0).float().mean()
    added_6 = out[:, 6].float().mean()
    assert 0.35 < dropped_first < 0.65 and 0.35 < added_6 < 0.65
    again = tg.apply(block_mask, list(gates.logits), 1.0, 100.0, torch.Generator().manual_seed(0)).mask.detach()
    assert torch.equal(out, again)  # seeded


def test_next_option_rule_uses_highest_admissible_raw_logit():
    space = BlockSpace([(4, 2), (4, 2)])
    tg = TransferGates(space, "pairs", k=1, rule="next-option")
    gates = BlockGates(space)
    with torch.no_grad():
        # block 0, o = {0,1}: {2,3} (idx 5) has the larger logit but shares no layer → not admissible;
        # the admissible best is {0,2} (idx 1) → union {0,1,2}, intersection {0}.
        gates.logits[0].copy_(torch.tensor([5.0, 1.0, 0.5, 0.2, 0.1, 4.0]))
        # block 1, o = {0,1} (global 4,5): best admissible is {1,3} (idx 4) → intersection {1} (global 5)
        gates.logits[1].copy_(torch.tensor([5.0, 0.0, 0.0, 0.0, 2.0, 0.0]))
        # m⁺: union for the first block, intersection for the second
        tg.q[0].copy_(torch.tensor([-10.0, -10.0, 10.0]))
    block_mask = torch.tensor([[1.0, 1, 0, 0, 1, 1, 0, 0]])
    out = tg.apply(block_mask, list(gates.logits), 1.0, 100.0, torch.Generator().manual_seed(0))
    assert out.mask.detach().tolist() == [[1, 1, 1, 0, 0, 1, 0, 0]]
    with torch.no_grad():
        tg.q[0].copy_(torch.tensor([10.0, -10.0, -10.0]))  # m⁻: intersection first, union second
    out = tg.apply(block_mask, list(gates.logits), 1.0, 100.0, torch.Generator().manual_seed(0))
    assert out.mask.detach().tolist() == [[1, 0, 0, 0, 1, 1, 0, 1]]


def test_next_option_restriction_keeps_counts_where_the_reference_would_not():
    # (5 keep 3): the reference would admit o' sharing 1 layer (intersection drops 2, union adds 2 — fine) or
    # 2 layers (drops 1 / adds 1); pruneseek admits only |o ∧ o'| = s − k = 2 so every move is exactly k = 1.
    space = BlockSpace([(5, 3), (5, 3)])
    tg = TransferGates(space, "pairs", k=1, rule="next-option")
    gates = BlockGates(space)
    with torch.no_grad():
        gates.logits[0].copy_(torch.randn(10, generator=torch.Generator().manual_seed(0)))
        gates.logits[1].copy_(torch.randn(10, generator=torch.Generator().manual_seed(1)))
    s = gates.sample(200, 1.0, 1.0, torch.Generator().manual_seed(2))
    out = tg.apply(s.mask, list(gates.logits), 1.0, 100.0, torch.Generator().manual_seed(3))
    counts = torch.stack([out.mask[:, :5].sum(1), out.mask[:, 5:].sum(1)], 1).detach()
    assert set(map(tuple, counts.int().tolist())) <= {(2, 4), (3, 3), (4, 2)}


def test_gradients_reach_q_and_block_logits():
    space = BlockSpace([(4, 2), (4, 2)])
    for rule in ("marginal", "next-option"):
        learner = MaskLearner(space, TransferGates(space, "pairs", k=1, rule=rule))
        masks = learner.sample(16, 1.0, 100.0, torch.Generator().manual_seed(0))
        (masks * torch.arange(8.0)).sum().backward()
        assert learner.transfer.q[0].grad.abs().sum() > 0
        assert all(p.grad.abs().sum() > 0 for p in learner.gates.logits)


def test_share_across_batch_draws_one_mask():
    space = BlockSpace([(4, 2), (4, 2)])
    learner = MaskLearner(space, TransferGates(space, "pairs"), share_across_batch=True)
    masks = learner.sample(8, 1.0, 100.0, torch.Generator().manual_seed(0))
    assert masks.shape == (8, 8) and (masks == masks[0]).all()


def test_decision_largest_q_then_top_pi():
    space = BlockSpace([(4, 2), (4, 2)])
    pi = torch.tensor([0.9, 0.2, 0.8, 0.1, 0.3, 0.95, 0.6, 0.15])
    d = transfer_decision(space, [(0, 1)], 1, [torch.tensor([0.0, 0.1, 0.5])], pi)  # m⁺: expand 0, corrode 1
    assert d["choices"] == [1] and d["counts"] == [3, 1]
    assert d["mask"].tolist() == [1, 1, 1, 0, 0, 1, 0, 0]
    d = transfer_decision(space, [(0, 1)], 1, [torch.tensor([0.02, 0.02, 0.02])], pi)  # ties → unchanged
    assert d["choices"] == [0] and d["mask"].tolist() == [1, 0, 1, 0, 0, 1, 1, 0]
    d = transfer_decision(space, [(0, 1)], 1, [torch.tensor([0.9, 0.1, 0.5])], pi)  # m⁻
    assert d["counts"] == [1, 3] and d["mask"].tolist() == [1, 0, 0, 0, 1, 1, 1, 0]


def test_decision_falls_back_when_the_best_transform_is_infeasible():
    space = BlockSpace([(2, 2), (3, 1)])
    pi = torch.tensor([0.5, 0.5, 0.9, 0.1, 0.4])
    d = transfer_decision(space, [(0, 1)], 1, [torch.tensor([0.0, 0.5, 1.0])], pi)  # m⁺ would expand a full block
    assert d["choices"] == [0] and d["mask"].tolist() == [1, 1, 1, 0, 0]


def test_transfer_gates_validate_arguments():
    space = BlockSpace([(4, 2), (4, 2)])
    with pytest.raises(EngineError, match="rule"):
        TransferGates(space, "pairs", rule="random")
    with pytest.raises(EngineError):
        TransferGates(space, "pairs", k=0)
    tg = TransferGates(space, "chain")
    assert tg.edges == [(0, 1)] and torch.equal(tg.q[0].detach(), torch.full((3,), 0.02))


def test_candidate_free_functions_tensors_in_tensors_out():
    from pruneseek.engine import marginal_candidates, next_option_candidates

    current = torch.tensor([[1.0, 0, 1, 0], [1.0, 1, 1, 1], [0.0, 0, 0, 0]])
    pi = torch.tensor([0.9, 0.2, 0.4, 0.5])
    drop, can_corrode, add, can_expand = marginal_candidates(current, pi, 1)
    assert drop[0].tolist() == [0, 0, 1, 0] and add[0].tolist() == [0, 0, 0, 1]
    assert can_corrode.tolist() == [True, True, False] and can_expand.tolist() == [True, False, True]
    assert drop[1].tolist() == [0, 1, 0, 0] and add[2].tolist() == [1, 0, 0, 0]
    # a block keeping nothing has log π = −inf everywhere: still exactly k eligible layers are picked
    drop, _, add, can_expand = marginal_candidates(torch.zeros(5, 3), torch.full((3,), float("-inf")), 1)
    assert (add.sum(1) == 1).all() and can_expand.all()

    options = torch.tensor(
        [[1.0, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 1], [0, 1, 1, 0], [0, 1, 0, 1], [0, 0, 1, 1]]
    )
    logits = torch.tensor([0.0, 0.3, 0.1, 0.2, 0.0, 0.9])  # o = {0,1}; {2,3} (0.9) shares nothing → {0,2} (0.3)
    drop, can_corrode, add, can_expand = next_option_candidates(torch.tensor([[1.0, 1, 0, 0]]), logits, options, 2, 1)
    assert drop.tolist() == [[0, 1, 0, 0]] and add.tolist() == [[0, 0, 1, 0]]
    assert can_corrode.all() and can_expand.all()
