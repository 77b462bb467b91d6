"""tune's loss landscape and Complete^(d)P candidate on real StepLaw runs; the training-curve figure."""

import json

import numpy as np
import pytest
import yaml
from matplotlib.image import imread
from typer.testing import CliRunner

from ncpl import predictors
from ncpl.cli import app
from ncpl.errors import ConfigError
from ncpl.plots import training_curves
from ncpl.schema import RunRecord, save
from ncpl.sources import import_runs
from ncpl.store import to_frame, write_runs
from ncpl.tuning import (
    Dimension,
    landscape,
    runs_at,
    score_suggestions,
    transfer_suggestion,
    tune,
    tune_with_suggestions,
)


@pytest.fixture(scope="module")
def steplaw(shared, tmp_path_factory):
    runs = to_frame(import_runs("steplaw", [shared / "steplaw/dense_lr_bs_loss.csv"]).records)
    directory = tmp_path_factory.mktemp("steplaw")
    model = predictors.create("xgboost", n_estimators=30, learning_rate=0.3).fit(runs[~runs["diverged"]])
    model.save(directory / "model")
    write_runs(runs, directory / "runs.parquet")
    base = RunRecord.from_flat(runs.iloc[0].to_dict()).config  # 215M params, 100B tokens: a full lr x batch sweep
    save(base, directory / "base.yaml")
    return runs, model, base, directory


def assert_png(path, min_side=300):
    image = imread(path)
    assert image.ndim == 3 and min(image.shape[:2]) >= min_side and image.std() > 0.05  # drawn, not blank


def tuned_run(base, **optimizer):
    """A smaller tuned run: half the width and depth, a quarter of the batch, a tenth of the tokens."""
    data = base.model_dump()
    data["model"].update(
        d_model=base.model.d_model // 2, n_layers=base.model.n_layers - 3, n_params=base.model.n_params / 6
    )
    data["batch"] = {"tokens": base.batch.tokens / 4}
    data["data"]["tokens"] = base.data.tokens / 10
    data["optimizer"].update(optimizer)
    return type(base).model_validate(data)


def test_landscape_is_the_model_on_the_slice_at_the_base(steplaw):
    runs, model, base, _ = steplaw
    space = [Dimension("optimizer.lr", 1e-4, 1e-2), Dimension("optimizer.weight_decay", 0.01, 0.1)]
    best = tune(model, base, space, n=32, rounds=1, top=1).iloc[0]
    lr, batch, loss, at = landscape(model, base, space, best, size=12)
    assert loss.shape == (12, 12) and np.isfinite(loss).all()
    assert lr[[0, -1]] == pytest.approx([1e-4, 1e-2])  # the space's range
    assert batch[[0, -1]] == pytest.approx(
        [base.batch.tokens / 10, base.batch.tokens * 10]
    )  # not searched: a decade either side
    assert at["optimizer.lr"] == best["optimizer.lr"] and at["optimizer.weight_decay"] == best["optimizer.weight_decay"]
    assert (at["model.n_params"], at["data.tokens"]) == (base.model.n_params, base.data.tokens)
    cell = score_suggestions(
        model,
        base,
        {
            "cell": {
                "optimizer.lr": lr[5],
                "batch.tokens": batch[7],
                "optimizer.weight_decay": best["optimizer.weight_decay"],
            }
        },
    )
    assert cell.loc["cell", "pred_loss"] == pytest.approx(
        loss[7, 5], rel=1e-6
    )  # the grid is the model at the base's N, D
    same = runs_at(runs, at)
    assert (
        len(same) >= 100
        and (same["model.n_params"] == base.model.n_params).all()
        and (same["data.tokens"] == base.data.tokens).all()
    )


def test_transfer_candidate_by_hand(steplaw):
    _, model, base, _ = steplaw
    tuned = tuned_run(base, lr=4e-3, beta1=0.9, weight_decay=0.1, eps=1e-8)
    got = transfer_suggestion(tuned, base)
    m_n, m_b, m_d = 2.0, 4.0, 10.0  # alpha = 1: depth leaves the hidden-weight lr alone
    assert got["optimizer.lr"] == pytest.approx(4e-3 / m_n * np.sqrt(m_b / m_d))
    assert got["optimizer.weight_decay"] == pytest.approx(0.1 * m_n * np.sqrt(m_b / m_d))
    assert got["optimizer.eps"] == pytest.approx(1e-8 / m_n / (7 / 4) * np.sqrt(m_d / m_b))  # m_L = 7/4, alpha = 1
    assert got["optimizer.beta1"] == pytest.approx(1 - 0.1 * m_b / m_d) and "optimizer.beta2" not in got
    scored = score_suggestions(model, base, {"transfer": got})
    assert scored.loc["transfer", "optimizer.lr"] == got["optimizer.lr"] and np.isfinite(
        scored.loc["transfer", "pred_loss"]
    )


def test_tune_command_plots_and_scores_the_transfer(steplaw, tmp_path):
    _, _, base, directory = steplaw
    save(tuned_run(base, lr=4e-3), tmp_path / "tuned.yaml")
    (tmp_path / "space.yaml").write_text(
        yaml.safe_dump({"optimizer.lr": {"low": 1e-4, "high": 1e-2}, "batch.tokens": {"low": 1e5, "high": 1e7}})
    )
    args = [
        "tune",
        str(directory / "model"),
        "--base",
        str(directory / "base.yaml"),
        "--space",
        str(tmp_path / "space.yaml"),
        "--n",
        "32",
        "--top",
        "3",
    ]
    result = CliRunner().invoke(
        app,
        [
            *args,
            "--transfer-from",
            str(tmp_path / "tuned.yaml"),
            "--plot",
            str(tmp_path / "land.png"),
            "--runs",
            str(directory / "runs.parquet"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "StepLaw law" in result.output and "Complete^(d)P from tuned.yaml" in result.output
    assert f"{4e-3 / 2 * np.sqrt(4 / 10):.4g}" in result.output  # the transferred lr, printed beside its score
    assert_png(tmp_path / "land.png")
    without_width = tuned_run(base, lr=4e-3).model_dump(exclude_none=True)
    del without_width["model"]["d_model"]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(without_width))
    result = CliRunner().invoke(app, [*args, "--transfer-from", str(tmp_path / "bad.yaml")])
    assert result.exit_code == 2 and "--transfer-from: model.d_model missing" in result.output
    result = CliRunner().invoke(app, [*args, "--runs", str(directory / "runs.parquet")])
    assert result.exit_code == 2 and "--plot" in result.output


def test_a_plot_suffix_matplotlib_cannot_write_is_refused_before_the_search(tmp_path):
    with pytest.raises(ConfigError, match="plot: .*land.xyz: cannot write a figure as 'xyz'"):
        tune_with_suggestions(None, None, [], plot=tmp_path / "land.xyz")  # refused before the model is used


def test_training_curves_from_a_log(tmp_path):
    val = [0.30, 0.20, 0.15, 0.12, 0.14]  # stage 2's first epoch is the best
    lines = [
        {
            "stage": 1 if i < 3 else 2,
            "epoch": i + 1 if i < 3 else i - 2,
            "val_mae": v,
            "train_huber": 1 / (i + 1),
            "train_pinball": 0.5 / (i + 1),
            "train_diverge": 0.3,
        }
        for i, v in enumerate(val)
    ]
    (tmp_path / "train_log.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert_png(training_curves(tmp_path / "train_log.jsonl", tmp_path / "curves.png"))
