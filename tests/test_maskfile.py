"""The mask file pruneseek.mask/v1 (pruneseek.maskfile)."""
from __future__ import annotations

import itertools
import json
import math
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pruneseek.io as pio
from pruneseek.errors import PruneseekError
from pruneseek.maskfile import FORMAT, MaskFile, MaskFileError, mask_from_prune_list
from pruneseek.spaces import BlockSpace, TransferSpace, load_preset

SPACE = BlockSpace.uniform(8, 4, 2)
MASK = [1, 0, 1, 0, 0, 1, 1, 0]  # in SPACE: 2 + 2 kept
TRANSFER_MASK = [1, 1, 1, 0, 0, 1, 0, 0]  # 3 + 1 kept: outside SPACE, reachable with k = 1


def _uniform_probabilities(space):
    return [[1 / b.num_options] * b.num_options for b in space.blocks]


def _marginals(space, probabilities):
    out = []
    for j, b in enumerate(space.blocks):
        table = space.options(j)
        out.extend(float(x) for x in np.asarray(probabilities[j]) @ table)
    return out


def _example(**overrides):
    probabilities = _uniform_probabilities(SPACE)
    kwargs = dict(
        settings={"lr": 1e-4, "tau": [4.0, 0.1], "mode": "blend"},
        space=SPACE,
        preset="toy-8",
        probabilities=probabilities,
        marginals=_marginals(SPACE, probabilities),
        seed=7,
        steps=100,
        confidence=[0.5, 0.5],
        metrics={"loss": 0.25},
        notes="a test",
    )
    kwargs.update(overrides)
    return MaskFile.from_mask(MASK, "toy", "tinyfusion", **kwargs)


def _doc(**overrides):
    doc = _example(**overrides).to_json()
    return doc


def _write(tmp_path, doc_or_text, name="mask.json"):
    path = tmp_path / name
    text = doc_or_text if isinstance(doc_or_text, str) else json.dumps(doc_or_text)
    path.write_text(text, encoding="utf-8")
    return path


# ----- round trip and API --------------------------------------------------------------------------


def test_round_trip(tmp_path):
    mf = _example()
    path = mf.save(tmp_path / "out" / "mask.json")
    text = path.read_text(encoding="utf-8")
    assert text.endswith("}\n")
    assert text == mf.to_text()
    loaded = MaskFile.load(path)
    assert loaded == mf
    assert loaded.path == path
    assert loaded.to_text() == text
    assert list(json.loads(text))[:10] == [
        "format", "model", "keep", "mask", "strategy", "space", "probabilities", "marginals", "seed", "steps"
    ]
    assert os.listdir(tmp_path / "out") == ["mask.json"]


def test_fields_and_properties():
    mf = _example()
    doc = mf.to_json()
    assert doc["format"] == FORMAT == mf.format
    assert doc["model"] == {"name": "toy", "num_layers": 8}
    assert doc["keep"] == [0, 2, 5, 6]
    assert doc["mask"] == MASK
    assert doc["strategy"] == {"name": "tinyfusion", "settings": {"lr": 1e-4, "tau": [4.0, 0.1], "mode": "blend"}}
    assert doc["space"] == {"blocks": [[4, 2], [4, 2]], "preset": "toy-8"}
    assert doc["seed"] == 7 and doc["steps"] == 100
    assert doc["pruneseek_version"] and "created" in doc
    assert mf.num_layers == 8 and mf.num_kept == 4
    assert mf.keep == (0, 2, 5, 6)
    assert mf.dropped == (1, 3, 4, 7)
    assert mf.ratio == Fraction(1, 2)
    assert mf.space_object() == SPACE
    assert mf.transfer_space() is None
    assert mf.preset == "toy-8"
    assert mf.validate() is mf


