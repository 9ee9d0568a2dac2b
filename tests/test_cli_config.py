"""`splat train` flags are generated from TrainConfig (train/config.py): every field is either a
flag or deliberately left to config.json, each flag's help states the dataclass default, and a
preset gives what PRESETS says."""

from __future__ import annotations

import dataclasses

import pytest

from splat import cli
from splat.errors import InputError
from splat.train.config import (
    MODEL_DEFAULTS,
    PRESET_MODEL_DEFAULTS,
    PRESETS,
    TrainConfig,
    cli_fields,
    flag_name,
    preset_config,
)

# Set from code or a run's config.json only. A new TrainConfig field needs a flag (train/config.py's
# `flag(...)`) or a place here: nothing is dropped from the command line unnoticed.
CONFIG_ONLY = {
    "given",
    "test_every",
    "cache_gb",
    "init_time_scale",
    "velocity_consistency",
    "motion_bases",
    "motion_knots",
    "lr_motion",
    "lr_motion_final",
    "lr_motion_weights",
    "motion_smoothness",
    "sh_degree_interval",
    "init_opacity",
    "init_scale",
    "random_init_scale",
    "lr_means",
    "lr_means_final",
    "lr_scales",
    "lr_quats",
    "lr_opacities",
    "lr_sh0",
    "lr_shN",
    "ssim_lambda",
    "refine_start",
    "refine_stop",
    "refine_every",
    "reset_every",
    "grow_grad2d",
    "absgrad",
    "mcmc_cap_max",
    "field_lr",
    "field_bound",
    "eval_steps",  # set with --eval-every
    "save_renders",
    "log_every",
    "keep_checkpoints",
}

# The flags users' scripts rely on (before they were generated): none may disappear.
HISTORIC_FLAGS = set(
    "--out --resume --format --preset --steps --max-seconds --strategy --batch-size --model --samples-per-step "
    "--grid-resolution --log2-hashmap-size --contract --field-loss --device --downscale --eval-every --eval-subset "
    "--background --max-gaussians --sh-degree --init-points --resolution-schedule --appearance --seed "
    "--checkpoint-every --checkpoint-minutes --nproc --viewer --viewer-port".split()
)


def train_parser():
    sub = next(a for a in cli.build_parser()._actions if a.dest == "command")
    return sub.choices["train"]


def actions_by_flag() -> dict:
    return {s: a for a in train_parser()._actions for s in a.option_strings}


def config_of(*argv: str) -> TrainConfig:
    """The configuration `splat train DATA ARGV` starts from (as splat.cli._train builds it)."""
    args = train_parser().parse_args(["data", "--device", "cpu", *argv])
    return preset_config(args.preset, **cli._config_overrides(args))


def test_every_field_has_a_flag_or_is_config_only():
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    flagged = {f.name for f in cli_fields()}
    assert fields - flagged == CONFIG_ONLY
    actions = actions_by_flag()
    for f in cli_fields():
        assert flag_name(f) in actions, f.name
    assert HISTORIC_FLAGS <= set(actions)


def _first_value(help_text: str) -> str:
    """The default a help string states: '(default: 30,000; model field: 20,000)' -> '30000'."""
    stated = help_text.rsplit("(default: ", 1)[1]
    return stated.split(";")[0].split(":")[0].rstrip(")").replace(",", "").strip()


def test_help_states_the_dataclass_defaults():
    actions = actions_by_flag()
    for f in cli_fields():
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        if f.metadata["cli_default"] is not None:
            default = f.metadata["cli_default"]
            assert actions[flag_name(f)].default == default
        else:
            assert actions[flag_name(f)].default is None  # unset: the preset or a resumed run decides
        stated = _first_value(actions[flag_name(f)].help)
        if isinstance(default, bool):
            assert stated == ("on" if default else "off"), f.name
        elif isinstance(default, (int, float)):
            assert float(stated) == default, (f.name, stated)
        elif isinstance(default, list):
            assert stated == "none" and default == [], f.name
        else:
            assert stated == default, (f.name, stated)
        for name, values in {**PRESETS, **MODEL_DEFAULTS}.items():
            if f.name in values:
                assert name in actions[flag_name(f)].help, (f.name, name)
        for (preset, model), values in PRESET_MODEL_DEFAULTS.items():
            if f.name in values:
                assert f"preset {preset} with model {model}: " in actions[flag_name(f)].help, (f.name, preset, model)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_preset_values_are_what_parsing_gives(preset):
    cfg = config_of("--preset", preset)
    assert cfg.preset == preset
    for key, value in PRESETS[preset].items():
        assert getattr(cfg, key) == value, key
    unset = {k for k in (f.name for f in dataclasses.fields(TrainConfig)) if k not in PRESETS[preset]}
    for key in unset - {"preset", "device", "given"}:
        assert getattr(cfg, key) == getattr(TrainConfig(), key), key
    assert cfg.given == []  # no flag given: the model's defaults may follow once the data chose it


def test_flags_override_presets_and_model_defaults():
    assert config_of("--model", "field").steps == MODEL_DEFAULTS["field"]["steps"]
    assert config_of("--model", "field", "--steps", "100").steps == 100
    assert config_of().steps == TrainConfig().steps
    cfg = config_of("--preset", "fast", "--resolution-schedule", "0:2,1500:1", "--max-seconds", "5", "--appearance")
    assert cfg.resolution_schedule == [[0, 2], [1500, 1]]
    assert cfg.max_train_seconds == 5.0 and cfg.appearance is True
    assert config_of("--samples-per-step", "2048", "--contract", "yes").field_samples == 2048
    with pytest.raises(InputError, match="--resolution-schedule"):
        config_of("--resolution-schedule", "0-2")


def test_format_choices_are_the_dataset_formats():
    from splat.datasets import FORMATS

    assert sorted(actions_by_flag()["--format"].choices) == sorted(FORMATS)
