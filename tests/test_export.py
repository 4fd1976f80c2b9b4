"""`pruneseek export` (issue 6): pruned folders that plain diffusers loads, equal to ``skip_layers``.

Small SD3 models of the real classes, TSD-SR's LoRA file layout (``tsdsr_files``), and the bundled
tsdsr-mini. Every equality is checked against diffusers' own ``SD3Transformer2DModel(..., skip_layers=…)``.
"""
from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import pytest
import torch
from diffusers import SD3Transformer2DModel
from safetensors.torch import load_file

from tsdsr_files import TINY_SD3, hand_merged, write_tsdsr_files

from pruneseek.cli import main
from pruneseek.export import (
    ExportError,
    StreamlinedSD3Transformer2DModel,
    prune_lora_state_dict,
    pruned_transformer,
    streamline,
)
from pruneseek.export.measure import count_macs
from pruneseek.maskfile import MaskFile
from pruneseek.targets.tsdsr import load_tsdsr

LAYERS = 5


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_tsdsr_files(tmp_path_factory.mktemp("tsdsr-export"), num_layers=LAYERS)


@pytest.fixture(scope="module")
def merged(files):
    return load_tsdsr(files["base"], files["lora"], files["emb"], merge=True)


def _inputs(target, batch=2, side=8, seed=3):
    g = torch.Generator().manual_seed(seed)
    return dict(
        hidden_states=torch.randn(batch, TINY_SD3["in_channels"], side, side, generator=g),
        encoder_hidden_states=target.prompt_embeds.expand(batch, -1, -1),
        pooled_projections=target.pooled_embeds.expand(batch, -1),
        timestep=torch.full((batch,), 1000.0),
    )


def _run(model, x, **kw):
    with torch.no_grad():
        return model(**x, **kw).sample


def _mask_file(path: Path, mask, name="tsdsr") -> Path:
    MaskFile.from_mask(mask, model_name=name, strategy_name="bk-sdm").save(path)
    return path


def _export(files, mask_path, out, *extra):
    return main(["export", "--mask", str(mask_path), "--out", str(out), "--base", str(files["base"]),
                 "--lora", str(files["lora"]), "--embeddings", str(files["emb"]), *extra])


# ----------------------------------------------------------------------------------------- pruning core


def test_every_mask_of_a_five_block_model_equals_skip_layers(merged):
    """All 31 non-empty masks, including keep-all and those whose last kept block must become context_pre_only."""
    x = _inputs(merged)
    for r in range(1, LAYERS + 1):
        for keep in itertools.combinations(range(LAYERS), r):
            dropped = [i for i in range(LAYERS) if i not in keep]
            model = pruned_transformer(merged.transformer, keep)
            assert model.config.num_layers == len(keep)
            assert [b.context_pre_only for b in model.transformer_blocks] == [False] * (len(keep) - 1) + [True]
            torch.testing.assert_close(_run(model, x), _run(merged.transformer, x, skip_layers=dropped), rtol=0, atol=1e-6)


def test_lora_renumbering_drops_blocks_and_reorders_the_context_norm(files):
    lora = load_file(str(files["lora"] / "transformer.safetensors"))
    pruned = prune_lora_state_dict(lora, LAYERS, [1, 3])
    blocks = {int(k.split(".")[2]) for k in pruned if ".transformer_blocks." in k}
    assert blocks == {0, 1}
    assert not any(k.startswith("transformer.transformer_blocks.1.ff_context") or "blocks.1.attn.to_add_out" in k for k in pruned)
    assert "transformer.transformer_blocks.0.ff_context.net.0.proj.lora_A.weight" in pruned  # block 1 stays a joint block
    b_old = lora["transformer.transformer_blocks.3.norm1_context.linear.lora_B.weight"]
    b_new = pruned["transformer.transformer_blocks.1.norm1_context.linear.lora_B.weight"]
    d = b_old.shape[0] // 6
    torch.testing.assert_close(b_new, torch.cat([b_old[d : 2 * d], b_old[:d]]))  # [scale; shift]
    torch.testing.assert_close(pruned["transformer.transformer_blocks.1.norm1_context.linear.lora_A.weight"],
                               lora["transformer.transformer_blocks.3.norm1_context.linear.lora_A.weight"])
    assert pruned["transformer.proj_out.lora_A.weight"] is lora["transformer.proj_out.lora_A.weight"]


def test_count_macs_uses_torch_flop_counter():
    layer = torch.nn.Linear(8, 4)
    assert count_macs(lambda: layer(torch.zeros(3, 8))) == 3 * 8 * 4


# -------------------------------------------------------------------------- the folder, loaded by diffusers


