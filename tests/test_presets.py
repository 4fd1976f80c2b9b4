"""Search-space presets: bundled TOML files, loadable by name or path; malformed ones name file and field."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from pruneseek.errors import PresetError, SpaceError
from pruneseek.spaces import BlockSpace, find_preset, list_presets, load_preset

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "name, layers, block, keep",
    [("tsdsr-24-r50", 24, 4, 2), ("tsdsr-24-r33", 24, 3, 2), ("tsdsr-24-r67", 24, 3, 1), ("dit-28-r50", 28, 4, 2)],
)
def test_required_presets(name, layers, block, keep):
    preset = load_preset(name)
    assert preset.name == name
    assert preset.space == BlockSpace.uniform(layers, block, keep)
    assert preset.transfer_k == 1 and preset.topology == "pairs"


def test_every_bundled_preset_loads():
    names = list_presets()
    assert len(names) >= 4
    for name in names:
        assert load_preset(name).space.num_layers > 0


def test_load_by_path_and_uneven_blocks(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('layers = 10\nblocks = [[4, 2], [6, 3]]\n[transfer]\nk = 1\nedges = [[0, 1]]\n')
    preset = load_preset(path)
    assert preset.name == "mine" and preset.space.shape == [(4, 2), (6, 3)]
    assert preset.transfer_space().size() == 6 * 20 + 2 * 4 * 15


def test_find_preset_by_model_and_ratio():
    assert find_preset("tsdsr", 0.5).name == "tsdsr-24-r50"
    assert find_preset("tsdsr", 0.33).name == "tsdsr-24-r33"
    assert find_preset("tsdsr", 0.67).name == "tsdsr-24-r67"
    with pytest.raises(PresetError, match=r"available ratios: 0.3333 \(tsdsr-24-r33\), 0.5"):
        find_preset("tsdsr", 0.25)
    with pytest.raises(PresetError, match="no bundled search-space preset for model 'unet'"):
        find_preset("unet", 0.5)


@pytest.mark.parametrize(
    "text, field",
    [
        ("layers = 24\nblock = 4\n", "keep"),
        ("block = 4\nkeep = 2\n", "layers"),
        ("layers = 24\nblock = 5\nkeep = 2\n", "block"),
        ("layers = 24\nblock = 4\nkeep = 7\n", "keep"),
        ("layers = 24\nblock = 4\nkeep = 2\nkep = 1\n", "kep"),
        ("layers = 24\nblock = 4\nkeep = 2.5\n", "keep"),
        ("layers = 8\nblocks = [[4, 2], [3, 1]]\n", "blocks"),
        ("layers = 8\nblocks = [[4, 5], [4, 1]]\n", "blocks"),
        ("layers = 8\nblocks = [[4, 2], [4, 2]]\nblock = 4\n", "block"),
        ("layers = 24\nblock = 4\nkeep = 2\n[transfer]\ntopology = 'pairs'\n", "transfer.k"),
        ("layers = 24\nblock = 4\nkeep = 2\n[transfer]\nk = 1\ntopology = 'ring'\n", "transfer.topology"),
        ("layers = 24\nblock = 4\nkeep = 2\n[transfer]\nk = 1\nedges = [[0, 9]]\n", "transfer.edges"),
        ("layers = 24\nblock = 4\nkeep = 2\n[transfer]\nk = -1\n", "transfer.k"),
        ("layers = 24\nblock = 4\nkeep = 2\nname = 3\n", "name"),
    ],
)
def test_malformed_preset_names_file_and_field(tmp_path, text, field):
    path = tmp_path / "broken.toml"
    path.write_text(text)
    with pytest.raises(PresetError) as info:
        load_preset(path)
    assert str(info.value).startswith(f"{path}: field '{field}':")


def test_invalid_toml_and_missing_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("layers = = 24\n")
    with pytest.raises(PresetError, match=f"{path}: not valid TOML"):
        load_preset(path)
    with pytest.raises(PresetError, match="no such preset file"):
        load_preset(tmp_path / "absent.toml")


def test_presets_are_bundled_in_the_wheel(tmp_path):
    """A non-editable install carries search_spaces/ inside the package (pruneseek/_bundled/)."""
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("pruneseek-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        zf.extractall(tmp_path / "site")
    for name in ("tsdsr-24-r50", "tsdsr-24-r33", "tsdsr-24-r67", "dit-28-r50"):
        assert f"pruneseek/_bundled/search_spaces/{name}.toml" in names
    # Loading from the unpacked wheel (not the source tree) finds the bundled presets.
    code = "from pruneseek.spaces import load_preset; import pruneseek; print(load_preset('tsdsr-24-r50').path)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "site")})
    assert res.returncode == 0, res.stderr
    assert "_bundled/search_spaces/tsdsr-24-r50.toml" in res.stdout


def test_family_presets_by_layer_count_else_one_block_per_stack():
    from pruneseek.spaces.presets import family_preset, stack_space

    assert family_preset("flux", 0.33, None, [19, 38]).name == "flux-57-r33"  # stacks apart by default
    assert family_preset("flux", 0.33, "flux-57-r33-joint", [19, 38]).space.blocks[0].size == 57
    assert family_preset("causal-lm", 0.28, None, [32]).space.num_kept == 23
    assert family_preset("sd3", 0.5, None, [24]).name == "sd3-24-r50"
    tiny = family_preset("flux", 0.5, None, [2, 6])  # no bundled preset for 8 layers
    assert [(b.size, b.keep) for b in tiny.space.blocks] == [(2, 1), (6, 3)]
    odd = stack_space("flux", [3, 5], 0.5)  # neither stack halves: one block over all 8
    assert [(b.size, b.keep) for b in odd.space.blocks] == [(8, 4)]
    with pytest.raises(SpaceError, match="cannot be realised"):
        stack_space("dit", [7], 0.5)
