"""``--data`` for model families (:mod:`pruneseek.matching_data`): images through the pipeline's VAE, a text file
through the model's tokenizer; same keys and shapes as the synthetic inputs, seeded, and one-line errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pruneseek.cli import main
from pruneseek.errors import DataError
from pruneseek.matching import calibration
from pruneseek.matching_data import pack, user_inputs
from pruneseek.targets.family import load_family

from pruneseek.targets import tiny  # noqa: E402

#: The latent channels of each tiny transformer's VAE (FLUX packs 2×2: in_channels 8 = 4 × 2).
LATENT_CHANNELS = {"sd3": 4, "flux": 2, "dit": 4}
WORDS = ("the cat sat on a mat and dog ran to big red house with small green tree under blue sky "
         "over old stone bridge near river bank where fish swim in cold clear water").split()


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNESEEK_CACHE", str(tmp_path / "cache"))


def save_vae(folder: Path, latent_channels: int) -> None:
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                  up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
                  latent_channels=latent_channels, norm_num_groups=8, sample_size=32,
                  shift_factor=0.1).save_pretrained(str(folder))


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory):
    """Tiny pipeline folders (transformer/ + vae/) of sd3, flux and dit."""
    root = tmp_path_factory.mktemp("pipes")
    out = {}
    for family, channels in LATENT_CHANNELS.items():
        tiny.save(family, root / family, pipeline=True)
        save_vae(root / family / "vae", channels)
        out[family] = root / family
    return out


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Three small scikit-image photographs as PNG (and a stray text file the loader must skip)."""
    import skimage.data
    from PIL import Image

    folder = tmp_path_factory.mktemp("images")
    for name in ("astronaut", "coffee", "chelsea"):
        im = Image.fromarray(getattr(skimage.data, name)())
        im.thumbnail((96, 96))
        im.save(folder / f"{name}.png")
    (folder / "README.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    """A tiny Llama folder with a WordLevel tokenizer of ≤ 64 words, and a text file of those words."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("lm")
    tiny.save("causal-lm", folder)
    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(dict.fromkeys(WORDS))}}
    assert len(vocab) <= tiny.LLAMA["vocab_size"]
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]").save_pretrained(str(folder))
    text = folder.parent / "corpus.txt"
    g = torch.Generator().manual_seed(1)
    text.write_text(" ".join(WORDS[i] for i in torch.randint(0, len(WORDS), (300,), generator=g).tolist()),
                    encoding="utf-8")
    return folder, text


def same_layout(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].shape == b[key].shape and a[key].dtype == b[key].dtype, key


@pytest.mark.parametrize("family", ["sd3", "flux", "dit"])
def test_images_give_the_synthetic_layout_seeded(pipelines, images, family):
    target = load_family(family, pipelines[family])
    count, size = 5, 4
    samples, shared, note = user_inputs(target, images, count, 0, size)
    synth, synth_shared = target.family.synthetic_inputs(target.model, count, 0, size)
    same_layout(samples, synth)
    same_layout(shared, synth_shared)
    for key in shared:
        assert torch.equal(shared[key], synth_shared[key])
    # image-derived keys differ from the synthetic ones; conditioning stays the synthetic draw
    assert not torch.equal(samples["hidden_states"], synth["hidden_states"])
    for key in set(synth) - {"hidden_states", "timestep"}:
        assert torch.equal(samples[key], synth[key]), key
    assert torch.isfinite(samples["hidden_states"]).all()
    assert note.startswith(f"images in {images.name} (3 files, 3 used)") and "pipeline VAE" in note
    again, _, _ = user_inputs(target, images, count, 0, size)
    other, _, _ = user_inputs(target, images, count, 1, size)
    for key in samples:
        assert torch.equal(samples[key], again[key]), key
    assert not torch.equal(samples["hidden_states"], other["hidden_states"])
    t = samples["timestep"].float()
    assert ((0 <= t) & (t < (1 if family == "flux" else 1000))).all()
    calib = calibration(target, count, 0, size, data=images)  # the full model runs on them
    assert len(calib) == count and calib.note == note


def test_flux_packing_is_diffusers_order():
    from diffusers import FluxPipeline

    z = torch.randn(2, 3, 4, 6)
    assert torch.equal(pack(z), FluxPipeline._pack_latents(z, 2, 3, 4, 6))