def test_to_json_is_a_copy():
    mf = _example()
    doc = mf.to_json()
    doc["strategy"]["settings"]["lr"] = 99
    doc["metrics"]["loss"] = 99
    assert mf.settings["lr"] == 1e-4 and mf.extras["metrics"]["loss"] == 0.25


def test_defaults_full_space_and_optional_keys_omitted():
    mf = MaskFile.from_mask([1, 0, 1], "m", "bk-sdm", created=None)
    doc = mf.to_json()
    assert doc["space"] == {"blocks": [[3, 2]]}
    assert doc["probabilities"] is None and doc["marginals"] is None and doc["seed"] is None
    assert doc["steps"] == 0 and doc["strategy"]["settings"] == {}
    assert "created" not in doc and "notes" not in doc


def test_space_from_preset_name_object_and_transfer_space(tmp_path):
    preset = load_preset("tsdsr-24-r50")
    mask = preset.space.sample(1, rng=0)[0]
    by_name = MaskFile.from_mask(mask, "tsdsr", "shortgpt", preset="tsdsr-24-r50", created=None)
    by_object = MaskFile.from_mask(mask, "tsdsr", "shortgpt", space=preset, created=None)
    assert by_name == by_object
    assert by_name.to_json()["space"] == {"blocks": [[4, 2]] * 6, "preset": "tsdsr-24-r50"}

    tmask = TRANSFER_MASK
    ts = TransferSpace(SPACE, 1, "pairs")
    mf = MaskFile.from_mask(tmask, "toy", "tinysr", space=ts, created=None)
    assert mf.to_json()["space"] == {"blocks": [[4, 2], [4, 2]], "transfer": {"k": 1, "topology": "pairs"}}
    assert mf.transfer_space().contains(tmask)
    loaded = MaskFile.load(mf.save(tmp_path / "t.json"))
    assert loaded == mf and loaded.mask == tuple(tmask)


def test_transfer_topology_as_edge_list(tmp_path):
    mf = MaskFile.from_mask(TRANSFER_MASK, "toy", "tinysr", space=SPACE, transfer={"k": 1, "topology": "chain"})
    doc = mf.to_json()
    doc["space"]["transfer"]["topology"] = [[0, 1]]
    mf = MaskFile.load(_write(tmp_path, doc))
    assert mf.space["transfer"] == {"k": 1, "topology": "pairs"}


def test_from_mask_accepts_numpy_torch_and_bools():
    expected = _example(created=None)
    for mask in (np.array(MASK), torch.tensor(MASK, dtype=torch.float32), [bool(v) for v in MASK]):
        mf = MaskFile.from_mask(
            mask, "toy", "tinyfusion", settings=expected.settings, space=SPACE, preset="toy-8",
            probabilities=np.array(expected.probabilities),
            marginals=torch.tensor(expected.marginals, dtype=torch.float64),
            seed=np.int64(7), steps=100, created=None, confidence=[0.5, 0.5], metrics={"loss": 0.25}, notes="a test",
        )
        assert mf == expected


def test_float32_values_are_written_short():
    mf = MaskFile.from_mask(MASK, "toy", "tinyfusion", settings={"lr": np.float32(1e-4)}, space=SPACE,
                            marginals=torch.full((8,), 0.1))
    assert mf.settings["lr"] == 1e-4
    assert mf.marginals == (0.1,) * 8


def test_tinysr_prune_mask_interop():
    prune_mask = [1, 1, 0, 0, 1, 0, 1, 0]
    mf = MaskFile.from_mask(mask_from_prune_list(prune_mask), "toy", "tinysr", space=SPACE)
    assert mf.to_json()["mask"] == prune_mask


