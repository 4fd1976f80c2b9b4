"""The real TSD-SR loader on tiny models written in exactly TSD-SR's file layout (docs/design.md §7, §8).

The ``files`` fixture comes from ``tsdsr_files.write_tsdsr_files`` (tiny SD3 transformer and VAE, TSD-SR's
LoRA files written the way its training script writes them, the two prompt-embedding files).
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, SD3Transformer2DModel
from peft import LoraConfig
from safetensors.torch import load_file, save_file

from tsdsr_files import RANK, TINY_SD3, TINY_VAE, TOKENS, hand_merged, write_tsdsr_files

from pruneseek.errors import PruneseekError
from pruneseek.targets.tsdsr import (
    SD3_MEDIUM,
    TSDSR_TRANSFORMER_TARGETS,
    TSDSR_VAE_TARGETS,
    TargetError,
    load_tsdsr,
    prepare_lr,
    save_tsdsr_lora,
    tsdsr_lora_state_dict,
)

EXAMPLE_KEY = "transformer.transformer_blocks.0.attn.to_q.lora_A.weight"  # docs/design.md §7


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_tsdsr_files(tmp_path_factory.mktemp("tsdsr"))


def _inputs(seed=1, batch=2, side=8):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, TINY_SD3["in_channels"], side, side, generator=g)


def _reference_velocity(model, target, z):
    with torch.no_grad():
        return model(
            hidden_states=z,
            encoder_hidden_states=target.prompt_embeds.expand(z.shape[0], -1, -1),
            pooled_projections=target.pooled_embeds.expand(z.shape[0], -1),
            timestep=torch.full((z.shape[0],), 1000.0),
        ).sample


# ------------------------------------------------------------------------------------------ loading


@pytest.mark.parametrize("merge", [True, False])
def test_lora_is_active_and_equals_the_hand_merged_reference(files, merge):
    target = load_tsdsr(files["base"], files["lora"], files["emb"], merge=merge)
    z = _inputs()
    with torch.no_grad():
        v = target.velocity(z)
    base_v = _reference_velocity(files["transformer"], target, z)
    merged = hand_merged(files["transformer"], files["lora"] / "transformer.safetensors", SD3Transformer2DModel, TINY_SD3)
    assert (v - base_v).abs().max() > 1e-2  # the LoRA changes the output
    torch.testing.assert_close(v, _reference_velocity(merged, target, z), rtol=1e-4, atol=1e-5)

    # The VAE encoder LoRA too (posterior mode, so no sampling noise).
    target.encoder.sample = False
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    ref_vae = hand_merged(files["vae"], files["lora"] / "vae.safetensors", AutoencoderKL, TINY_VAE)
    with torch.no_grad():
        z_lr = target.encode(x)
        z_ref = ref_vae.encode(x).latent_dist.mode() * TINY_VAE["scaling_factor"]
        z_base = files["vae"].encode(x).latent_dist.mode() * TINY_VAE["scaling_factor"]
    assert (z_lr - z_base).abs().max() > 1e-3
    torch.testing.assert_close(z_lr, z_ref, rtol=1e-4, atol=1e-5)

    info = target.info
    assert info["num_layers"] == 3 and not info["sd3_medium"] and info["merged"] is merge
    assert info["lora_rank"] == RANK and info["vae_lora_rank"] == RANK
    assert info["vae_lora_modules"] == 31  # all of TSD-SR's VAE targets but quant_conv, as on the SD3 VAE
    assert info["lora_modules"] == len(target.lora_targets) == 3 * 11 - 1 + 3
    assert info["lora_params"] == sum(t.numel() for t in load_file(str(files["lora"] / "transformer.safetensors")).values())
    assert info["scaling_factor"] == pytest.approx(1.5305) and info["multiple"] == 16
    assert "transformer_blocks.2.attn.to_q" in target.lora_targets and "pos_embed.proj" in target.lora_targets
    assert json.dumps(info)  # plain data only
    assert not any(p.requires_grad for p in target.transformer.parameters())


def test_one_step_super_resolution_end_to_end(files):
    target = load_tsdsr(files["base"], files["lora"], files["emb"])
    lr = torch.rand(2, 3, 9, 10, generator=torch.Generator().manual_seed(4))
    x = prepare_lr(lr)
    assert x.shape == (2, 3, 32, 32) and x.min() >= -1 and x.max() <= 1
    with torch.no_grad():
        sr = target.super_resolve(x)
        again = target.super_resolve(x)  # seeded sampling: deterministic
        dropped = target.super_resolve(x, masks=torch.tensor([[1.0, 0.0, 1.0]] * 2))
    assert sr.shape == (2, 3, 32, 32)
    assert torch.isfinite(sr).all() and sr.min() >= -1 and sr.max() <= 1
    torch.testing.assert_close(sr, again)
    assert dropped.shape == sr.shape and not torch.equal(dropped, sr)
    # z_HR = z_LR − v
    with torch.no_grad():
        z = target.encode(x)
        torch.testing.assert_close(target.sr_latent(z), z - target.velocity(z))
    with pytest.raises(TargetError, match="divisible by 16"):
        target.encode(torch.zeros(1, 3, 40, 40))


def test_encoder_sampling_modes(files):
    target = load_tsdsr(files["base"], files["lora"], files["emb"], sample=False)
    x = prepare_lr(torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(5)))
    with torch.no_grad():
        mode = target.encode(x)
        target.encoder.sample, target.encoder.seed = True, 7
        a, b = target.encode(x), target.encode(x)
        target.encoder.seed = 8
        c = target.encode(x)
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c) and not torch.equal(a, mode)
    assert target.info["latent"] == "mode"


def test_lora_layout_matches_tsdsr_and_round_trips(files, tmp_path):
    target = load_tsdsr(files["base"], files["lora"], files["emb"], merge=False)
    written_by_tsdsr = load_file(str(files["lora"] / "transformer.safetensors"))
    ours = tsdsr_lora_state_dict(target.transformer)
    assert EXAMPLE_KEY in written_by_tsdsr and EXAMPLE_KEY in ours
    assert set(ours) == set(written_by_tsdsr)
    for key, value in written_by_tsdsr.items():
        torch.testing.assert_close(ours[key], value)
    vae_keys = set(tsdsr_lora_state_dict(target.encoder.vae))
    assert vae_keys == set(load_file(str(files["lora"] / "vae.safetensors")))
    assert "transformer.encoder.conv_in.lora_A.weight" in vae_keys

    t_path, v_path = save_tsdsr_lora(target.transformer, target.encoder.vae, tmp_path / "export")
    assert (t_path.name, v_path.name) == ("transformer.safetensors", "vae.safetensors")
    again = load_tsdsr(files["base"], tmp_path / "export", files["emb"])
    z = _inputs(seed=9, batch=1)
    with torch.no_grad():
        torch.testing.assert_close(again.velocity(z), target.velocity(z), rtol=1e-5, atol=1e-6)
    merged = load_tsdsr(files["base"], files["lora"], files["emb"])
    with pytest.raises(TargetError, match="merge=False"):
        tsdsr_lora_state_dict(merged.transformer)


def test_tsdsr_lora_config_on_sd3_medium_wraps_266_modules():
    """docs/design.md §7's counts, on a full-size SD3-medium built on the meta device (no weights)."""
    from peft.tuners.lora import LoraLayer

    with torch.device("meta"):
        model = SD3Transformer2DModel(**SD3_MEDIUM)
        assert sum(p.numel() for p in model.parameters()) == 2_028_328_000
        model.add_adapter(LoraConfig(r=64, lora_alpha=64, target_modules=list(TSDSR_TRANSFORMER_TARGETS)))
        vae = AutoencoderKL(
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=16,
            use_quant_conv=False, use_post_quant_conv=False,
        )
        vae.add_adapter(LoraConfig(r=64, lora_alpha=64, target_modules=list(TSDSR_VAE_TARGETS)))
    wrapped = [n for n, m in model.named_modules() if isinstance(m, LoraLayer)]
    assert len(wrapped) == 266
    assert sum(p.numel() for n, p in model.named_parameters() if "lora_" in n) == 89_268_224
    assert len([n for n, m in vae.named_modules() if isinstance(m, LoraLayer)]) == 31