def test_merged_export_loads_in_plain_diffusers_and_matches_skip_layers(files, merged, tmp_path):
    mask = _mask_file(tmp_path / "mask.json", [1, 0, 1, 1, 0])
    out = tmp_path / "pruned"
    assert _export(files, mask, out, "--precache-modulation", "--rounds", "1", "--measure-latent", "8") == 0
    reloaded = SD3Transformer2DModel.from_pretrained(out)  # no pruneseek code involved
    x = _inputs(merged)
    torch.testing.assert_close(_run(reloaded, x), _run(merged.transformer, x, skip_layers=[1, 4]), rtol=0, atol=1e-6)
    assert reloaded.config.num_layers == 3 and reloaded.transformer_blocks[-1].context_pre_only

    assert json.loads((out / "prune_mask.json").read_text()) == [1, 0, 1, 1, 0]
    assert MaskFile.load(out / "mask.json").keep == (0, 2, 3)
    record = json.loads((out / "EXPORT.json").read_text())
    assert record["mask"]["keep"] == [0, 2, 3] and len(record["mask"]["sha256"]) == 64
    assert record["mask"]["file"] == str(mask)  # the user's mask file, not the copy in the temporary folder
    assert record["params"]["after"] == sum(p.numel() for p in reloaded.parameters()) < record["params"]["before"]
    assert record["verify"]["max_abs_diff_vs_skip_layers"] <= 1e-6
    measure = record["measure"]
    assert set(measure["macs"]) == {"full", "pruned", "precache_modulation"}
    assert measure["macs"]["pruned"] < measure["macs"]["full"]
    assert measure["latency"]["pruned"]["median_s"] > 0

    # the pre-cached variant: pruneseek's class, exact for t = 1000 and the stored pooled prompt
    streamlined = StreamlinedSD3Transformer2DModel.from_pretrained(out / "streamlined")
    assert not any(n.startswith("time_text_embed") for n, _ in streamlined.named_parameters())
    got = _run(streamlined, {"hidden_states": x["hidden_states"], "encoder_hidden_states": x["encoder_hidden_states"]})
    torch.testing.assert_close(got, _run(merged.transformer, x, skip_layers=[1, 4]), rtol=0, atol=1e-5)
    assert record["streamlined"]["exact"] and not record["streamlined"]["requires_retraining"]
    prompt = torch.load(out / "embeddings" / "prompt_embeds.pt")
    torch.testing.assert_close(prompt, merged.prompt_embeds)


def test_separate_lora_is_renumbered_in_tsdsr_layout(files, merged, tmp_path):
    mask = _mask_file(tmp_path / "mask.json", [0, 1, 1, 0, 0])  # last kept block 2 becomes context_pre_only
    out = tmp_path / "pruned"
    assert _export(files, mask, out, "--lora-format", "separate", "--no-measure") == 0
    base = SD3Transformer2DModel.from_pretrained(out)
    lora_file = out / "lora" / "transformer.safetensors"
    blocks = {int(k.split(".")[2]) for k in load_file(str(lora_file)) if ".transformer_blocks." in k}
    assert blocks == {0, 1}  # renumbered: old blocks 1, 2 -> 0, 1
    student = hand_merged(base, lora_file, SD3Transformer2DModel, dict(base.config))
    x = _inputs(merged)
    torch.testing.assert_close(_run(student, x), _run(merged.transformer, x, skip_layers=[0, 3, 4]), rtol=0, atol=1e-5)
    assert (out / "lora" / "vae.safetensors").read_bytes() == (files["lora"] / "vae.safetensors").read_bytes()
    # the base in the folder is the bare base, not the merged weights
    torch.testing.assert_close(base.transformer_blocks[0].attn.to_q.weight, files["transformer"].transformer_blocks[1].attn.to_q.weight)


def test_keep_everything_exports_the_unpruned_baseline(files, merged, tmp_path):
    mask = tmp_path / "prune_mask.json"
    mask.write_text(json.dumps([1] * LAYERS))  # TinySR's bare prune_mask list is accepted too
    out = tmp_path / "full"
    assert _export(files, mask, out, "--no-measure") == 0
    reloaded = SD3Transformer2DModel.from_pretrained(out)
    x = _inputs(merged)
    torch.testing.assert_close(_run(reloaded, x), _run(merged.transformer, x), rtol=0, atol=0)