def test_mask_from_prune_list():
    assert mask_from_prune_list([1, 0, 1]) == (1, 0, 1)
    assert mask_from_prune_list([True, False]) == (1, 0)
    assert mask_from_prune_list([1.0, 0.0]) == (1, 0)
    assert mask_from_prune_list(np.array([1, 0], dtype=np.uint8)) == (1, 0)
    assert mask_from_prune_list(torch.tensor([0.0, 1.0])) == (0, 1)
    assert mask_from_prune_list("1,0, 1") == (1, 0, 1)
    assert mask_from_prune_list("1 0 1") == (1, 0, 1)
    assert mask_from_prune_list("[1, 0]") == (1, 0)
    for bad, words in [([1, 2], "entry 1 is 2"), ([0.5], "entry 0"), ("1,x", "cannot read prune_mask"),
                       ([], "empty"), ({"a": 1}, "list of 0/1"), (["1"], "entry 0")]:
        with pytest.raises(MaskFileError, match="prune_mask") as info:
            mask_from_prune_list(bad)
        assert words in str(info.value)


def test_error_is_a_pruneseek_error():
    assert issubclass(MaskFileError, PruneseekError)


# ----- wrong model --------------------------------------------------------------------------------


def test_check_model(tmp_path):
    path = tmp_path / "mask.json"
    MaskFile.from_mask([1, 0] * 12, "tsdsr", "tinysr", space=BlockSpace.uniform(24, 2, 1)).save(path)
    mf = MaskFile.load(path)
    assert mf.check_model("tsdsr", 24) is mf
    assert mf.check_model() is mf
    with pytest.raises(MaskFileError) as info:
        mf.check_model(num_layers=28)
    assert str(info.value) == (
        f"{path} is for model 'tsdsr' with 24 layers, but this model has 28 layers; "
        "search a mask for this model or pass the right --mask"
    )
    with pytest.raises(MaskFileError, match=r"with 24 layers, but this model is 'dit' with 28 layers"):
        mf.check_model("dit", 28)
    with pytest.raises(MaskFileError, match=r"but this model is 'dit';"):
        mf.check_model("dit")
    unsaved = MaskFile.from_mask([1, 0], "tsdsr", "x")
    with pytest.raises(MaskFileError, match=r"^this mask is for model 'tsdsr' with 2 layers"):
        unsaved.check_model(num_layers=3)


# ----- rejections on read --------------------------------------------------------------------------


def _set(path, value):
    def change(doc):
        *parents, last = path
        target = doc
        for key in parents:
            target = target[key]
        target[last] = value
        return doc

    return change


def _drop(key):
    def change(doc):
        del doc[key]
        return doc

    return change


def _with_transfer(k, mask):
    def change(doc):
        doc["space"]["transfer"] = {"k": k, "topology": "pairs"}
        doc["mask"] = mask
        doc["keep"] = [i for i, v in enumerate(mask) if v]
        return doc

    return change


def _mask(mask):
    def change(doc):
        doc["mask"] = mask
        doc["keep"] = [i for i, v in enumerate(mask) if v]
        return doc

    return change