def test_prepare_lr_sizes_and_values():
    from PIL import Image

    gray = torch.full((3, 10, 13), 0.5)
    assert prepare_lr(gray).shape == (1, 3, 32, 48)
    assert prepare_lr(gray, multiple=8).shape == (1, 3, 40, 48)  # TSD-SR's own floor
    torch.testing.assert_close(prepare_lr(gray), torch.zeros(1, 3, 32, 48))
    torch.testing.assert_close(prepare_lr(torch.ones(2, 3, 8, 8)), torch.ones(2, 3, 32, 32))
    # TSD-SR's small-image rule: short side raised to process_size // 4 first.
    assert prepare_lr(gray, process_size=512).shape == (1, 3, 512, 656)
    img = Image.fromarray((torch.rand(12, 20, 3) * 255).to(torch.uint8).numpy())
    assert prepare_lr(img).shape == (1, 3, 48, 80)
    with pytest.raises(TargetError, match="RGB"):
        prepare_lr(torch.zeros(1, 8, 8))


# ------------------------------------------------------------------------------------------ errors


def _rewrite(path, fn):
    save_file(fn(load_file(str(path))), str(path), metadata={"format": "pt"})


def _drop(prefix):
    return lambda sd: {k: v for k, v in sd.items() if not k.startswith(prefix)}


