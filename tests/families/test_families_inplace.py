"""Masks applied in place on every family: the model's own forward under a mask equals the model with the dropped
blocks deleted; blend equals skip; per-sample masks act per sample; the gates survive a deep copy; every strategy
searches dit and flux; bad folders give one-line errors (docs/design.md §11)."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from pruneseek.targets import tiny  # noqa: E402

from pruneseek.cli import main  # noqa: E402
from pruneseek.errors import EngineError, TargetError  # noqa: E402
from pruneseek.targets.family import load_family  # noqa: E402

FAMILIES = ["sd3", "sd35", "flux", "dit", "causal-lm", "gpt2"]
#: The --model name of each tiny model (sd35 is an SD3 transformer with SD3.5's options, gpt2 a causal LM).
MODEL = {"sd35": "sd3", "gpt2": "causal-lm"}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    return {f: tiny.save(f, root / f, pipeline=f == "flux") for f in FAMILIES}


def _target(folders, family):
    return load_family(MODEL.get(family, family), folders[family])


def _inputs(target, count=3):
    samples, shared = target.family.synthetic_inputs(target.model, count, seed=5, size=8)
    return {**samples, **shared}


def _deleted(target, keep):
    """The full model with the dropped blocks physically removed from its block lists (gates taken off the copy)."""
    from pruneseek.engine.inplace import uninstall

    model = copy.deepcopy(target.model)
    for (_, layers), size, kept in zip(target.family.stacks(model), target.sizes, target.split(keep)):
        for block in layers:
            uninstall(block)
        for i in reversed(range(size)):
            if i not in kept:
                del layers[i]
    if target.name == "causal-lm":  # Llama runs self.layers[: config.num_hidden_layers]
        model.config.num_hidden_layers = len(keep)
    return model


@pytest.mark.parametrize("family", FAMILIES)
def test_hard_mask_equals_physical_deletion_in_both_modes(folders, family):
    target = _target(folders, family)
    inputs = _inputs(target)
    n = target.num_layers
    for keep in ([i for i in range(n) if i % 2 == 0], list(range(n - 2)), [0, n - 1], list(range(1, n))):
        masks = torch.zeros(3, n)
        masks[:, keep] = 1
        with torch.no_grad():
            blend = target.forward(inputs, masks, "blend")
            skip = target.forward(inputs, masks, "skip")
            expected = target.family.output(_deleted(target, keep), inputs)
        torch.testing.assert_close(blend, skip, rtol=0, atol=1e-6)
        torch.testing.assert_close(skip, expected, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # the unmasked forward is the plain model's; a mask changes it
        full = target.forward(inputs)
        assert not torch.allclose(full, target.forward(inputs, torch.ones(3, n).index_fill_(1, torch.tensor([1]), 0)))


@pytest.mark.parametrize("family", ["flux", "dit", "causal-lm"])
def test_per_sample_masks_act_per_sample(folders, family):
    target = _target(folders, family)
    inputs = _inputs(target, 2)
    n = target.num_layers
    masks = torch.ones(2, n)
    masks[0, 1] = 0
    masks[1, n - 2] = 0
    with torch.no_grad():
        both = target.forward(inputs, masks, "skip")
        for row in range(2):
            alone = target.forward(inputs, masks[row].expand(2, -1), "skip")
            torch.testing.assert_close(both[row], alone[row], rtol=1e-5, atol=1e-5)


def test_mask_gradients_flow_through_the_models_own_forward(folders):
    target = _target(folders, "flux")
    inputs = _inputs(target, 2)
    masks = torch.ones(2, target.num_layers, requires_grad=True)
    target.forward(inputs, masks, "blend").square().mean().backward()
    assert torch.isfinite(masks.grad).all() and (masks.grad != 0).any(dim=0).all()


def test_gates_survive_a_deep_copy_and_stay_separate(folders):
    target = _target(folders, "dit")
    twin = copy.deepcopy(target)
    assert twin.stack is not target.stack
    assert all(b._pruneseek_gate.stack is twin.stack for b in twin.stack.blocks)
    inputs = _inputs(target, 2)
    masks = torch.ones(2, target.num_layers)
    masks[:, 0] = 0
    with torch.no_grad(), target.stack.masking(masks, "skip"):  # the original's mask does not reach the twin
        torch.testing.assert_close(twin.family.output(twin.model, inputs), twin.forward(inputs))


def test_masks_of_the_wrong_shape_are_refused(folders):
    target = _target(folders, "dit")
    inputs = _inputs(target, 2)
    with pytest.raises(EngineError, match="masks must be"):
        target.forward(inputs, torch.ones(2, target.num_layers + 1))
    with pytest.raises(EngineError, match="rows for a batch of 2"):
        target.forward(inputs, torch.ones(3, target.num_layers))


STRATEGIES = ["tinysr", "tinyfusion", "random-min", "bk-sdm", "shortgpt", "flux-lite", "sensitivity", "snapfusion",
              "annealing", "optuna-tpe", "race"]


@pytest.mark.parametrize("family", ["dit", "flux"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_searches_dit_and_flux(folders, tmp_path, family, strategy, capsys):
    out = tmp_path / "run"
    code = main(["search", "--model", family, "--base", str(folders[family]), "--strategy", strategy, "--steps", "2",
                 "--crops", "8", "--crop-size", "4", "--batch", "2", "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    mask = json.loads((out / "mask.json").read_text())
    assert mask["model"]["name"] == family and len(mask["mask"]) == 8 and sum(mask["mask"]) == 4
    assert "calibration inputs: synthetic" in mask["notes"]


@pytest.mark.parametrize("family", ["sd35", "causal-lm", "gpt2"])
@pytest.mark.parametrize("strategy", ["tinyfusion", "shortgpt", "sensitivity"])
def test_strategies_search_sd3_and_language_models(folders, tmp_path, family, strategy, capsys):
    out = tmp_path / "run"
    code = main(["search", "--model", MODEL.get(family, family), "--base", str(folders[family]), "--strategy", strategy,
                 "--steps", "2", "--crops", "8", "--crop-size", "4", "--batch", "2", "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    mask = json.loads((out / "mask.json").read_text())
    assert sum(mask["mask"]) * 2 == len(mask["mask"]) == folders_layers(family)


def folders_layers(family: str) -> int:
    return {"sd35": tiny.SD35["num_layers"], "causal-lm": tiny.LLAMA["num_hidden_layers"], "gpt2": tiny.GPT2["n_layer"]}[family]


def test_flux_default_space_prunes_each_stack_apart(folders, tmp_path):
    out = tmp_path / "run"
    assert main(["search", "--model", "flux", "--base", str(folders["flux"]), "--strategy", "tinyfusion", "--steps",
                 "2", "--crops", "8", "--crop-size", "4", "--batch", "2", "--out", str(out), "--quiet"]) == 0
    mask = json.loads((out / "mask.json").read_text())["mask"]
    assert sum(mask[:2]) == 1 and sum(mask[2:]) == 3  # 2 double blocks keep 1, 6 single blocks keep 3


@pytest.mark.parametrize("args, message", [
    (["--model", "dit", "--base", "{flux}"], "use --model flux"),
    (["--model", "flux", "--base", "{dit}"], "use --model dit"),
    (["--model", "sd3", "--base", "{causal-lm}"], "use --model causal-lm"),
    (["--model", "dit", "--base", "{missing}"], "is not a folder"),
    (["--model", "dit"], "needs --base DIR"),
    (["--model", "dit", "--base", "{dit}", "--lora", "{dit}"], "belong(s) to --model tsdsr"),
    (["--model", "causal-lm", "--base", "{empty}"], "no model config"),
])
def test_bad_model_folders_give_one_line_errors(folders, tmp_path, capsys, args, message):
    (tmp_path / "empty").mkdir()
    paths = {**{k: str(v) for k, v in folders.items()}, "missing": str(tmp_path / "nope"), "empty": str(tmp_path / "empty")}
    args = [a.format(**paths) for a in args]
    code = main(["search", *args, "--steps", "1", "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "o").exists()


def test_a_folder_with_a_broken_weight_file_is_one_line(folders, tmp_path, capsys):
    import shutil

    broken = tmp_path / "dit"
    shutil.copytree(folders["dit"], broken)
    (broken / "diffusion_pytorch_model.safetensors").write_bytes(b"not safetensors")
    code = main(["search", "--model", "dit", "--base", str(broken), "--steps", "1", "--out", str(tmp_path / "o"),
                 "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "cannot load the dit model" in err, err


def test_load_family_refuses_unknown_family(folders):
    with pytest.raises(TargetError, match="unknown model family"):
        load_family("unet", folders["dit"])


def test_crop_size_below_the_patch_size_is_one_line(folders, tmp_path, capsys):
    code = main(["search", "--model", "dit", "--base", str(folders["dit"]), "--crop-size", "1", "--steps", "1",
                 "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "smaller than the model's patch size 2" in err, err


def test_sr_commands_refuse_a_family_export_in_one_line(folders, tmp_path, capsys):
    from pruneseek.export.family import export_family

    target = _target(folders, "dit")
    export_family(target, list(range(0, target.num_layers, 2)), tmp_path / "pruned", identity={"family": "dit"})
    code = main(["retrain", "--from", str(tmp_path / "pruned"), "--out", str(tmp_path / "r"), "--steps", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "holds a pruned dit model" in err, err


def test_dit_at_full_depth_searches_tinyfusions_preset_with_tinysr_transfers(tmp_path):
    """A narrow DiT with DiT-XL/2's 28 blocks: --ratio 0.5 picks dit-28-r50 (7 × 4 keep 2) and tinysr's transfers."""
    torch.manual_seed(0)
    from diffusers import DiTTransformer2DModel

    DiTTransformer2DModel(**{**tiny.DIT, "num_layers": 28}).save_pretrained(str(tmp_path / "dit"))
    assert main(["search", "--model", "dit", "--base", str(tmp_path / "dit"), "--ratio", "0.5", "--strategy", "tinysr",
                 "--steps", "2", "--crops", "4", "--crop-size", "4", "--batch", "2", "--out", str(tmp_path / "s"),
                 "--quiet"]) == 0
    mask = json.loads((tmp_path / "s" / "mask.json").read_text())
    assert mask["space"]["preset"] == "dit-28-r50" and mask["space"]["transfer"] == {"k": 1, "topology": "pairs"}
    assert len(mask["mask"]) == 28 and sum(mask["mask"]) == 14  # transfers may move a kept layer between blocks


def test_a_one_stream_block_that_returns_a_tuple_is_refused():
    from torch import nn

    from pruneseek.engine import MaskedStack

    class TupleLayer(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 4)

        def forward(self, hidden_states):
            return (self.linear(hidden_states),)

    layers = nn.ModuleList([TupleLayer(), TupleLayer()])
    stack = MaskedStack.over(layers)
    with pytest.raises(EngineError, match="returned tuple, not a tensor"), stack.masking(torch.ones(1, 2)):
        layers[0](torch.zeros(1, 4))


def test_seeds_majority_on_a_family_says_what_it_calibrated_on(folders, tmp_path):
    out = tmp_path / "run"
    assert main(["search", "--model", "dit", "--base", str(folders["dit"]), "--strategy", "tinyfusion", "--steps", "2",
                 "--crops", "8", "--crop-size", "4", "--batch", "2", "--seeds", "2", "--out", str(out), "--quiet"]) == 0
    notes = json.loads((out / "mask.json").read_text())["notes"]
    assert notes.startswith("majority decision over seeds [0, 1]") and "calibration inputs: synthetic" in notes


def test_seeds_in_processes_give_the_same_searches_and_majority(folders, tmp_path):
    """--jobs runs the seeds' searches in fresh processes: each seed's mask and the majority equal a run in one."""
    args = ["search", "--model", "dit", "--base", str(folders["dit"]), "--strategy", "tinyfusion", "--steps", "5",
            "--crops", "8", "--crop-size", "4", "--batch", "2", "--seeds", "3", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    assert main([*args, "--out", str(tmp_path / "three"), "--jobs", "3"]) == 0
    one, three = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("one", "three"))
    assert one["per_seed_masks"] == three["per_seed_masks"] and one["kept"] == three["kept"]
    assert (tmp_path / "three" / "seed-2" / "mask.json").is_file()