REJECTIONS = [
    # (id, change to the document, words the message must contain)
    ("format-missing", _drop("format"), ["not a pruneseek mask file (no 'format' key)"]),
    ("format-v2", _set(["format"], "pruneseek.mask/v2"),
     ["unknown format 'pruneseek.mask/v2'; this pruneseek reads pruneseek.mask/v1 — upgrade pruneseek"]),
    ("format-other", _set(["format"], "something/v1"), ["field 'format'", "unknown format 'something/v1'"]),
    ("format-type", _set(["format"], 1), ["field 'format'", "unknown format 1"]),
    ("unknown-key", _set(["extra"], 1), ["field 'extra'", "unknown key"]),
    *[(f"missing-{k}", _drop(k), [f"field '{k}': missing"])
      for k in ("model", "keep", "mask", "strategy", "space", "probabilities", "marginals", "seed", "steps")],
    ("model-type", _set(["model"], "toy"), ["field 'model'", "must be an object"]),
    ("model-name-missing", lambda d: (d["model"].pop("name"), d)[1], ["field 'model.name': missing"]),
    ("model-name-empty", _set(["model", "name"], ""), ["field 'model.name'", "non-empty string"]),
    ("model-name-type", _set(["model", "name"], 3), ["field 'model.name'"]),
    ("model-unknown", _set(["model", "path"], "x"), ["field 'model.path'", "unknown key"]),
    ("num-layers-zero", _set(["model", "num_layers"], 0), ["field 'model.num_layers'", "≥ 1"]),
    ("num-layers-str", _set(["model", "num_layers"], "8"), ["field 'model.num_layers'"]),
    ("num-layers-bool", _set(["model", "num_layers"], True), ["field 'model.num_layers'"]),
    ("mask-length", _set(["model", "num_layers"], 9), ["field 'mask'", "8 entries", "model.num_layers is 9"]),
    ("mask-type", _set(["mask"], "10100110"), ["field 'mask'", "must be a list"]),
    ("mask-value", _set(["mask", 1], 2), ["field 'mask'", "entry 1 is 2", "only 0 (drop) and 1 (keep)"]),
    ("mask-bool", _set(["mask", 0], True), ["field 'mask'", "entry 0", "integers"]),
    ("mask-float", _set(["mask", 0], 1.0), ["field 'mask'", "entry 0", "integers"]),
    ("mask-empty-keep", _mask([0] * 8), ["field 'mask'", "keeps no layers"]),
    ("keep-unsorted", _set(["keep"], [2, 0, 5, 6]), ["field 'keep'", "sorted"]),
    ("keep-repeat", _set(["keep"], [0, 2, 2, 5, 6]), ["field 'keep'", "repeats"]),
    ("keep-mismatch", _set(["keep"], [0, 2, 5, 7]), ["field 'keep'", "does not match 'mask'", "[0, 2, 5, 6]"]),
    ("keep-range", _set(["keep"], [0, 2, 5, 8]), ["field 'keep'", "out of range"]),
    ("keep-type", _set(["keep"], [0, 2, 5, "6"]), ["field 'keep'", "integers"]),
    ("strategy-name", _set(["strategy", "name"], None), ["field 'strategy.name'"]),
    ("strategy-settings", _set(["strategy", "settings"], [1]), ["field 'strategy.settings'", "must be an object"]),
    ("strategy-settings-missing", lambda d: (d["strategy"].pop("settings"), d)[1],
     ["field 'strategy.settings': missing"]),
    ("space-type", _set(["space"], [[4, 2]]), ["field 'space'", "must be an object"]),
    ("space-unknown", _set(["space", "shape"], 1), ["field 'space.shape'", "unknown key"]),
    ("space-blocks-pair", _set(["space", "blocks"], [[4, 2], [4]]), ["field 'space.blocks'", "block 1"]),
    ("space-blocks-keep", _set(["space", "blocks"], [[4, 5], [4, 2]]), ["field 'space.blocks'", "keep must lie"]),
    ("space-blocks-empty", _set(["space", "blocks"], []), ["field 'space.blocks'", "non-empty"]),
    ("space-blocks-tile", _set(["space", "blocks"], [[4, 2], [2, 1]]),
     ["field 'space.blocks'", "add up to 6", "model.num_layers is 8"]),
    ("space-preset-type", _set(["space", "preset"], 5), ["field 'space.preset'"]),
    ("not-in-space", _mask([1, 1, 1, 0, 0, 1, 0, 0]),
     ["field 'mask'", "not in the declared space", "[3, 1]", "[2, 2]", "space.transfer"]),
    ("transfer-unreachable", _with_transfer(1, [1, 1, 1, 1, 0, 0, 0, 0]),
     ["field 'mask'", "not reachable", "[4, 0]", "k=1", "'pairs'"]),
    ("transfer-k", _set(["space", "transfer"], {"k": -1, "topology": "pairs"}), ["field 'space.transfer.k'"]),
    ("transfer-topology", _set(["space", "transfer"], {"k": 1, "topology": "ring"}),
     ["field 'space.transfer.topology'", "unknown topology 'ring'"]),
    ("transfer-topology-edge", _set(["space", "transfer"], {"k": 1, "topology": [[0, 5]]}),
     ["field 'space.transfer.topology'", "block 5"]),
    ("transfer-topology-type", _set(["space", "transfer"], {"k": 1, "topology": 3}),
     ["field 'space.transfer.topology'"]),
    ("transfer-missing-k", _set(["space", "transfer"], {"topology": "pairs"}), ["field 'space.transfer.k': missing"]),
    ("transfer-no-blocks",
     lambda d: (d["space"].pop("blocks"), _set(["space", "transfer"], {"k": 1, "topology": "pairs"})(d))[1],
     ["field 'space.transfer'", "needs 'space.blocks'"]),
    ("prob-no-blocks", lambda d: (d["space"].pop("blocks"), d)[1], ["field 'probabilities'", "needs 'space.blocks'"]),
    ("prob-type", _set(["probabilities"], {"0": [1]}), ["field 'probabilities'", "must be a list"]),
    ("prob-blocks", _set(["probabilities"], [[1 / 6] * 6]), ["field 'probabilities'", "1 lists", "2 blocks"]),
    ("prob-options", _set(["probabilities", 1], [0.25] * 4),
     ["field 'probabilities[1]'", "4 probabilities", "6 options"]),
    ("prob-sum", _set(["probabilities", 0], [0.5] * 6), ["field 'probabilities[0]'", "sums to 3"]),
    ("prob-negative", _set(["probabilities", 0], [-0.5, 0.5, 0.25, 0.25, 0.25, 0.25]),
     ["field 'probabilities[0][0]'", "≥ 0"]),
    ("prob-not-number", _set(["probabilities", 0, 2], "x"), ["field 'probabilities[0][2]'", "must be a number"]),
    ("marginals-length", _set(["marginals"], [0.5] * 7), ["field 'marginals'", "7 entries", "num_layers is 8"]),
    ("marginals-high", _set(["marginals", 3], 1.5), ["field 'marginals[3]'", "[0, 1]"]),
    ("marginals-low", _set(["marginals", 0], -0.1), ["field 'marginals[0]'", "[0, 1]"]),
    ("marginals-type", _set(["marginals"], 0.5), ["field 'marginals'", "list of numbers"]),
    ("seed-type", _set(["seed"], "7"), ["field 'seed'", "integer or null"]),
    ("seed-float", _set(["seed"], 7.0), ["field 'seed'"]),
    ("steps-negative", _set(["steps"], -1), ["field 'steps'", "≥ 0"]),
    ("steps-null", _set(["steps"], None), ["field 'steps'"]),
    ("created", _set(["created"], "yesterday"), ["field 'created'", "ISO 8601"]),
    ("version-type", _set(["pruneseek_version"], 1), ["field 'pruneseek_version'", "string"]),
    ("confidence", _set(["confidence"], [0.5, 1.5]), ["field 'confidence'", "[0, 1]"]),
    ("metrics-type", _set(["metrics"], [1]), ["field 'metrics'", "object"]),
    ("notes-type", _set(["notes"], ["x"]), ["field 'notes'", "string"]),
]