def _mixed_rank(sd):
    key = "transformer.transformer_blocks.1.attn.to_k"
    sd[f"{key}.lora_A.weight"] = sd[f"{key}.lora_A.weight"][:2].contiguous()
    sd[f"{key}.lora_B.weight"] = sd[f"{key}.lora_B.weight"][:, :2].contiguous()
    return sd


def _extra(sd):
    sd["transformer.transformer_blocks.0.attn.to_add_out.lora_A.weight"] = torch.zeros(RANK, 16)
    sd["transformer.transformer_blocks.0.attn.to_add_out.lora_B.weight"] = torch.zeros(16, RANK)
    return sd


def _wrong_shape(sd):
    sd["transformer.transformer_blocks.0.attn.to_v.lora_B.weight"] = torch.zeros(12, RANK)
    return sd


def _nan(sd):
    sd["transformer.transformer_blocks.0.attn.to_q.lora_A.weight"][0, 0] = float("nan")
    return sd


def _set_class(path, name):
    config = json.loads(path.read_text())
    config["_class_name"] = name
    path.write_text(json.dumps(config))


MUTATIONS = {
    "transformer-config": (lambda r: (r / "base/transformer/config.json").unlink(), r"base/transformer/config\.json"),
    "vae-folder": (lambda r: shutil.rmtree(r / "base/vae"), r"base/vae/config\.json .*base/vae/"),
    "transformer-lora": (lambda r: (r / "lora/transformer.safetensors").unlink(), r"lora/transformer\.safetensors \(TSD-SR's transformer LoRA"),
    "vae-lora": (lambda r: (r / "lora/vae.safetensors").unlink(), r"lora/vae\.safetensors \(TSD-SR's VAE-encoder LoRA"),
    "prompt-embeds": (lambda r: (r / "emb/prompt_embeds.pt").unlink(), r"emb/prompt_embeds\.pt \(the default-prompt"),
    "pool-embeds": (lambda r: (r / "emb/pool_embeds.pt").unlink(), r"emb/pool_embeds\.pt \(the pooled"),
    "prompt-width": (
        lambda r: torch.save(torch.zeros(1, TOKENS, 31), r / "emb/prompt_embeds.pt"),
        r"prompt_embeds\.pt has shape \(1, 7, 31\); expected \(1, T, 32\).*joint_attention_dim=32",
    ),
    "prompt-2d": (lambda r: torch.save(torch.zeros(TOKENS, 32), r / "emb/prompt_embeds.pt"), r"prompt_embeds\.pt has shape \(7, 32\)"),
    "pool-width": (
        lambda r: torch.save(torch.zeros(1, 23), r / "emb/pool_embeds.pt"),
        r"pool_embeds\.pt has shape \(1, 23\); expected \(1, 24\).*pooled_projection_dim=24",
    ),
    "pool-not-tensor": (lambda r: torch.save({"x": torch.zeros(1)}, r / "emb/pool_embeds.pt"), r"pool_embeds\.pt holds dict"),
    "mixed-rank": (
        lambda r: _rewrite(r / "lora/transformer.safetensors", _mixed_rank),
        r"transformer\.safetensors mixes LoRA ranks \[2, 4\]: transformer\.transformer_blocks\.1\.attn\.to_k \(rank 2\)",
    ),
    "module-missing": (
        lambda r: _rewrite(r / "lora/transformer.safetensors", _drop("transformer.transformer_blocks.2.ff.net.0.proj.")),
        r"transformer\.safetensors does not fit.*absent from the file: transformer\.transformer_blocks\.2\.ff\.net\.0\.proj\.lora_A\.weight",
    ),
    "half-pair": (
        lambda r: _rewrite(r / "lora/transformer.safetensors", _drop("transformer.proj_out.lora_B")),
        r"transformer\.safetensors: LoRA pairs incomplete, missing transformer\.proj_out\.lora_B\.weight",
    ),
    "unexpected-module": (
        lambda r: _rewrite(r / "lora/transformer.safetensors", _extra),
        r"does not wrap in this model: transformer\.transformer_blocks\.0\.attn\.to_add_out\.lora_A\.weight",
    ),
    "no-prefix": (
        lambda r: _rewrite(r / "lora/transformer.safetensors", lambda sd: {k.removeprefix("transformer."): v for k, v in sd.items()}),
        r"transformer\.safetensors: \d+ key\(s\) not in TSD-SR's layout: (transformer_blocks|pos_embed|norm_out|proj_out)",
    ),
    "shape": (
        lambda r: _rewrite(r / "lora/transformer.safetensors", _wrong_shape),
        r"LoRA shapes do not fit.*transformer_blocks\.0\.attn\.to_v\.lora_B\.weight \(12, 4\) vs \(16, 4\)",
    ),
    "non-finite": (
        lambda r: _rewrite(r / "lora/transformer.safetensors", _nan),
        r"transformer\.safetensors: non-finite or non-float LoRA tensors transformer\.transformer_blocks\.0\.attn\.to_q\.lora_A",
    ),
    "vae-module-missing": (
        lambda r: _rewrite(r / "lora/vae.safetensors", _drop("transformer.encoder.conv_in.")),
        r"vae\.safetensors does not fit.*transformer\.encoder\.conv_in\.lora_A\.weight",
    ),
    "vae-file-swapped": (
        lambda r: shutil.copy(r / "lora/transformer.safetensors", r / "lora/vae.safetensors"),
        r"vae\.safetensors: keys outside the VAE encoder",
    ),
    "transformer-weights": (
        lambda r: (r / "base/transformer/diffusion_pytorch_model.safetensors").unlink(),
        r"could not load the transformer from .*base/transformer",
    ),
    "wrong-class": (
        lambda r: _set_class(r / "base/transformer/config.json", "FluxTransformer2DModel"),
        r"config\.json: _class_name is 'FluxTransformer2DModel', expected 'SD3Transformer2DModel'",
    ),
}


