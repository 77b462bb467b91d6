"""tune honours every constraint on real StepLaw runs."""

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from ncpl import predictors
from ncpl.cli import app
from ncpl.errors import ConfigError
from ncpl.schema import RunRecord, save
from ncpl.sources import import_runs
from ncpl.store import to_frame
from ncpl.tuning import Dimension, parse_dimension, tune


@pytest.fixture(scope="module")
def runs(shared):
    return to_frame(import_runs("steplaw", [shared / "steplaw/dense_lr_bs_loss.csv"]).records)


@pytest.fixture(scope="module")
def fitted(runs):
    model = predictors.create("xgboost-residual", n_estimators=80).fit(runs[~runs["diverged"]])
    base = RunRecord.from_flat(runs.iloc[0].to_dict()).config
    return model, base


SPACE = [Dimension("optimizer.lr", 1e-4, 1e-2), Dimension("batch.tokens", 1e5, 1e7)]


def test_fixed_size_and_tokens(fitted):
    model, base = fitted
    best = tune(model, base, SPACE, n=128, top=5)
    assert len(best) == 5 and (np.diff(best["pred_loss"]) >= 0).all()
    assert best["optimizer.lr"].between(1e-4, 1e-2).all() and best["batch.tokens"].between(1e5, 1e7).all()
    steps = np.round(base.data.tokens / best["batch.tokens"])
    assert (best["schedule.total_steps"] == steps).all()  # derived fields follow the change


def test_compute_budget(fitted):
    model, base = fitted
    budget = 6 * base.model.n_params * base.data.tokens
    best = tune(
        model,
        base,
        [*SPACE, Dimension("model.n_params", base.model.n_params / 2, base.model.n_params * 2)],
        flops=budget,
        n=128,
        top=4,
    )
    assert np.allclose(6 * best["model.n_params"] * best["data.tokens"], budget)
    assert best["model.n_params"].between(base.model.n_params / 2, base.model.n_params * 2).all()


def test_bad_spaces_are_named(fitted):
    model, base = fitted
    with pytest.raises(ConfigError, match="data.tokens"):
        tune(model, base, [Dimension("data.tokens", 1e9, 1e10)])
    with pytest.raises(ConfigError, match="optimizer.lr: need low < high"):
        parse_dimension("optimizer.lr", {"low": 1e-2, "high": 1e-4})
    assert parse_dimension("optimizer.name", {"choices": ["adamw", "lion"]}).choices == ["adamw", "lion"]


def test_a_cap_on_p_diverge_needs_a_model_that_gives_p_diverge(fitted, runs):
    """Before: Chinchilla gives no p_diverge, and the cap was dropped without a word."""
    law = predictors.create("chinchilla").fit(runs[~runs["diverged"]])
    with pytest.raises(ConfigError, match="max_p_diverge 0.1: chinchilla gives no p_diverge"):
        tune(law, fitted[1], SPACE, n=16, max_p_diverge=0.1)


def test_tune_command(fitted, tmp_path):
    model, base = fitted
    model.save(tmp_path / "model")
    save(base, tmp_path / "base.yaml")

    def tune_command(space: dict, *options: str):
        (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
        command = ["tune", str(tmp_path / "model"), "--base", str(tmp_path / "base.yaml")]
        return CliRunner().invoke(app, [*command, "--space", str(tmp_path / "space.yaml"), *options])

    space = {"optimizer.lr": {"low": 1e-4, "high": 1e-2}, "batch.tokens": {"low": 1e5, "high": 1e7}}
    result = tune_command(space, "--n", "64", "--top", "3")
    assert result.exit_code == 0, result.output
    assert "top 3" in result.output and "StepLaw law" in result.output
    result = tune_command({"tokens": {"low": 1e9, "high": 1e10}})
    assert result.exit_code == 2 and "data.tokens" in result.output
    for budget in ("0", "-1"):  # before: `data.tokens: got 0.0 in row 0`, a field the user never gave
        result = tune_command(space, "--flops", budget, "--n", "16")
        assert result.exit_code == 2 and f"--flops: got {float(budget)}; a compute budget" in result.output