@pytest.mark.parametrize("change,words", [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS])
def test_rejections_name_file_and_field(tmp_path, change, words):
    path = _write(tmp_path, change(_doc()))
    with pytest.raises(MaskFileError) as info:
        MaskFile.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    for w in words:
        assert w in message, (w, message)


@pytest.mark.parametrize(
    "text,words",
    [
        ("", ["not valid JSON", "empty"]),
        ("{not json", ["not valid JSON", "line 1"]),
        ("[1, 0, 1]", ["expected a JSON object, got a list", "prune_mask"]),
        ('"pruneseek.mask/v1"', ["expected a JSON object, got a string"]),
        ("null", ["expected a JSON object, got null"]),
    ],
)
def test_rejects_non_json_and_non_objects(tmp_path, text, words):
    path = _write(tmp_path, text)
    with pytest.raises(MaskFileError) as info:
        MaskFile.load(path)
    assert str(info.value).startswith(f"{path}: ")
    for w in words:
        assert w in str(info.value)


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("where", ["metrics", "marginals", "settings"])
def test_rejects_nan_and_infinity(tmp_path, token, where):
    text = json.dumps(_doc())
    if where == "metrics":
        text = text.replace('"loss": 0.25', f'"loss": {token}')
    elif where == "marginals":
        text = text.replace('"marginals": [0.5', f'"marginals": [{token}')
    else:
        text = text.replace('"lr": 0.0001', f'"lr": {token}')
    assert token in text
    with pytest.raises(MaskFileError, match=token):
        MaskFile.load(_write(tmp_path, text))