@pytest.mark.parametrize("case", list(MUTATIONS))
def test_missing_or_mismatched_file_is_named(files, tmp_path, case):
    root = tmp_path / "copy"
    for part in ("base", "lora", "emb"):
        shutil.copytree(files["root"] / part, root / part)
    mutate, pattern = MUTATIONS[case]
    mutate(root)
    with pytest.raises(TargetError, match=pattern) as err:
        load_tsdsr(root / "base", root / "lora", root / "emb")
    assert isinstance(err.value, PruneseekError)


def test_rank_is_read_from_the_files_and_checked_when_asked(files):
    with pytest.raises(TargetError, match=re.escape("transformer.safetensors holds rank 4 LoRA weights; expected rank 64 (TSD-SR's are rank 64)")):
        load_tsdsr(files["base"], files["lora"], files["emb"], rank=64)
    with pytest.raises(TargetError, match=re.escape("vae.safetensors holds rank 4 LoRA weights; expected rank 64")):
        load_tsdsr(files["base"], files["lora"], files["emb"], vae_rank=64)
    assert load_tsdsr(files["base"], files["lora"], files["emb"], rank=RANK, vae_rank=RANK).info["lora_rank"] == RANK


def test_base_must_be_a_local_folder(files):
    with pytest.raises(TargetError, match="not a local folder.*downloads nothing"):
        load_tsdsr("stabilityai/stable-diffusion-3-medium-diffusers", files["lora"], files["emb"])


