"""Strategy presets: one bundled TOML per strategy, equal to its class defaults; user files load; bad ones
name the file and the field."""
from __future__ import annotations

import pytest

from pruneseek.errors import PresetError
from pruneseek.strategies import StrategyError, available, strategy_class
from pruneseek.strategies.presets import (
    StrategyPresetError,
    list_strategy_presets,
    load_strategy_preset,
    preset_settings,
    strategy_from_preset,
    strategy_presets_dir,
)


def test_one_bundled_preset_per_registered_strategy():
    """Every strategy has its preset; other files (e.g. `pruneseek tune --save-preset NAME`) must load too."""
    assert set(available()) <= set(list_strategy_presets())
    assert len(available()) == 11
    for name in list_strategy_presets():
        load_strategy_preset(name)


@pytest.mark.parametrize("name", sorted(["tinysr", "tinyfusion", "random-min", "shortgpt", "flux-lite", "sensitivity",
                                         "snapfusion", "bk-sdm", "optuna-tpe", "annealing", "race"]))
def test_bundled_preset_equals_the_class_defaults(name):
    """The TOML cannot drift from the code: same keys, same values (None defaults are left out)."""
    loaded, settings = load_strategy_preset(name)
    assert loaded == name
    cls = strategy_class(name)
    assert settings == preset_settings(name)
    assert {k for k, v in cls.defaults.items() if v is not None} == set(settings)
    assert strategy_from_preset(name).settings == cls.defaults
    # the file by path gives the same
    assert load_strategy_preset(strategy_presets_dir() / f"{name}.toml") == (name, settings)
    text = (strategy_presets_dir() / f"{name}.toml").read_text()
    assert f'name = "{name}"' in text and "source = " in text


def test_user_preset_with_changed_settings_loads(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(
        'name = "tinysr"\nsource = "me"\n[settings]\nrule = "next-option"\nlora_rank = 4\nscaling = 50\n'
        '[settings.tau]\nkind = "linear"\nstart = 2.0\nend = 0.5\n'
    )
    name, settings = load_strategy_preset(path)
    assert name == "tinysr" and settings["rule"] == "next-option" and settings["scaling"] == 50.0
    strategy = strategy_from_preset(path, lora_rank=16)
    assert strategy.settings["lora_rank"] == 16 and strategy.settings["tau"]["start"] == 2.0
    assert strategy.settings["weight_lr"] == strategy_class("tinysr").defaults["weight_lr"]
    anneal = tmp_path / "anneal.toml"
    anneal.write_text(
        'name = "annealing"\n[settings]\nselect = "shortgpt"\n[settings.select_settings]\nkeep_last = false\n'
    )
    assert strategy_from_preset(anneal).selector.settings["keep_last"] is False


@pytest.mark.parametrize(
    "text, field",
    [
        ('[settings]\nscore_batches = 2\n', "name"),
        ('name = "magic"\n', "name"),
        ('name = "shortgpt"\ncolour = "red"\n', "colour"),
        ('name = "shortgpt"\n[settings]\nkeep_lst = true\n', "settings.keep_lst"),
        ('name = "shortgpt"\n[settings]\nscore_batches = "8"\n', "settings.score_batches"),
        ('name = "shortgpt"\n[settings]\nscope = "blocks"\n', "settings"),
        ('name = "shortgpt"\nsettings = 3\n', "settings"),
        ('name = "tinysr"\nsource = 1\n', "source"),
    ],
)
def test_malformed_presets_name_file_and_field(tmp_path, text, field):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(StrategyPresetError) as info:
        load_strategy_preset(path)
    assert str(path) in str(info.value) and f"field '{field}'" in str(info.value)
    assert isinstance(info.value, StrategyError) and isinstance(info.value, PresetError)


def test_missing_and_unknown_presets(tmp_path):
    with pytest.raises(StrategyPresetError, match="no such strategy preset file"):
        load_strategy_preset(tmp_path / "absent.toml")
    with pytest.raises(StrategyPresetError, match="unknown strategy preset 'magic'.*bundled presets: annealing"):
        load_strategy_preset("magic")
    path = tmp_path / "broken.toml"
    path.write_text("name = ")
    with pytest.raises(StrategyPresetError, match="not valid TOML"):
        load_strategy_preset(path)