def test_rejects_overflowing_number(tmp_path):
    text = json.dumps(_doc()).replace('"loss": 0.25', '"loss": 1e400')
    with pytest.raises(MaskFileError, match=r"field 'metrics.loss': is inf; JSON numbers must be finite"):
        MaskFile.load(_write(tmp_path, text))


def test_rejects_repeated_key(tmp_path):
    text = json.dumps(_doc()).replace('"seed": 7', '"seed": 7, "seed": 8')
    with pytest.raises(MaskFileError, match="'seed' appears twice"):
        MaskFile.load(_write(tmp_path, text))


def test_rejects_unreadable_files(tmp_path):
    with pytest.raises(MaskFileError, match="no such mask file"):
        MaskFile.load(tmp_path / "absent.json")
    with pytest.raises(MaskFileError, match="is a folder"):
        MaskFile.load(tmp_path)
    bad = tmp_path / "latin1.json"
    bad.write_bytes(b'{"format": "\xff"}')
    with pytest.raises(MaskFileError, match="not UTF-8"):
        MaskFile.load(bad)


def test_tinysr_mask_outside_blocks_accepted_only_with_transfer(tmp_path):
    doc = _with_transfer(1, TRANSFER_MASK)(_doc(probabilities=None, marginals=None))
    assert MaskFile.load(_write(tmp_path, doc)).mask == tuple(TRANSFER_MASK)
    del doc["space"]["transfer"]
    with pytest.raises(MaskFileError, match="not in the declared space"):
        MaskFile.load(_write(tmp_path, doc))


# ----- rejections when building ---------------------------------------------------------------------


def test_from_mask_rejections():
    with pytest.raises(MaskFileError, match="unknown mask-file key 'colour'"):
        _example(colour="red")
    with pytest.raises(MaskFileError, match=r"field 'metrics.loss': is nan"):
        _example(metrics={"loss": float("nan")})
    with pytest.raises(MaskFileError, match=r"field 'strategy.settings.out': holds a Python PosixPath"):
        _example(settings={"out": Path("/tmp")})
    with pytest.raises(MaskFileError, match=r"field 'marginals\[0\]'"):
        _example(marginals=[float("inf")] * 8)
    with pytest.raises(MaskFileError, match="not in the declared space"):
        MaskFile.from_mask([1, 1, 1, 0, 0, 0, 0, 1], "toy", "x", space=SPACE)
    with pytest.raises(MaskFileError, match=r"the mask has 3 entries, but the space \(8 layers as .*\) has 8 layers"):
        MaskFile.from_mask([1, 0, 1], "toy", "x", space=SPACE)
    with pytest.raises(MaskFileError, match="prune_mask entry 0 is 3"):
        MaskFile.from_mask([3, 0], "toy", "x")
    with pytest.raises(MaskFileError, match="field 'model.name'"):
        MaskFile.from_mask([1, 0], "", "x")
    with pytest.raises(MaskFileError, match="field 'steps'"):
        MaskFile.from_mask([1, 0], "m", "x", steps=-3)
    with pytest.raises(MaskFileError, match="field 'mask': must be a list"):
        MaskFile(model_name="m", mask=None, strategy_name="x")  # type: ignore[arg-type]