def test_merged_target_takes_the_engines_lora_on_lora_targets(files):
    """The engine wraps ``lora_targets`` with its own adapter; on the merged target TSD-SR's update stays in."""
    from pruneseek.training import inject_lora, remove_lora

    target = load_tsdsr(files["base"], files["lora"], files["emb"])
    z = _inputs(seed=11, batch=1)
    with torch.no_grad():
        before = target.velocity(z)
        params = inject_lora(target.transformer, 2, 4, target.lora_targets, seed=0)  # lora_B starts at zero
        during = target.velocity(z)
    assert len(params) == 2 * len(target.lora_targets)
    torch.testing.assert_close(during, before)
    remove_lora(target.transformer)
    with torch.no_grad():
        torch.testing.assert_close(target.velocity(z), before)


def test_half_precision_load(files):
    target = load_tsdsr(files["base"], files["lora"], files["emb"], dtype=torch.bfloat16, merge=False)
    assert next(target.transformer.parameters()).dtype == torch.bfloat16
    assert target.prompt_embeds.dtype == torch.bfloat16 and target.info["dtype"] == "bfloat16"
    full = load_tsdsr(files["base"], files["lora"], files["emb"], merge=False)
    lr = prepare_lr(torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(6)))
    z = _inputs(seed=11, batch=1)
    with torch.no_grad():
        sr, sr32 = target.super_resolve(lr), full.super_resolve(lr)
        v, v32 = target.velocity(z.to(torch.bfloat16)).float(), full.velocity(z)
    assert sr.shape == (1, 3, 32, 32) and torch.isfinite(sr.float()).all()
    # the same model at bf16's precision (8 mantissa bits: ~0.4 % per value), not just any finite output
    assert (v - v32).abs().max() <= 0.05 * v32.abs().max() and (v - v32).abs().max() > 0
    assert (sr.float() - sr32).abs().mean() < 0.1 * sr32.abs().mean()  # through the VAE too


