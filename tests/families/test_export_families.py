"""`pruneseek export --model sd3|flux|dit|causal-lm`: a searched mask becomes a plain model folder that diffusers /
transformers reload, equal to the full model under the mask and to the full model with the blocks deleted.

Tiny random models of the real classes (tiny.py), saved with ``save_pretrained``; search and export run through the
CLI (``pruneseek.cli.main``); the reloads use the libraries' own ``from_pretrained``.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from pruneseek.targets import tiny

from pruneseek.cli import main
from pruneseek.errors import ExportError
from pruneseek.export.family import export_family
from pruneseek.io import file_sha256
from pruneseek.targets.family import load_family

ATOL = 1e-5
#: (tiny model, --model, pipeline layout)
CASES = {"sd3": ("sd3", False), "sd35": ("sd3", False), "flux": ("flux", True), "dit": ("dit", False),
         "causal-lm": ("causal-lm", False)}
SIZE = {"causal-lm": 8}


def plain_class(model: str):
    """The library class a user would load the export with."""
    if model == "causal-lm":
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM
    import diffusers

    return getattr(diffusers, {"sd3": "SD3Transformer2DModel", "flux": "FluxTransformer2DModel",
                               "dit": "DiTTransformer2DModel"}[model])


def load_plain(model: str, folder: Path):
    cls = plain_class(model)
    if model == "causal-lm":
        return cls.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32).eval()
    return cls.from_pretrained(str(folder), local_files_only=True, torch_dtype=torch.float32).eval()


def write_tokenizer(folder: Path) -> None:
    """A word-level tokenizer over the tiny LM's 64 ids, saved as transformers saves one."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(62)} | {"[UNK]": 62, "</s>": 63}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="</s>").save_pretrained(str(folder))


def run_cli(*argv) -> int:
    return main([str(a) for a in argv])


def export_cli(model: str, base: Path, mask: Path, out: Path, *extra) -> int:
    return run_cli("export", "--model", model, "--base", base, "--mask", mask, "--out", out, *extra)


