"""Complete^(d)P transfer: each rule against multipliers computed by hand."""

import json

import pytest
import yaml
from pydantic import ValidationError
from typer.testing import CliRunner

from ncpl.cli import app
from ncpl.errors import ConfigError
from ncpl.laws.transfer import TransferConfig, transfer

BASE = {
    "width": 256,
    "depth": 8,
    "batch": 262144,
    "tokens": 1e9,
    "alpha": 0.5,
    "lr": {"hidden": 1e-2, "bias_norm": 2e-2, "unembedding": 3e-3, "embedding": 5e-2},
    "eps": {"hidden": 1e-8},
    "weight_decay": {"hidden": 0.1, "unembedding": 0.05},
    "init_variance": {"hidden": 1 / 256, "unembedding": 1e-4},
    "beta1": 0.9,
    "beta2": 0.95,
}


def test_each_rule_by_hand():
    # 4x width, 2x depth, 2x batch, 8x tokens: sqrt(m_B/m_D) = 1/2, alpha = 1/2
    out = transfer(TransferConfig(**BASE), width=1024, depth=16, batch=524288, tokens=8e9)
    assert out["residual_multiplier"] == pytest.approx(2**-0.5)
    assert out["lr"]["hidden"] == pytest.approx(1e-2 / 4 * 2**-0.5 * 0.5)
    assert out["lr"]["bias_norm"] == pytest.approx(2e-2 * 2**-0.5 * 0.5)
    assert out["lr"]["unembedding"] == pytest.approx(3e-3 / 4 * 0.5)
    assert out["lr"]["embedding"] == pytest.approx(5e-2 * 0.5)
    assert out["eps"]["hidden"] == pytest.approx(1e-8 / 4 * 2**-0.5 * 2)
    assert out["weight_decay"]["hidden"] == pytest.approx(0.1 * 4 * 0.5)
    assert out["weight_decay"]["unembedding"] == pytest.approx(0.05 * 4 * 0.5)
    assert out["beta1"] == pytest.approx(1 - 0.1 * 0.25) and out["beta2"] == pytest.approx(1 - 0.05 * 0.25)
    assert out["init_variance"]["hidden"] == pytest.approx(1 / 256 / 4)
    assert out["init_variance"]["unembedding"] == pytest.approx(1e-4 / 16)
    assert out["steps"] == round(8e9 / 524288)


def test_identity_and_limits():
    same = transfer(TransferConfig(**BASE))
    assert same["lr"] == BASE["lr"] and same["beta2"] == pytest.approx(0.95) and same["residual_multiplier"] == 1
    with pytest.raises(ConfigError, match="beta"):
        transfer(TransferConfig(**BASE), batch=262144 * 100)  # 1 - beta1 would grow 100x
    with pytest.raises(ValidationError, match="alpha"):
        TransferConfig(**{**BASE, "alpha": 0.2})


def test_targets_must_be_positive(tmp_path):
    for target in ({"width": -3}, {"width": 0}, {"batch": -1}, {"tokens": float("nan")}):
        (name,) = target
        with pytest.raises(ConfigError, match=f"^{name}: got"):
            transfer(TransferConfig(**BASE), **target)
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    result = CliRunner().invoke(app, ["transfer", str(tmp_path / "base.yaml"), "--width", "0"])
    assert result.exit_code == 2 and "--width: got 0.0, expected a number > 0" in result.output


def test_transfer_command(tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    result = CliRunner().invoke(app, ["transfer", str(tmp_path / "base.yaml"), "--width", "512", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["lr"]["hidden"] == pytest.approx(5e-3)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**BASE, "lr": {"hiden": 1e-2}}))
    result = CliRunner().invoke(app, ["transfer", str(tmp_path / "bad.yaml")])
    assert result.exit_code == 2 and "lr.hiden" in result.output
