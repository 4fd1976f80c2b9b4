"""The fair recovery protocol (pruneseek.recovery) on tsdsr-mini with tiny budgets."""
from __future__ import annotations

import pytest
import torch

from pruneseek.latents import PairSpec, as_tuple, calibration_latents, select_images
from pruneseek.metrics import gmsd
from pruneseek.engine.schedules import anneal_sigma
from pruneseek.evaluation import eval_set, evaluate, evaluate_zero_shot
from pruneseek.recovery import RecoveryConfig, RecoveryError, recover, step_mask
from pruneseek.sr_problem import latent_batches, sr_loss
from pruneseek.targets.mini import load_mini

MASK = [1, 0, 1, 0] * 6  # 12 of 24, inside tsdsr-24-r50


@pytest.fixture(scope="module")
def teacher():
    return load_mini()


@pytest.fixture(scope="module")
def data(teacher, tmp_path_factory):
    spec = PairSpec(images=as_tuple(select_images("train")[:4]), count=8, hr_size=32, seed=0)
    return calibration_latents(teacher, spec, cache_dir=tmp_path_factory.mktemp("cache"), progress=False)


@pytest.fixture(scope="module")
def small_eval(teacher):
    return eval_set(teacher, crop=64, seeds=(0,), tile=64, per_image=1)


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _data_loss(target, mask, data) -> float:
    rows = torch.tensor(mask, dtype=torch.float32).expand(data["z_lr"].shape[0], -1)
    with torch.no_grad():
        return float(sr_loss(target, gmsd)(data, rows, "skip"))


def test_recovery_lowers_the_loss_and_leaves_teacher_and_dropped_blocks_alone(teacher, data):
    before = _state(teacher.transformer)
    prompt = teacher.prompt_embeds.clone()
    config = RecoveryConfig(steps=12, batch=4, lr=1e-3, seed=1)
    student, record = recover(teacher, MASK, data, gmsd, config)
    assert _data_loss(student, MASK, data) < _data_loss(teacher, MASK, data)
    # the teacher is untouched (the student is a deep copy)
    after = teacher.transformer.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(prompt, teacher.prompt_embeds) and student.transformer is not teacher.transformer
    # dropped blocks frozen, kept blocks and the embedders/output layers trained
    blocks_s, blocks_t = student.transformer.transformer_blocks, teacher.transformer.transformer_blocks
    for i, keep in enumerate(MASK):
        same = all(torch.equal(a, b) for a, b in zip(blocks_s[i].parameters(), blocks_t[i].parameters()))
        assert same != bool(keep), f"block {i}"
    assert not torch.equal(student.transformer.proj_out.weight, teacher.transformer.proj_out.weight)
    assert not torch.equal(student.transformer.pos_embed.proj.weight, teacher.transformer.pos_embed.proj.weight)
    assert torch.equal(student.prompt_embeds, teacher.prompt_embeds)
    # the record
    assert record.steps == 12 and len(record.loss_history) == 12 and record.forward_passes == 48
    assert record.backward_passes == 48 and record.block_evaluations == 12 * 12 * 4
    assert record.kept == [i for i in range(24) if MASK[i]]
    frozen = sum(p.numel() for i in range(24) if not MASK[i] for p in blocks_t[i].parameters())
    assert record.frozen_parameters == frozen and record.trainable_parameters > 0
    assert record.config["lr"] == 1e-3 and record.seconds > 0


def test_anneal_schedule_and_first_step_is_the_full_model(teacher, data):
    assert [anneal_sigma(t, 4) for t in range(6)] == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    assert anneal_sigma(0, 0) == 0.0
    row, mode = step_mask(MASK, 0, 4)
    assert mode == "blend" and torch.equal(row, torch.ones(24))
    row, mode = step_mask(MASK, 2, 4)
    assert mode == "blend" and set(row.tolist()) == {1.0, 0.5}
    row, mode = step_mask(MASK, 4, 4)
    assert mode == "skip" and row.tolist() == [float(v) for v in MASK]
    # with T > 0 the first recovery step's forward is exactly the full model's
    config = RecoveryConfig(steps=6, batch=4, lr=1e-3, seed=3, anneal_steps=4)
    _, record = recover(teacher, MASK, data, gmsd, config)
    first = next(iter(latent_batches(data, 4, 3, "cpu")()))
    with torch.no_grad():
        full = float(sr_loss(teacher, gmsd)(first, torch.ones(4, 24), "blend"))
        unmasked = teacher.sr_latent(first["z_lr"])
        annealed = teacher.sr_latent(first["z_lr"], step_mask(MASK, 0, 4)[0].expand(4, -1), "blend")
    assert torch.equal(unmasked, annealed)
    assert record.loss_history[0] == pytest.approx(full, rel=1e-6)
    assert record.anneal_steps == 4 and record.block_evaluations == (4 * 24 + 2 * 12) * 4
    with pytest.raises(RecoveryError, match="part of the budget"):
        recover(teacher, MASK, data, gmsd, RecoveryConfig(steps=3, anneal_steps=4))


def test_evaluate_metrics_and_zero_shot(teacher, small_eval, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no LPIPS weights here
    full = evaluate_zero_shot(teacher, [1] * 24, small_eval)
    assert set(full["metrics"]) == {"psnr_teacher", "psnr", "ssim", "haarpsi", "gmsd", "l1_teacher"}
    assert full["metrics"]["l1_teacher"] == 0.0 and full["crops"] == 4
    assert "LPIPS not computed" in full["lpips"] and "alexnet-owt-7be5be79.pth" in full["lpips"]
    pruned = evaluate(teacher, teacher, MASK, small_eval)
    assert pruned["metrics"]["l1_teacher"] > 0
    assert 0 < pruned["metrics"]["haarpsi"] <= 1 and 0 < pruned["metrics"]["ssim"] <= 1
    assert [r["image"] for r in pruned["rows"]] == ["astronaut", "china", "gravel", "coins"]


def test_bad_masks_and_budgets(teacher, data, small_eval):
    with pytest.raises(RecoveryError, match="has 23 entries but the model has 24 layers"):
        recover(teacher, MASK[:-1], data, gmsd, RecoveryConfig(steps=1))
    with pytest.raises(RecoveryError, match="has 25 entries"):
        evaluate_zero_shot(teacher, MASK + [1], small_eval)
    with pytest.raises(RecoveryError, match="only 0 .drop. and 1"):
        recover(teacher, [0.5] * 24, data, gmsd, RecoveryConfig(steps=1))
    with pytest.raises(RecoveryError, match="drops every layer"):
        recover(teacher, [0] * 24, data, gmsd, RecoveryConfig(steps=1))
    with pytest.raises(RecoveryError, match="fewer than the recovery batch"):
        recover(teacher, MASK, data, gmsd, RecoveryConfig(steps=1, batch=64))
    with pytest.raises(RecoveryError, match="steps must be"):
        RecoveryConfig(steps=0).validate()