def one_line_error(capsys, code: int, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("pruneseek export: error:"), err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """Per case: the saved tiny model, a mask searched with the CLI, and the CLI's export of that mask."""
    cache: dict[str, dict] = {}

    def get(case: str) -> dict:
        if case not in cache:
            model, pipeline = CASES[case]
            root = tmp_path_factory.mktemp(case)
            base = tiny.save(case, root / "model", pipeline=pipeline)
            if model == "causal-lm":
                write_tokenizer(base)
            size = SIZE.get(model, 8)
            assert run_cli("search", "--model", model, "--base", base, "--steps", 2, "--crops", 8, "--crop-size", size,
                           "--batch", 2, "--strategy", "tinyfusion", "--out", root / "search", "--quiet") == 0
            mask = root / "search" / "mask.json"
            assert export_cli(model, base, mask, root / "export") == 0
            cache[case] = {"model": model, "base": base, "mask": mask, "out": root / "export", "root": root}
        return cache[case]

    return get


def full_target(entry: dict):
    return load_family(entry["model"], entry["base"])


def deleted_copy(model: nn.Module, target, kept_per_stack: list[list[int]], name: str) -> nn.Module:
    """The full model with the dropped blocks physically removed from its ModuleLists (no pruneseek code)."""
    pruned = copy.deepcopy(model)
    for prefix, kept in zip(target.prefixes, kept_per_stack):
        owner_path, _, attr = prefix.rpartition(".")
        owner = pruned.get_submodule(owner_path) if owner_path else pruned
        blocks = getattr(owner, attr)
        setattr(owner, attr, nn.ModuleList([blocks[i] for i in kept]))
    if name == "causal-lm":  # Llama runs self.layers[: config.num_hidden_layers]
        pruned.config.num_hidden_layers = len(kept_per_stack[0])
    return pruned.eval()


def check_equal(entry: dict, out: Path, keep: list[int]) -> None:
    """The reloaded export equals the masked full model (skip and blend) and the full model with blocks deleted."""
    name = entry["model"]
    target = full_target(entry)
    kept_per_stack = target.split(keep)
    reloaded = load_plain(name, out)
    config = reloaded.config
    for key, kept in zip(target.family.layer_keys, kept_per_stack):
        assert getattr(config, key) == len(kept), (key, getattr(config, key), kept)
    for stack, (_, blocks) in zip(kept_per_stack, target.family.stacks(reloaded)):
        assert len(blocks) == len(stack)
    plain_full = load_plain(name, target.folder)  # the model folder (flux: the pipeline's transformer/)
    deleted = deleted_copy(plain_full, target, kept_per_stack, name)
    samples, shared = target.family.synthetic_inputs(target.model, 2, seed=1, size=SIZE.get(name, 8))
    inputs = {**samples, **shared}
    masks = torch.zeros(2, target.num_layers)
    masks[:, keep] = 1.0
    with torch.no_grad():
        got = target.family.output(reloaded, inputs)
        for mode in ("skip", "blend"):
            torch.testing.assert_close(got, target.forward(inputs, masks, mode), atol=ATOL, rtol=0)
        torch.testing.assert_close(got, target.family.output(deleted, inputs), atol=ATOL, rtol=0)
        full = target.family.output(plain_full, inputs)
    if len(keep) < target.num_layers:
        assert (got - full).abs().max() > 1e-3  # the comparison can tell a pruned model from the full one


@pytest.mark.parametrize("case", list(CASES))
def test_search_export_reload_equals_masked_and_deleted(searched, case):
    entry = searched(case)
    out = entry["out"]
    record = json.loads((out / "EXPORT.json").read_text())
    mask_doc = json.loads(entry["mask"].read_text())
    keep = record["mask"]["keep"]
    assert record["format"] == "pruneseek.export/v1"
    assert record["source"]["model"] == entry["model"]
    assert record["mask"]["sha256"] == file_sha256(entry["mask"]) == file_sha256(out / "mask.json")
    assert json.loads((out / "prune_mask.json").read_text()) == [int(i in keep) for i in range(record["mask"]["num_layers"])]
    assert record["params"]["after"] < record["params"]["before"]
    assert record["verified"]["max_abs_diff_vs_masked"] <= 1e-4
    assert record["verified"]["max_abs_diff_vs_masked"] <= record["verified"]["tolerance"]
    assert mask_doc  # a pruneseek mask file
    check_equal(entry, out, keep)


def test_causal_lm_export_carries_the_tokenizer(searched):
    from transformers import AutoTokenizer

    entry = searched("causal-lm")
    record = json.loads((entry["out"] / "EXPORT.json").read_text())
    assert {"tokenizer.json", "tokenizer_config.json"} <= set(record["files"]["copied"])
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert file_sha256(entry["out"] / name) == file_sha256(entry["base"] / name)
    assert AutoTokenizer.from_pretrained(str(entry["out"]))("w1 w5").input_ids == [1, 5]


def prune_list(n: int, dropped: list[int]) -> list[int]:
    return [0 if i in [d % n for d in dropped] else 1 for i in range(n)]


@pytest.mark.parametrize("case,dropped", [
    ("sd3", [2, -1]),       # the last kept block (n-2) becomes context_pre_only
    ("sd35", [0, 3, -1]),   # + dual attention layer 0 dropped: dual_attention_layers renumbered
])
def test_sd3_dropping_the_last_block_is_exact(searched, case, dropped):
    entry = searched(case)
    options = tiny.SD35 if case == "sd35" else tiny.SD3
    prune_mask = prune_list(options["num_layers"], dropped)
    mask = entry["root"] / f"prune-{''.join(map(str, prune_mask))}.json"
    mask.write_text(json.dumps(prune_mask))
    out = entry["root"] / f"export-{''.join(map(str, prune_mask))}"
    assert export_cli("sd3", entry["base"], mask, out) == 0
    keep = [i for i, m in enumerate(prune_mask) if m]
    config = json.loads((out / "config.json").read_text())
    assert config["num_layers"] == len(keep)
    if case == "sd35":
        dual = set(options["dual_attention_layers"])
        assert 0 in dual and 1 in dual
        assert config["dual_attention_layers"] == [new for new, old in enumerate(keep) if old in dual]
        assert config["dual_attention_layers"][0] == 0  # old block 1 is new block 0
    reloaded = load_plain("sd3", out)
    assert reloaded.transformer_blocks[-1].context_pre_only
    check_equal(entry, out, keep)


def test_export_again_and_refusals(searched, tmp_path, capsys):
    entry = searched("dit")
    capsys.readouterr()
    # the same export into the same folder replaces it; a different one is refused without --force
    assert export_cli("dit", entry["base"], entry["mask"], entry["out"]) == 0
    other = tmp_path / "other.json"
    other_mask = prune_list(tiny.DIT["num_layers"], [1, 3])
    other.write_text(json.dumps(other_mask))
    capsys.readouterr()
    one_line_error(capsys, export_cli("dit", entry["base"], other, entry["out"]), "different pruneseek export", "--force")
    assert export_cli("dit", entry["base"], other, entry["out"], "--force") == 0
    assert json.loads((entry["out"] / "prune_mask.json").read_text()) == other_mask
    assert export_cli("dit", entry["base"], entry["mask"], entry["out"], "--force") == 0
    capsys.readouterr()
    # options of the tsdsr export only
    one_line_error(capsys, export_cli("dit", entry["base"], entry["mask"], tmp_path / "x", "--precache-modulation"),
                   "--precache-modulation", "--model tsdsr")
    one_line_error(capsys, export_cli("dit", entry["base"], entry["mask"], tmp_path / "x", "--lora-format", "separate"),
                   "--lora-format separate")
    assert not (tmp_path / "x").exists()


def test_bad_inputs_give_one_line_errors(searched, tmp_path, capsys):
    dit, sd3, flux = searched("dit"), searched("sd3"), searched("flux")
    capsys.readouterr()
    # a mask searched on another family: both models named
    one_line_error(capsys, export_cli("sd3", sd3["base"], dit["mask"], tmp_path / "a"), "'dit'", "'sd3'")
    one_line_error(capsys, export_cli("flux", flux["base"], sd3["mask"], tmp_path / "a"), "'sd3'", "'flux'")
    # a mask with another layer count
    n = tiny.DIT["num_layers"]
    longer = tmp_path / "longer.json"
    longer.write_text(json.dumps([1] * (n + 1)))
    one_line_error(capsys, export_cli("dit", dit["base"], longer, tmp_path / "a"), f"{n + 1} entries", f"{n} layers")
    # a folder of another family
    one_line_error(capsys, export_cli("dit", flux["base"], dit["mask"], tmp_path / "a"), "flux", "--model flux")
    # a folder without config.json
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(capsys, export_cli("dit", empty, dit["mask"], tmp_path / "a"), "no model config")
    # no --base
    one_line_error(capsys, run_cli("export", "--model", "dit", "--mask", dit["mask"], "--out", tmp_path / "a"), "--base")
    assert not (tmp_path / "a").exists()


def test_dit_with_separate_embedders_keeps_block_0(tmp_path, capsys):
    from diffusers import DiTTransformer2DModel

    torch.manual_seed(0)
    model = DiTTransformer2DModel(**tiny.DIT)  # diffusers' own init: every block has its own embedder
    with torch.no_grad():
        model.transformer_blocks[1].norm1.emb.timestep_embedder.linear_1.weight.add_(0.1)
    model.save_pretrained(str(tmp_path / "dit"))
    n = tiny.DIT["num_layers"]
    drop_first = tmp_path / "drop-first.json"
    drop_first.write_text(json.dumps(prune_list(n, [0, 3])))
    one_line_error(capsys, export_cli("dit", tmp_path / "dit", drop_first, tmp_path / "out"), "keep block 0")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp-*"))
    target = load_family("dit", tmp_path / "dit")
    with pytest.raises(ExportError, match="keep block 0"):
        export_family(target, [1, 2, 4], tmp_path / "out")
    # keeping block 0 is exact even with separate embedders
    keep = [0, 2, n - 2]
    record = export_family(target, keep, tmp_path / "out")
    assert record["verified"]["max_abs_diff_vs_masked"] <= 1e-4
    check_equal({"model": "dit", "base": tmp_path / "dit"}, tmp_path / "out", keep)


def test_flux_at_full_depth_uses_the_stacks_preset_and_exports_both_counts(tmp_path, capsys):
    """A narrow FLUX with FLUX.1's 19 + 38 blocks: --ratio 0.33 picks flux-57-r33 (each stack pruned apart)."""
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(0)
    FluxTransformer2DModel(**{**tiny.FLUX, "num_layers": 19, "num_single_layers": 38}).save_pretrained(
        str(tmp_path / "flux" / "transformer"))
    assert main(["search", "--model", "flux", "--base", str(tmp_path / "flux"), "--ratio", "0.33", "--strategy",
                 "random-min", "--crops", "4", "--crop-size", "4", "--batch", "2", "--out", str(tmp_path / "s"),
                 "--quiet"]) == 0
    mask = json.loads((tmp_path / "s" / "mask.json").read_text())
    assert mask["space"]["preset"] == "flux-57-r33" and sum(mask["mask"][:19]) == 13 and sum(mask["mask"][19:]) == 25
    assert main(["export", "--model", "flux", "--base", str(tmp_path / "flux"), "--mask", str(tmp_path / "s" / "mask.json"),
                 "--out", str(tmp_path / "e")]) == 0
    config = json.loads((tmp_path / "e" / "config.json").read_text())
    assert (config["num_layers"], config["num_single_layers"]) == (13, 25)
    assert json.loads((tmp_path / "e" / "EXPORT.json").read_text())["verified"]["max_abs_diff_vs_masked"] <= 1e-5