def test_text_stream_removal_is_marked_as_needing_retraining(files, merged, tmp_path):
    mask = _mask_file(tmp_path / "mask.json", [1, 0, 1, 0, 1])
    out = tmp_path / "free"
    assert _export(files, mask, out, "--precache-modulation", "--drop-text-stream", "--no-measure") == 0
    record = json.loads((out / "EXPORT.json").read_text())["streamlined"]
    assert record["text_stream"] is False and record["exact"] is False and record["requires_retraining"] is True
    assert record["max_abs_diff_vs_pruned"] > 1e-4  # the mark is earned: the output really changed
    options = record["options"]
    assert options["drop_text_stream"]["exact"] is False and options["drop_text_stream"]["requires_retraining"] is True
    assert options["precache_modulation"]["exact"] is True and options["precache_modulation"]["requires_retraining"] is False
    assert options["precache_modulation"]["max_abs_diff_vs_pruned"] < 1e-5

    pruned = pruned_transformer(merged.transformer, [0, 2, 4])
    free = streamline(pruned, merged.pooled_embeds, precache_modulation=True, text_stream=False)
    names = [n for n, _ in free.named_parameters()]
    assert not any(n.startswith("context_embedder") or "add_q_proj" in n or "ff_context" in n for n in names)
    x = _inputs(merged)
    out = _run(free, {"hidden_states": x["hidden_states"]})
    assert out.shape == x["hidden_states"].shape and torch.isfinite(out).all()
    assert not torch.allclose(out, _run(pruned, x), atol=1e-4)  # not exact: the context is gone


# ---------------------------------------------------------------------------------------------- errors


def test_mask_for_another_layer_count_is_refused(files, tmp_path, capsys):
    mask = _mask_file(tmp_path / "mask.json", [1, 0] * 12)
    assert _export(files, mask, tmp_path / "out", "--no-measure") == 2
    err = capsys.readouterr().err.strip()
    assert "24 layers" in err and "5 layers" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_unknown_mask_format_version_is_refused(files, tmp_path, capsys):
    mask = _mask_file(tmp_path / "mask.json", [1, 0, 1, 0, 1])
    doc = json.loads(mask.read_text())
    doc["format"] = "pruneseek.mask/v9"
    mask.write_text(json.dumps(doc))
    assert _export(files, mask, tmp_path / "out", "--no-measure") == 2
    assert "format" in capsys.readouterr().err


def test_a_folder_holding_another_model_needs_force(files, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    mask = _mask_file(tmp_path / "mask.json", [1, 1, 0, 1, 0])
    assert _export(files, mask, out, "--no-measure") == 2
    assert "--force" in capsys.readouterr().err and (out / "notes.txt").exists()
    assert _export(files, mask, out, "--no-measure", "--force") == 0
    assert not (out / "notes.txt").exists() and (out / "config.json").exists()
    assert _export(files, mask, out, "--no-measure") == 0  # the same export again is fine
    other = _mask_file(tmp_path / "other.json", [1, 0, 1, 1, 0])
    assert _export(files, other, out, "--no-measure") == 2  # a different export is not
    assert json.loads((out / "prune_mask.json").read_text()) == [1, 1, 0, 1, 0]


def test_interrupted_export_leaves_no_half_folder(files, tmp_path, monkeypatch):
    import pruneseek.export.folder as folder

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(folder, "atomic_write_json", boom)  # dies after the weights were written
    mask = _mask_file(tmp_path / "mask.json", [1, 1, 0, 1, 0])
    assert _export(files, mask, tmp_path / "out", "--no-measure") == 130
    assert sorted(os.listdir(tmp_path)) == ["mask.json"]


def test_streamlining_needs_the_pooled_prompt(merged):
    with pytest.raises(ExportError, match="pooled"):
        streamline(merged.transformer, None, precache_modulation=True)


def test_mini_export_from_the_committed_search_mask(tmp_path, capsys):
    mask = Path(__file__).resolve().parents[1] / "results" / "search" / "tsdsr-mini-r0.5-tinysr-s0" / "mask.json"
    out = tmp_path / "mini"
    assert main(["export", "--mask", str(mask), "--out", str(out), "--rounds", "1"]) == 0
    text = capsys.readouterr().out
    assert "kept 12 of 24" in text and "max |diff| vs full model with skip_layers = 0" in text
    model = SD3Transformer2DModel.from_pretrained(out)
    assert model.config.num_layers == 12
    assert main(["export", "--mask", str(mask), "--out", str(tmp_path / "x"), "--lora-format", "separate"]) == 2


def test_bench_export_writes_ratios_and_the_linear_limit(tmp_path):
    out = tmp_path / "bench-export.json"
    assert main(["bench", "export", "--models", "tsdsr-mini", "--rounds", "1", "--out", str(out)]) == 0
    r = json.loads(out.read_text())["models"]["tsdsr-mini"]
    assert 0 < r["pruned_over_full"] and 0 < r["precached_over_full"]
    assert r["precached_max_abs_diff_vs_pruned"] < 1e-5
    # MACs are additive: the pruned model's MACs are exactly the fixed part plus its kept blocks
    assert r["linear_limit"]["macs_gap"] == pytest.approx(0.0, abs=1e-9)
    assert r["macs"]["precached"] < r["macs"]["pruned"] < r["macs"]["full"]
    assert r["params"]["pruned"] < r["params"]["full"]


def test_bench_export_rejects_unknown_models(capsys):
    assert main(["bench", "export", "--models", "sdxl"]) == 2
    assert "sdxl" in capsys.readouterr().err