def test_text_windows(lm):
    folder, text = lm
    target = load_family("causal-lm", folder)
    samples, shared, note = user_inputs(target, text, 6, 0, 16)
    synth, _ = target.family.synthetic_inputs(target.model, 6, 0, 16)
    same_layout(samples, synth)
    assert shared == {} and note == f"text file {text.name}: 6 windows of 16 tokens from 300 tokens"
    ids = samples["input_ids"]
    assert ids.min() >= 1 and ids.max() < 64  # every word is in the vocabulary
    assert torch.equal(ids, user_inputs(target, text, 6, 0, 16)[0]["input_ids"])
    assert not torch.equal(ids, user_inputs(target, text, 6, 1, 16)[0]["input_ids"])
    # each window is a contiguous run of the text's tokens
    from transformers import AutoTokenizer

    stream = AutoTokenizer.from_pretrained(str(folder))(text.read_text(), add_special_tokens=False)["input_ids"]
    row = ids[0].tolist()
    assert any(stream[i:i + 16] == row for i in range(len(stream) - 15))


def test_search_with_images_and_text(pipelines, images, lm, tmp_path, capsys):
    out = tmp_path / "dit"
    assert main(["search", "--model", "dit", "--base", str(pipelines["dit"]), "--data", str(images), "--steps", "2",
                 "--crops", "8", "--crop-size", "4", "--batch", "2", "--strategy", "tinyfusion", "--out", str(out),
                 "--quiet"]) == 0
    notes = json.loads((out / "mask.json").read_text())["notes"]
    assert f"images in {images.name}" in notes and "pipeline VAE" in notes
    folder, text = lm
    out = tmp_path / "lm"
    assert main(["search", "--model", "causal-lm", "--base", str(folder), "--data", str(text), "--steps", "2",
                 "--crops", "8", "--crop-size", "8", "--batch", "2", "--strategy", "tinyfusion", "--out", str(out),
                 "--quiet"]) == 0
    notes = json.loads((out / "mask.json").read_text())["notes"]
    assert f"text file {text.name}: 8 windows of 8 tokens" in notes


def test_bad_image_data(pipelines, images, tmp_path, capsys):
    target = load_family("dit", pipelines["dit"])
    cases = {
        tmp_path / "absent": "does not exist",
        images / "astronaut.png": "is a file",
    }
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    cases[empty] = "holds no PNG or JPEG images"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"not a png")
    cases[broken] = "cannot read image"
    for data, words in cases.items():
        with pytest.raises(DataError, match=words):
            user_inputs(target, data, 2, 0, 4)
    # a model folder outside a pipeline, and a pipeline without vae/: no VAE
    alone = tiny.save("dit", tmp_path / "alone")
    novae = tiny.save("dit", tmp_path / "novae", pipeline=True)
    for base in (alone, novae):
        with pytest.raises(DataError, match=r"need the pipeline's VAE \(vae/ next to transformer/\)"):
            user_inputs(load_family("dit", base), images, 2, 0, 4)
    # a VAE whose latents do not fit the transformer
    mismatch = tmp_path / "mismatch"
    tiny.save("flux", mismatch, pipeline=True)
    save_vae(mismatch / "vae", 4)
    with pytest.raises(DataError, match="gives 4 latent channels, but the flux transformer takes in_channels 8"):
        user_inputs(load_family("flux", mismatch), images, 2, 0, 4)
    # through the CLI: exit 2 and one line on stderr
    capsys.readouterr()
    assert main(["search", "--model", "dit", "--base", str(pipelines["dit"]), "--data", str(broken), "--steps", "1",
                 "--crops", "4", "--crop-size", "4", "--batch", "2", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("pruneseek search: error: ") and "cannot read image" in err
    assert "a.png" in err


def test_bad_text_data(lm, images, tmp_path, capsys):
    folder, text = lm
    target = load_family("causal-lm", folder)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("café crème".encode("latin-1"))
    blank = tmp_path / "blank.txt"
    blank.write_text("  \n\n")
    short = tmp_path / "short.txt"
    short.write_text("the cat sat")
    cases = {tmp_path / "absent.txt": "does not exist", images: "is a folder", latin1: "is not UTF-8",
             blank: "holds no text", short: "has 3 tokens, fewer than the 16"}
    for data, words in cases.items():
        with pytest.raises(DataError, match=words):
            user_inputs(target, data, 2, 0, 16)
    bare = tmp_path / "bare"
    tiny.save("causal-lm", bare)
    with pytest.raises(DataError, match="has no tokenizer; save one with the model, or drop --data"):
        user_inputs(load_family("causal-lm", bare), text, 2, 0, 16)
    capsys.readouterr()
    assert main(["search", "--model", "causal-lm", "--base", str(folder), "--data", str(latin1), "--steps", "1",
                 "--crops", "4", "--crop-size", "8", "--batch", "2", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    # one error line (transformers' own "Loading weights" bar may precede it on stderr)
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("pruneseek search: error: ") and "is not UTF-8" in errors[0]
