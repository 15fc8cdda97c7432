"""TrainConfig presets, YAML files and key=value overrides: values are typed and errors name the culprit."""

from __future__ import annotations

import pytest

from pedseg_lib.config import (
    PRESETS,
    TrainConfig,
    apply_overrides,
    config_for_profile,
    load_config,
    load_preset,
    save_config,
)
from pedseg_lib.errors import ConfigError
from pedseg_lib.profiles import Profile


def test_tutorial_preset_is_the_official_recipe():
    cfg = load_preset("tutorial")
    assert (cfg.variant, cfg.weights, cfg.batch_size, cfg.optimizer) == ("v1", "coco", 2, "sgd")
    assert (cfg.lr, cfg.momentum, cfg.weight_decay) == (0.005, 0.9, 5e-4)
    assert (cfg.scheduler, cfg.step_size, cfg.gamma, cfg.epochs) == ("step", 3, 0.1, 2)
    assert cfg.warmup_iters is None and cfg.warmup_factor == 0.001  # None = engine.default_warmup
    assert cfg.hflip == 0.5 and not cfg.amp and cfg.scale_jitter is None
    # It trains on every non-test image and selects nothing: its model is the last epoch.
    assert (cfg.test_size, cfg.val_size, cfg.patience, cfg.max_train_images) == (50, 0, None, None)


def test_other_presets():
    best, cpu, smoke = load_preset("best"), load_preset("cpu"), load_preset("smoke")
    assert best.variant == "v2" and best.scheduler == "cosine" and best.amp and best.patience == 6
    assert best.scale_jitter and best.photometric and best.epochs >= 20 and best.val_size == 20
    assert cpu.weights == "coco" and cpu.min_size == 480 and cpu.epochs == 1
    assert (cpu.max_train_images, cpu.val_size, cpu.test_size) == (40, 20, 50)
    assert smoke.weights is None and smoke.min_size <= 192 and smoke.max_train_images == 8
    assert (smoke.test_size, smoke.val_size, smoke.max_val_images) == (4, 4, None)
    assert smoke.clip_grad_norm and smoke.warmup_iters
    assert {load_preset(p).preset for p in PRESETS} == set(PRESETS)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset 'fast'"):
        load_preset("fast")


def test_overrides_are_parsed_and_typed():
    cfg = apply_overrides(load_preset("smoke"), ["lr=0.02", "weights=none", "scale_jitter=[0.8,1.2]",
                                                 "patience=3", "clip_grad_norm=null", "epochs=5"])
    assert cfg.lr == 0.02 and cfg.weights is None and cfg.scale_jitter == [0.8, 1.2]
    assert cfg.patience == 3 and cfg.clip_grad_norm is None and cfg.epochs == 5
    assert apply_overrides(cfg, ["lr=1"]).lr == 1.0 and isinstance(apply_overrides(cfg, ["lr=1"]).lr, float)
    assert load_preset("smoke").lr != 0.02  # the preset itself is untouched


@pytest.mark.parametrize(
    "item, message",
    [
        ("momentun=0.9", "unknown config key 'momentun'.*did you mean 'momentum'"),
        ("learning_rate=0.1", "unknown config key 'learning_rate'.*known keys: .*lr"),
        ("lr=fast", "'lr'.*'fast' .str. is not a float"),
        ("epochs=2.5", "'epochs'.*2.5 .float. is not a int"),
        ("amp=1", "'amp'.*is not a bool"),
        ("epochs=0", "'epochs'.*0 is not valid"),
        ("variant=v3", "'variant'.*'v3' is not valid"),
        ("weights=imagnet", "'weights'.*'imagnet' is not valid"),
        ("scale_jitter=[1.2,0.8]", "'scale_jitter'.*not valid"),
        ("val_size=-1", "'val_size'.*-1 is not valid"),
        ("val_size=2.5", "'val_size'.*2.5 .float. is not a int"),
        ("patience=3", "'patience'.*'val_size' is 0: set val_size=N .* or patience=null"),
        ("lr", "'lr' is not key=value"),
        ("lr=[0.1", "not valid YAML"),
    ],
)
def test_bad_overrides_name_the_key(item, message):
    with pytest.raises(ConfigError, match=message) as info:
        apply_overrides(load_preset("tutorial"), [item])
    assert "\n" not in str(info.value)


def test_yaml_round_trip_and_preset(tmp_path):
    cfg = apply_overrides(load_preset("cpu"), ["epochs=4", "scale_jitter=[0.9,1.1]"])
    save_config(cfg, tmp_path / "run.yaml")
    assert load_config(tmp_path / "run.yaml") == cfg
    (tmp_path / "mine.yaml").write_text("preset: smoke\nlr: 0.003\n")
    mine = load_config(tmp_path / "mine.yaml")
    assert mine == apply_overrides(load_preset("smoke"), ["lr=0.003"])
    (tmp_path / "bare.yaml").write_text("epochs: 3\n")
    assert load_config(tmp_path / "bare.yaml").epochs == 3


@pytest.mark.parametrize(
    "text, message",
    [
        ("epochs: [3\n", r"bad.yaml is not valid YAML at line \d"),
        ("- 1\n- 2\n", "must hold a mapping"),
        ("epoch: 3\n", "unknown config key 'epoch' in .*bad.yaml - did you mean 'epochs'"),
        ("lr: high\n", "'lr' in .*bad.yaml"),
        ("preset: quick\n", "unknown preset 'quick'"),
    ],
)
def test_bad_yaml_files(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_missing_yaml_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")


def test_dataclass_validates_on_construction():
    with pytest.raises(ConfigError, match="'batch_size'"):
        TrainConfig(batch_size=0)


def test_val_size_defaults_to_no_validation_and_patience_needs_it(tmp_path):
    assert TrainConfig().val_size == 0
    assert apply_overrides(load_preset("tutorial"), ["val_size=20", "patience=3"]).patience == 3
    with pytest.raises(ConfigError, match="'patience'.*'val_size'"):
        apply_overrides(load_preset("best"), ["val_size=0"])  # best keeps patience=6
    path = tmp_path / "run.yaml"
    path.write_text("preset: tutorial\npatience: 2\n")
    with pytest.raises(ConfigError, match="'patience'.*'val_size'"):
        load_config(path)


def test_config_for_profile(synthetic_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    profile = Profile("smoke", "smoke", "test", synthetic_root, False, "cpu")
    cfg = config_for_profile(profile)
    assert cfg.preset == "smoke" and cfg.data_root == str(synthetic_root)
    assert cfg.output_dir.endswith("runs/smoke")


def test_exponent_floats_are_numbers_in_overrides_and_files(tmp_path):
    """PyYAML reads 1e-5 (no dot) as a string; a float key still takes it as the number it means."""
    assert apply_overrides(load_preset("smoke"), ["lr=1e-5"]).lr == 1e-5
    assert apply_overrides(load_preset("smoke"), ["lr=2.5E-3", "warmup_factor=1e-3"]).warmup_factor == 1e-3
    path = tmp_path / "run.yaml"
    path.write_text("preset: smoke\nlr: 1e-4\nweight_decay: 5e-5\n")
    cfg = load_config(path)
    assert (cfg.lr, cfg.weight_decay) == (1e-4, 5e-5)
    with pytest.raises(ConfigError, match="'lr'"):
        apply_overrides(load_preset("smoke"), ["lr=fast"])
    with pytest.raises(ConfigError, match="'epochs'"):
        apply_overrides(load_preset("smoke"), ["epochs=1e3"])  # an int key takes no exponent string
