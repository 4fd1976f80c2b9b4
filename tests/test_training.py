"""The one training step (pruneseek.training): clipping, the non-finite policy, LoRA as a context manager,
endless batches."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pruneseek.errors import EngineError
from pruneseek.training import Trainer, endless, linear_targets, lora_adapters, lora_parameters


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))


def _loss(model, scale=1.0):
    x = torch.ones(2, 4)
    return model(x).pow(2).mean() * scale


def test_finite_step_clips_and_updates():
    model = _model()
    params = list(model.parameters())
    before = [p.detach().clone() for p in params]
    trainer = Trainer(torch.optim.SGD(params, lr=1.0), params, clip_norm=1e-3)
    trainer.zero_grad()
    assert trainer.step(_loss(model, 1e4)) is True
    moved = float(torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(params, before))))
    assert moved == pytest.approx(1e-3, rel=1e-4)  # SGD at lr 1 moves by exactly the clipped gradient norm
    assert trainer.nonfinite == 0 and math.isfinite(trainer.value)


def test_nonfinite_steps_are_skipped_counted_and_stop_after_n_in_a_row():
    model = _model()
    params = list(model.parameters())
    trainer = Trainer(torch.optim.AdamW(params, lr=1e-2), params, max_nonfinite=2,
                      stop=lambda n: EngineError(f"stopped after {n}"))
    good = [p.detach().clone() for p in params]
    for _ in range(2):
        trainer.zero_grad()
        assert trainer.step(_loss(model, float("nan"))) is False
        assert all(torch.equal(p, g) for p, g in zip(params, good)) and all(p.grad is None for p in params)
    trainer.zero_grad()
    assert trainer.step(_loss(model)) is True  # a good step resets the run of bad ones
    assert (trainer.nonfinite, trainer.consecutive) == (2, 0)
    last_good = [p.detach().clone() for p in params]
    with pytest.raises(EngineError, match="stopped after 3"):
        for _ in range(3):
            trainer.zero_grad()
            trainer.step(_loss(model, float("inf")))
    assert all(torch.equal(p, g) for p, g in zip(params, last_good))  # the last good state is kept
    assert trainer.nonfinite == 5


def test_infinite_gradient_norm_is_skipped_too():
    model = _model()
    params = list(model.parameters())
    trainer = Trainer(torch.optim.SGD(params, lr=1.0), params)
    before = [p.detach().clone() for p in params]
    model[0].weight.register_hook(lambda g: torch.full_like(g, float("inf")))
    trainer.zero_grad()
    loss = _loss(model)
    value, finite = trainer.read(loss)
    assert finite and math.isfinite(value)
    assert trainer.apply(loss, finite) is False and trainer.nonfinite == 1
    assert all(torch.equal(p, b) for p, b in zip(params, before))


@pytest.mark.parametrize("after", ["discard", "merge", "keep"])
def test_lora_adapters_train_only_the_adapters_and_restore(after):
    model = _model()
    model[2].weight.requires_grad_(False)  # a frozen flag must come back as it was
    base = model[0].weight.detach().clone()
    targets = linear_targets(model)
    assert targets == ["0", "2"]
    with lora_adapters(model, targets, rank=2, alpha=2.0, seed=0, after=after) as params:
        assert params == lora_parameters(model) and len(params) == 4
        with torch.no_grad():
            for p in params:
                p.fill_(0.1)  # a non-zero update ΔW = B·A
        assert {id(p) for p in model.parameters() if p.requires_grad} == {id(p) for p in params}
    wrapped = any("lora_" in n for n, _ in model.named_parameters())
    assert wrapped == (after == "keep")
    assert model[2].weight.requires_grad is False and model[0].weight.requires_grad is True
    if after == "discard":
        assert torch.equal(model[0].weight, base)
    if after == "merge":
        assert torch.allclose(model[0].weight, base + 0.1 * 0.1 * 2)  # ΔW = (α/r)·B·A = 1 · 2 · 0.01 folded in


def test_endless_recalls_a_callable_and_refuses_empty_or_spent_sources():
    calls = []

    def one_pass():
        calls.append(1)
        return iter([1, 2])

    stream = endless(one_pass)
    assert [next(stream) for _ in range(5)] == [1, 2, 1, 2, 1] and len(calls) == 3
    assert [next(endless([7, 8])) for _ in range(1)] == [7]
    spent = endless(iter([1]))
    next(spent)
    with pytest.raises(EngineError, match="ran out"):
        next(spent)
    with pytest.raises(EngineError, match="no batches"):
        next(endless(lambda: iter([])))


def test_a_gradient_scaler_overflow_is_a_skipped_step_that_lowers_the_scale():
    model = _model()
    params = list(model.parameters())
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**127)  # so large that the scaled gradients overflow
    trainer = Trainer(torch.optim.SGD(params, lr=0.1), params, scaler=scaler, max_nonfinite=200)
    before = [p.detach().clone() for p in params]
    trainer.zero_grad()
    assert trainer.step(_loss(model, 1e3)) is False and trainer.nonfinite == 1  # 2^127 · 1e3 overflows float32
    assert scaler.get_scale() < 2.0**127 and all(torch.equal(p, b) for p, b in zip(params, before))
    for _ in range(150):  # the scale halves per overflow until the step goes through
        trainer.zero_grad()
        if trainer.step(_loss(model, 1e3)):
            break
    assert trainer.consecutive == 0 and any(not torch.equal(p, b) for p, b in zip(params, before))


def _wide(width: int, dtype=torch.float32):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, 2)).to(dtype)


def _lora_output_and_grads(model, x):
    from pruneseek.training import inject_lora

    params = inject_lora(model, 4, 8.0, linear_targets(model), seed=0)
    with torch.no_grad():
        for i, p in enumerate(params):  # a non-zero B, so ΔW and every gradient are non-trivial
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(i)))
    x = x.clone().requires_grad_(True)
    out = model(x)
    out.square().sum().backward()
    return out.detach(), [p.grad for p in params], x.grad


def test_small_lora_layers_run_merged_and_equal_pefts_form(monkeypatch):
    """Layers of at most SMALL_LINEAR weights compute (W + s·B A) x in one product (pruneseek.training docstring):
    the same outputs and gradients as peft's W x + s·B(A x), up to rounding; larger layers keep peft's form."""
    import pruneseek.training as training
    from peft.tuners.lora.layer import Linear

    x = torch.randn(3, 5, 16, generator=torch.Generator().manual_seed(1))
    merged_model = _wide(16)
    merged = _lora_output_and_grads(merged_model, x)
    assert [type(m) for m in merged_model if isinstance(m, Linear)] == [training.SmallLoraLinear] * 2
    monkeypatch.setattr(training, "SMALL_LINEAR", 16 * 16 - 1)  # now only the 16 → 2 layer is small
    mixed_model = _wide(16)
    _lora_output_and_grads(mixed_model, x)
    assert [type(m) for m in mixed_model if isinstance(m, Linear)] == [Linear, training.SmallLoraLinear]
    monkeypatch.setattr(training, "SMALL_LINEAR", 0)
    peft_model = _wide(16)
    peft = _lora_output_and_grads(peft_model, x)
    assert all(type(m) is Linear for m in peft_model if isinstance(m, Linear))
    assert torch.allclose(merged[0], peft[0], atol=1e-6)
    for a, b in zip(merged[1] + [merged[2]], peft[1] + [peft[2]]):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6) and a.abs().sum() > 0
    assert merged_model.state_dict().keys() == peft_model.state_dict().keys()


def test_small_lora_layers_fall_back_to_peft_and_merge_like_it():
    """Disabled adapters give the base layer's output; a half-precision base keeps peft's layer; merging folds the
    same ΔW, so the merged model computes what the adapter did."""
    import copy
    import pickle

    import pruneseek.training as training
    from peft.tuners.lora.layer import Linear

    model = _wide(8)
    plain = copy.deepcopy(model)
    x = torch.randn(4, 8)
    with lora_adapters(model, linear_targets(model), rank=2, alpha=2.0, seed=0, after="merge") as params:
        with torch.no_grad():
            for p in params:
                p.fill_(0.1)
        layer = model[0]
        assert type(layer) is training.SmallLoraLinear
        assert type(pickle.loads(pickle.dumps(layer))) is training.SmallLoraLinear
        assert type(copy.deepcopy(model)[0]) is training.SmallLoraLinear
        with_adapter = model(x).detach()
        layer.enable_adapters(False)  # peft's switch, read by the fallback
        assert torch.equal(layer(x), plain[0](x))
        layer.enable_adapters(True)
    assert torch.allclose(model(x), with_adapter, atol=1e-6)
    half = _wide(8, torch.bfloat16)
    training.inject_lora(half, 2, 2.0, linear_targets(half), seed=0)
    assert all(type(m) is Linear for m in half if isinstance(m, Linear))
    cast_later = _wide(8)  # adapters placed on float32, then the base cast to bf16: peft's forward takes over
    training.inject_lora(cast_later, 2, 2.0, linear_targets(cast_later), seed=0)
    cast_later[0].base_layer.to(torch.bfloat16)
    assert type(cast_later[0]) is training.SmallLoraLinear and cast_later[0](x.bfloat16()).dtype == torch.bfloat16