def test_instances_are_frozen_and_unhashable():
    mf = _example()
    with pytest.raises(AttributeError):
        mf.steps = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        hash(mf)


# ----- atomic save ---------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["replace", "json"])
def test_save_failure_keeps_original(tmp_path, monkeypatch, where):
    path = tmp_path / "mask.json"
    original = _example(steps=1).save(path).read_text()

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    if where == "replace":
        monkeypatch.setattr(pio.os, "replace", boom)
        expected = MaskFileError
    else:
        monkeypatch.setattr("pruneseek.maskfile.json_text", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("x")))
        expected = RuntimeError
    with pytest.raises(expected) as info:
        _example(steps=2).save(path)
    if expected is MaskFileError:
        assert str(info.value).startswith(f"{path}: cannot write the mask file")
    assert path.read_text() == original
    assert os.listdir(tmp_path) == ["mask.json"]
    assert MaskFile.load(path).steps == 1


# ----- property: any valid mask of a small block space round-trips --------------------------------------


@st.composite
def _cases(draw):
    shape = draw(
        st.lists(st.integers(1, 4).flatmap(lambda b: st.tuples(st.just(b), st.integers(0, b))), min_size=1, max_size=4)
    )
    if sum(k for _, k in shape) == 0:
        b, _ = shape[0]
        shape[0] = (b, 1)
    space = BlockSpace(shape)
    ranks = [draw(st.integers(0, b.num_options - 1)) for b in space.blocks]
    mask = space.unrank(ranks)
    probabilities = None
    if draw(st.booleans()):
        probabilities = []
        for b in space.blocks:
            weights = draw(st.lists(st.floats(0.01, 1.0), min_size=b.num_options, max_size=b.num_options))
            total = math.fsum(weights)
            probabilities.append([w / total for w in weights])
    marginals = _marginals(space, probabilities) if probabilities else None
    if marginals:
        marginals = [min(1.0, max(0.0, m)) for m in marginals]
    seed = draw(st.none() | st.integers(-(2**63), 2**63 - 1))
    steps = draw(st.integers(0, 10**9))
    values = st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5) | st.booleans()
    settings_ = draw(st.dictionaries(st.text(max_size=5), values | st.none(), max_size=3))
    return space, mask, probabilities, marginals, seed, steps, settings_


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_cases())
def test_property_any_valid_mask_round_trips(tmp_path_factory, case):
    space, mask, probabilities, marginals, seed, steps, settings_ = case
    mf = MaskFile.from_mask(mask, "model", "strategy", settings=settings_, space=space, probabilities=probabilities,
                            marginals=marginals, seed=seed, steps=steps)
    path = mf.save(tmp_path_factory.getbasetemp() / "round-trip" / "mask.json")
    loaded = MaskFile.load(path)
    assert loaded == mf
    assert loaded.to_text() == path.read_text(encoding="utf-8")
    assert loaded.space_object() == space
    assert list(loaded.mask) == mask.tolist()
    assert loaded.keep == tuple(int(i) for i in np.flatnonzero(mask))


def test_every_mask_of_a_small_space_round_trips_in_memory():
    space = BlockSpace([(3, 1), (2, 1), (3, 2)])
    for mask in space.enumerate():
        mf = MaskFile.from_mask(mask, "m", "s", space=space, created=None)
        assert MaskFile.loads(mf.to_text()) == mf
    outside = [m for m in itertools.product((0, 1), repeat=8) if sum(m) and not space.contains(m)]
    for m in outside[:20]:
        with pytest.raises(MaskFileError, match="not in the declared space"):
            MaskFile.from_mask(list(m), "m", "s", space=space)