def test_search_command_runs_on_tsdsr_files(files, tmp_path, monkeypatch, capsys):
    """`pruneseek search --base --lora --embeddings` end to end on the TSD-SR-layout files (tiny model)."""
    from pruneseek.cli import main
    from pruneseek.maskfile import MaskFile

    monkeypatch.setenv("PRUNESEEK_CACHE", str(tmp_path / "cache"))
    preset = tmp_path / "tiny-3.toml"
    preset.write_text('name = "tiny-3"\nmodel = "tsdsr"\nlayers = 3\nblock = 3\nkeep = 2\n')
    from run_helpers import write_images

    images = write_images(tmp_path / "images")
    out = tmp_path / "run"
    code = main([
        "search", "--model", "tsdsr", "--space", str(preset), "--strategy", "tinyfusion", "--steps", "3",
        "--batch", "2", "--crops", "4", "--crop-size", "32", "--base", str(files["base"]), "--lora", str(files["lora"]),
        "--embeddings", str(files["emb"]), "--data", str(images), "--out", str(out), "--quiet",
    ])
    assert code == 0, capsys.readouterr().err
    mask = MaskFile.load(out / "mask.json")
    assert mask.model_name == "tsdsr" and mask.num_layers == 3 and mask.num_kept == 2
    assert "target: tsdsr (3 layers)" in capsys.readouterr().out


def test_compare_and_tune_run_on_tsdsr_files(files, tmp_path, monkeypatch, capsys):
    """`compare` and `tune` take the real TSD-SR options too (one target loader for every command)."""
    import json

    from pruneseek.cli import main

    monkeypatch.setenv("PRUNESEEK_CACHE", str(tmp_path / "cache"))
    preset = tmp_path / "tiny-3.toml"
    preset.write_text('name = "tiny-3"\nmodel = "tsdsr"\nlayers = 3\nblock = 3\nkeep = 2\n')
    model = ["--base", str(files["base"]), "--lora", str(files["lora"]), "--embeddings", str(files["emb"]),
             "--space", str(preset), "--quick", "--quiet", "--out", str(tmp_path / "out")]
    assert main(["compare", "--strategies", "random-min,tinyfusion", *model]) == 0, capsys.readouterr().err
    doc = json.loads((tmp_path / "out" / "compare-tsdsr-r0.33.json").read_text())
    assert doc["target"] == "tsdsr" and {r["strategy"] for r in doc["rows"]} == {"random-min", "tinyfusion"}
    assert all(r["num_kept"] == 2 for r in doc["rows"])
    assert doc["settings"]["weights_sha256"]["base"] == str(files["base"].resolve())
    assert main(["tune", "--strategy", "tinyfusion", "--trials", "1", *model]) == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "out" / "tune-tinyfusion-tsdsr-r0.33.json").read_text())
    assert report["best"]["number"] == 0 and report["fixed"]["protocol"]["model"] == "tsdsr"


def test_search_puts_its_lora_on_the_targets_lora_names(files, monkeypatch):
    """The target's LoRA target names reach the search: TSD-SR's ten names, not every linear layer of the blocks."""
    import pruneseek.engine.search as engine_search
    from pruneseek.spaces import BlockSpace
    from pruneseek.sr_problem import sr_search_problem
    from pruneseek.strategies import get_strategy
    from pruneseek.training import linear_targets

    target = load_tsdsr(files["base"], files["lora"], files["emb"])
    seen = []
    real = engine_search.lora_adapters

    def spy(model, targets, *args, **kwargs):
        seen.append(list(targets))
        return real(model, targets, *args, **kwargs)

    monkeypatch.setattr(engine_search, "lora_adapters", spy)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 4, 4, 4, generator=g)
    data = {"z_lr": z, "z_tea": z + 0.1, "hr": torch.rand(2, 3, 32, 32, generator=g)}
    problem = sr_search_problem(target, data, BlockSpace.uniform(3, 3, 2), 2, 2, 0, lambda sr, hr: (sr - hr).abs().mean())
    get_strategy("tinyfusion", lora_rank=2, lora_alpha=2.0).search(problem)
    in_blocks = linear_targets(target.transformer, target.transformer.transformer_blocks)
    assert seen == [target.lora_targets] and set(seen[0]) != set(in_blocks)
    assert "pos_embed.proj" in seen[0]  # a TSD-SR target outside the blocks
