"""``--dtype``: half-precision frozen weights under autocast, with gates, their EMA, LoRA adapters and the optimiser
state in float32; a bf16 search reaches the float32 search's decision on a toy problem (issue 17)."""
from __future__ import annotations

import json

import pytest
import torch

from pruneseek.spaces import BlockSpace
from pruneseek.strategies import get_strategy
from pruneseek.training import DTYPES, autocast_loss, inject_lora, remove_lora

from engine.engine_toys import toy_problem

KINDS = ["needed", "identity", "needed", "harmful", "identity", "needed", "harmful", "needed"]


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_half_precision_search_decides_as_float32_and_keeps_gates_float32(dtype):
    space = BlockSpace.uniform(8, 2, 1)
    results = {}
    for name in ("fp32", dtype):
        problem, needed = toy_problem(KINDS, space, steps=150, seed=3)
        stream = problem.batches()
        fixed = [next(stream) for _ in range(30)]  # targets at full precision, as the calibration data is
        problem.batches = lambda: iter(fixed)
        problem.model.to(DTYPES[name])
        problem.loss_fn = autocast_loss(problem.loss_fn, DTYPES[name], "cpu")
        problem.loss_scaling = name == "fp16"
        results[name] = get_strategy("tinyfusion", weight_update="frozen").search(problem, seed=0)
        assert all(isinstance(v, float) for row in results[name].logits for v in row)
    assert results[dtype].mask == results["fp32"].mask
    assert [i for i, v in enumerate(results["fp32"].mask) if v] == needed


def test_lora_on_a_bf16_base_trains_float32_adapters_under_autocast():
    layer = torch.nn.Sequential(torch.nn.Linear(8, 8)).to(torch.bfloat16)
    params = inject_lora(layer, 4, 4.0, ["0"], seed=0)
    assert params and all(p.dtype == torch.float32 for p in params)
    assert layer[0].base_layer.weight.dtype == torch.bfloat16
    loss = autocast_loss(lambda x: layer(x).square().mean(), torch.bfloat16, "cpu")(torch.randn(2, 8))
    loss.backward()
    assert loss.dtype == torch.float32 and all(p.grad is not None and p.grad.dtype == torch.float32 for p in params)
    remove_lora(layer)


def test_search_cli_dtype_bf16_on_a_family(tmp_path):
    from pruneseek.cli import main
    from pruneseek.targets import tiny

    base = tiny.save("dit", tmp_path / "dit")
    masks = {}
    for dtype in ("fp32", "bf16"):
        out = tmp_path / dtype
        assert main(["search", "--model", "dit", "--base", str(base), "--strategy", "tinyfusion", "--steps", "30",
                     "--crops", "8", "--crop-size", "4", "--batch", "2", "--dtype", dtype, "--out", str(out),
                     "--quiet"]) == 0
        masks[dtype] = json.loads((out / "mask.json").read_text())["mask"]
    assert masks["bf16"] == masks["fp32"]
