import json
import math

import pytest
import torch

from pruneseek.engine import EngineError, MaskLearner, NonFiniteLossError, SearchConfig, TransferGates, run_search
from pruneseek.errors import PruneseekError
from pruneseek.spaces import BlockSpace

from engine_toys import toy_problem

SPACE = BlockSpace.uniform(8, 4, 2)
KINDS = ["harmful", "needed", "needed", "identity", "needed", "identity", "harmful", "needed"]


class NanGrad(torch.autograd.Function):
    """Identity forward, NaN gradient backward: a finite loss whose update would not be."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * float("nan")


def instrumented(
    nan_steps=(), nan_grad_steps=(), nan_from=None, weight_update="full", steps=12, max_nonfinite=10, transfer=False
):
    problem, _ = toy_problem(KINDS, SPACE, steps=steps, seed=0)
    learner = MaskLearner(SPACE, TransferGates(SPACE, "pairs") if transfer else None)
    snapshots = []

    def loss_fn(batch, masks, mode):
        i = len(snapshots)
        snapshots.append(
            (
                [p.detach().clone() for p in learner.gate_parameters()],
                [p.detach().clone() for p in problem.model.parameters()],
            )
        )
        loss = problem.loss_fn(batch, masks, mode)
        if i in nan_steps or (nan_from is not None and i >= nan_from):
            return loss * float("nan")
        if i in nan_grad_steps:
            return NanGrad.apply(loss)
        return loss

    config = SearchConfig(
        steps=steps, weight_update=weight_update, gate_lr=1e-2, weight_lr=1e-2, lora_rank=2, lora_alpha=2,
        max_nonfinite=max_nonfinite, progress=False, seed=0,
    )
    return problem, learner, loss_fn, config, snapshots


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


def manual_ema(snapshots, final, good_steps, decay=0.999):
    ema = [p.clone() for p in snapshots[0][0]]
    for t in good_steps:
        after = snapshots[t + 1][0] if t + 1 < len(snapshots) else final
        ema = [decay * e + (1 - decay) * a for e, a in zip(ema, after)]
    return ema


def test_nonfinite_steps_are_skipped_counted_and_leave_state_untouched():
    nan_steps, nan_grad_steps = {3, 4}, {8}
    problem, learner, loss_fn, config, snaps = instrumented(nan_steps=nan_steps, nan_grad_steps=nan_grad_steps)
    result = run_search(problem.model, problem.stack, learner, loss_fn, problem.batches, config)
    bad = nan_steps | nan_grad_steps
    assert result.nonfinite_steps == 3 and result.steps == 12
    assert [math.isnan(v) for v in result.loss_history] == [i in nan_steps for i in range(12)]
    for t in range(11):
        gates_same = same(snaps[t][0], snaps[t + 1][0])
        weights_same = same(snaps[t][1], snaps[t + 1][1])
        if t in bad:
            assert gates_same and weights_same, t
        else:
            assert not gates_same and not weights_same, t  # a good step does move both
    final = [p.detach() for p in learner.gate_parameters()]
    ema = manual_ema(snaps, final, [t for t in range(12) if t not in bad])
    for got, want in zip(result.logits, ema):
        torch.testing.assert_close(torch.tensor(got), want, rtol=0, atol=1e-7)


def test_too_many_nonfinite_in_a_row_stops_with_last_good_state_lora():
    problem, learner, loss_fn, config, snaps = instrumented(nan_from=4, weight_update="lora", max_nonfinite=2)
    before = {k: v.clone() for k, v in problem.model.state_dict().items()}
    flags = [p.requires_grad for p in problem.model.parameters()]
    with pytest.raises(NonFiniteLossError, match="max_nonfinite=2") as info:
        run_search(problem.model, problem.stack, learner, loss_fn, problem.batches, config)
    assert isinstance(info.value, PruneseekError)
    partial = info.value.result
    assert partial.steps == 7 and partial.nonfinite_steps == 3 and partial.stopped == "nonfinite"
    assert len(snaps) == 7  # stopped at the third consecutive non-finite step (steps 4, 5, 6)
    # the gates are those after the last good step (step 3), and the EMA read them
    current = [p.detach() for p in learner.gate_parameters()]
    assert same(current, snaps[4][0]) and same(current, snaps[6][0])
    ema = manual_ema(snaps, current, [0, 1, 2, 3])
    for got, want in zip(partial.logits, ema):
        torch.testing.assert_close(torch.tensor(got), want, rtol=0, atol=1e-7)
    assert len(partial.mask) == 8 and sum(partial.mask) == 4
    # the model is handed back as it came: LoRA removed, weights and requires_grad flags restored
    assert problem.model.state_dict().keys() == before.keys()
    assert all(torch.equal(before[k], v) for k, v in problem.model.state_dict().items())
    assert [p.requires_grad for p in problem.model.parameters()] == flags


def test_weight_update_modes():
    for mode in ("frozen", "full"):
        problem, learner, loss_fn, config, _ = instrumented(weight_update=mode, steps=5)
        before = [p.detach().clone() for p in problem.model.parameters()]
        run_search(problem.model, problem.stack, learner, loss_fn, problem.batches, config)
        unchanged = same(before, [p.detach() for p in problem.model.parameters()])
        assert unchanged == (mode == "frozen")
        assert all(p.requires_grad for p in problem.model.parameters())


def test_lora_after_merge_and_keep():
    from peft.tuners.tuners_utils import BaseTunerLayer

    problem, learner, loss_fn, config, _ = instrumented(weight_update="lora", steps=5)
    config.lora_after = "keep"
    run_search(problem.model, problem.stack, learner, loss_fn, problem.batches, config)
    assert any(isinstance(m, BaseTunerLayer) for m in problem.model.modules())

    problem, learner, loss_fn, config, _ = instrumented(weight_update="lora", steps=5)
    config.lora_after = "merge"
    config.lora_init = "gaussian"
    before = [p.detach().clone() for p in problem.model.parameters()]
    run_search(problem.model, problem.stack, learner, loss_fn, problem.batches, config)
    assert not any(isinstance(m, BaseTunerLayer) for m in problem.model.modules())
    assert not same(before, [p.detach() for p in problem.model.parameters()])  # ΔW folded in


def test_same_seed_same_result_other_seed_other_samples():
    results = []
    for seed in (0, 0, 1):
        problem, learner, loss_fn, config, _ = instrumented(weight_update="frozen", steps=6, transfer=True)
        config.seed = seed
        results.append(run_search(problem.model, problem.stack, learner, loss_fn, problem.batches, config))
    assert results[0].loss_history == results[1].loss_history and results[0].logits == results[1].logits
    assert results[0].loss_history != results[2].loss_history


def test_result_is_json_friendly_and_reports_transfer():
    problem, learner, loss_fn, config, _ = instrumented(weight_update="frozen", steps=3, transfer=True)
    result = run_search(problem.model, problem.stack, learner, loss_fn, problem.batches, config)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["kept"] == [i for i, v in enumerate(data["mask"]) if v]
    assert len(data["marginals"]) == 8 and len(data["probabilities"]) == 2
    assert data["transfer"]["rule"] == "marginal" and data["transfer"]["edges"] == [[0, 1]]
    assert 0 < data["confidence"] <= 1
    assert data["settings"]["steps"] == 3


def test_config_validation_and_batch_sources():
    with pytest.raises(EngineError, match="weight_update"):
        SearchConfig(weight_update="half").validate()
    with pytest.raises(EngineError, match="mode"):
        SearchConfig(mode="fast").validate()
    with pytest.raises(EngineError, match="steps"):
        SearchConfig(steps=0).validate()
    problem, learner, loss_fn, config, _ = instrumented(weight_update="frozen", steps=5)
    batches = [next(problem.batches()) for _ in range(2)]
    run_search(problem.model, problem.stack, learner, loss_fn, batches, config)  # a list is re-iterated
    with pytest.raises(EngineError, match="ran out"):
        run_search(problem.model, problem.stack, learner, loss_fn, iter(batches), config)
    with pytest.raises(EngineError, match="no batches"):
        run_search(problem.model, problem.stack, learner, loss_fn, lambda: iter([]), config)


def test_engine_never_imports_strategies_or_cli():
    import pathlib

    import pruneseek.engine as engine

    for path in pathlib.Path(engine.__file__).parent.glob("*.py"):
        text = path.read_text()
        for forbidden in ("pruneseek.strategies", "pruneseek.cli", "pruneseek.commands"):
            assert forbidden not in text, path
