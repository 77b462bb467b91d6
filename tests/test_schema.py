import math

import pytest

from ncpl import schema
from ncpl.errors import ConfigError
from ncpl.schema import RunConfig, RunRecord, config_from_flat, config_to_flat
from ncpl.validation import validate

BASE = {
    "source": "mine",
    "model": {"n_params": "124M", "d_model": 768, "n_layers": 12},
    "data": {"tokens": "2.5B"},
    "optimizer": {"name": "AdamW", "lr": 6e-4, "beta2": 0.95, "z_loss": 1e-4},
    "schedule": {"name": "cosine", "warmup_steps": 700, "min_lr_ratio": 0.1},
    "batch": {"sequences": 512},
}


def config(**overrides):
    data = {key: (dict(value) if isinstance(value, dict) else value) for key, value in BASE.items()}
    for dotted, value in overrides.items():
        section, _, field = dotted.partition("__")
        if field:
            data[section][field] = value
        else:
            data[section] = value
    return data


def test_units_and_normalisation():
    cfg = validate(RunConfig, config())
    assert cfg.model.n_params == 124e6 and cfg.data.tokens == 2.5e9
    assert cfg.optimizer.name == "adamw"
    assert cfg.optimizer.model_extra == {"z_loss": 1e-4}  # an AdamW-specific field kept
    assert validate(RunConfig, config(optimizer={"name": "soape"})).optimizer.name == "soap"
    assert cfg.flops == pytest.approx(6 * 124e6 * 2.5e9)


@pytest.mark.parametrize(
    "overrides, field, fragment",
    [
        ({"data": {}}, "data.tokens", "required field is missing"),
        ({"model__n_params": -5}, "model.n_params", "greater than 0"),
        ({"optimizer__lr": math.nan}, "optimizer.lr", "finite"),
        ({"data__tokens": "3Q"}, "data.tokens", "unknown unit 'Q'"),
        ({"model__n_layers": "twelve"}, "model.n_layers", "expected a number"),
        ({"model__d_model": True}, "model.d_model", "boolean"),
        ({"optimizer__name": "adamq"}, "optimizer.name", "unknown optimizer 'adamq'"),
        ({"optimizer__beta2": 1.5}, "optimizer.beta2", "less than 1"),
        ({"schedule__peak": 3}, "schedule.peak", "unknown field"),
        ({"optimizer__z_loss": [1, 2]}, "optimizer.z_loss", "scalar"),
    ],
)
def test_invalid_input_names_field_value_and_expectation(overrides, field, fragment):
    with pytest.raises(ConfigError) as error:
        validate(RunConfig, config(**overrides))
    message = str(error.value)
    assert field in message and fragment in message, message


def test_record_needs_loss_unless_diverged():
    cfg = config()
    with pytest.raises(ConfigError, match="final_loss is required"):
        validate(RunRecord, {"run_id": "a", "config": cfg})
    assert validate(RunRecord, {"run_id": "a", "config": cfg, "diverged": True}).final_loss is None
    with pytest.raises(ConfigError, match="curve"):
        validate(
            RunRecord, {"run_id": "a", "config": cfg, "final_loss": 3.0, "curve": {"tokens": [2, 1], "loss": [4, 3]}}
        )


def test_yaml_and_json_round_trip(tmp_path):
    record = validate(
        RunRecord,
        {
            "run_id": "r1",
            "config": config(),
            "final_loss": 3.1,
            "loss_kind": "c4_eval",
            "curve": {"tokens": [1e9, 2e9], "loss": [3.5, 3.1]},
        },
    )
    for name in ("run.yaml", "run.json"):
        schema.save(record, tmp_path / name)
        assert schema.read_config(tmp_path / name, RunRecord) == record
    schema.save(record.config, tmp_path / "config.yaml")
    assert schema.read_config(tmp_path / "config.yaml") == record.config


def test_flat_round_trip():
    cfg = validate(RunConfig, config())
    flat = config_to_flat(cfg)
    assert flat["model.n_params"] == 124e6 and flat["optimizer.z_loss"] == 1e-4
    assert config_from_flat(flat) == cfg


def test_load_reports_file_problems(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        schema.read_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        schema.read_config(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        schema.read_config(tmp_path / "list.yaml")


@pytest.mark.parametrize(
    "section, field",
    [
        ("optimizer", "lr"),
        ("optimizer", "eps"),
        ("optimizer", "weight_decay"),
        ("optimizer", "grad_clip"),
        ("schedule", "warmup_steps"),
        ("schedule", "min_lr"),
        ("schedule", "cooldown_steps"),
    ],
)
@pytest.mark.parametrize("text", ["inf", "Infinity", "1e400"])
def test_a_number_written_as_text_must_be_finite_once_parsed(section, field, text):
    """Before: YAML's `lr: inf` (or `1e400`) is a string, which pydantic parsed into an infinite lr after the check."""
    with pytest.raises(ConfigError, match=rf"{section}\.{field}: got '{text}': .*finite"):
        validate(RunConfig, config(**{f"{section}__{field}": text}))
