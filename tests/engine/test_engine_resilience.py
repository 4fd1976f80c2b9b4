"""Exact resume and data-parallel search at the engine level (issue 7), on the toy stack.

Resume: a run that crashes mid-way (the loss raises at step k) and is resumed from its last checkpoint
ends bit-identical to an uninterrupted run. Data parallel: 2 gloo processes with a global batch of 8 hold
bit-identical gates after every step and end where one process with batch 8 ends.
"""
import functools
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pruneseek.engine import CheckpointError, Checkpointing, DataParallel, EngineError, MaskLearner, SearchConfig, run_search
from pruneseek.engine.checkpoint import load_checkpoint
from pruneseek.spaces import BlockSpace

from engine_toys import toy_problem

SPACE = BlockSpace.uniform(8, 4, 2)
KINDS = ["harmful", "needed", "needed", "identity", "needed", "identity", "harmful", "needed"]
STEPS = 14


class Crash(Exception):
    """Stands in for a killed process: raised from inside the loss at a chosen step."""


def search(checkpointing=None, crash_at=None, parallel=None, batch=16, mode="blend", steps=STEPS, noisy=False):
    problem, _ = toy_problem(KINDS, SPACE, steps=steps, seed=0, batch=batch)
    calls = [0]

    def batches():  # draws from torch's global RNG too: resume must restore it *after* fast-forwarding
        for x, y in problem.batches():
            yield x + 1e-3 * torch.randn(x.shape), y

    def loss_fn(b, masks, m):
        if calls[0] == crash_at:
            raise Crash
        calls[0] += 1
        if noisy:  # a stochastic loss (noisy targets from torch's global RNG), as dropout would be: the batches'
            x, y = b  # fast-forward on resume does not replay these draws, only restoring the saved RNG state does
            b = (x, y + 1e-2 * torch.randn(y.shape))
        return problem.loss_fn(b, masks, m)

    torch.manual_seed(0)
    config = SearchConfig(steps=steps, weight_update="lora", lora_rank=2, mode=mode, seed=0, progress=False,
                          ema_decay=0.9)
    learner = MaskLearner(SPACE)
    result = run_search(problem.model, problem.stack, learner, loss_fn, batches, config,
                        checkpointing=checkpointing, parallel=parallel)
    return result, learner


@pytest.mark.parametrize("crash_at,noisy", [(5, False), (9, False), (5, True), (9, True)])
def test_crashed_run_resumes_bit_identical(tmp_path, crash_at, noisy):
    run = functools.partial(search, noisy=noisy)
    reference, ref_learner = run()
    fingerprint = {"seed": 0, "steps": STEPS}
    with pytest.raises(Crash):
        run(Checkpointing(tmp_path, every=4, fingerprint=fingerprint), crash_at=crash_at)
    saved = load_checkpoint(Checkpointing(tmp_path, fingerprint=fingerprint))
    assert saved["step"] == 4 * (crash_at // 4) and saved["batches_consumed"] == saved["step"]
    resumed, learner = run(Checkpointing(tmp_path, every=4, resume=True, fingerprint=fingerprint))
    assert resumed.mask == reference.mask
    assert resumed.logits == reference.logits  # the EMA logits, bit for bit
    for a, b in zip(learner.gate_parameters(), ref_learner.gate_parameters()):
        assert torch.equal(a, b)
    assert resumed.loss_history == reference.loss_history and resumed.trajectory == reference.trajectory
    assert {k: v for k, v in resumed.cost.items() if k != "seconds"} == {
        k: v for k, v in reference.cost.items() if k != "seconds"}
    final = load_checkpoint(Checkpointing(tmp_path, fingerprint=fingerprint))
    assert final["step"] == STEPS  # the end is saved too: resuming a finished run just returns its result
    again, _ = run(Checkpointing(tmp_path, resume=True, fingerprint=fingerprint))
    assert again.logits == reference.logits


def test_checkpoint_of_other_settings_or_missing_is_refused(tmp_path):
    search(Checkpointing(tmp_path, every=7, fingerprint={"seed": 0, "data": {"crops": 16}}), steps=7)
    with pytest.raises(CheckpointError, match=r"data\.crops \(checkpoint 16, now 32\)"):
        search(Checkpointing(tmp_path, resume=True, fingerprint={"seed": 0, "data": {"crops": 32}}), steps=7)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        search(Checkpointing(tmp_path / "elsewhere", resume=True), steps=7)
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        search(Checkpointing(tmp_path, resume=True, fingerprint={"seed": 0}), steps=7)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, world: int, port: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        out = {}
        for mode in ("blend", "skip"):
            result, learner = search(parallel=DataParallel.current(), batch=8, mode=mode)
            out[mode] = {"gates": [p.detach().clone() for p in learner.gate_parameters()], "mask": result.mask,
                         "history": result.loss_history, "cost": result.cost}
        torch.save(out, os.path.join(folder, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_match_one_process_with_the_global_batch(tmp_path):
    mp.spawn(_rank, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for mode in ("blend", "skip"):
        single, learner = search(batch=8, mode=mode)
        r0, r1 = ranks[0][mode], ranks[1][mode]
        assert all(torch.equal(a, b) for a, b in zip(r0["gates"], r1["gates"]))  # identical on every rank
        assert r0["cost"]["gates_checked_identical"] == STEPS and r0["cost"]["processes"] == 2
        assert r0["mask"] == single.mask
        # Same samples, same noise; only the order of floating-point sums differs (shard means, all_reduce).
        for a, b in zip(r0["gates"], learner.gate_parameters()):
            torch.testing.assert_close(a, b.detach(), rtol=0, atol=1e-5)
        torch.testing.assert_close(torch.tensor(r0["history"]), torch.tensor(single.loss_history), rtol=1e-5, atol=1e-6)
        assert r0["cost"]["forward_passes"] == single.cost["forward_passes"] == 8 * STEPS


def test_a_global_batch_that_does_not_split_is_refused():
    with pytest.raises(EngineError, match="does not split over 2 processes"):
        DataParallel(rank=0, world=2).shard_rows(5)
    assert DataParallel(rank=1, world=2).shard_rows(8) == slice(4, 8)
