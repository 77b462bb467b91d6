"""What a new user hits (issue 18): unknown fields, units in sweeps, extrapolation said out loud, progress and the
work folder, the shipped examples, and the small things (row numbers, help flags, the curve's end, option names)."""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from tiny import tiny_training
from typer.testing import CliRunner

from ncpl import predictors
from ncpl.cli import app
from ncpl.regressor.precision import resolve
from ncpl.store import read_runs

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split())  # one line: the console wraps long messages


@pytest.fixture(scope="module")
def marin():
    """A few dozen real Marin AdamW runs, 130M and 300M (N 1.34e8 .. 3.02e8)."""
    runs = read_runs(ROOT / "data/marin.parquet")
    adamw = runs[(runs["optimizer.name"] == "adamw") & ~runs["diverged"]]
    return adamw.groupby("meta.model_size", group_keys=False).apply(lambda g: g.sample(25, random_state=0))


@pytest.fixture(scope="module")
def models(marin, tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    predictors.create("chinchilla").fit(marin).save(base / "chinchilla")
    predictors.create("xgboost-residual", n_estimators=30).fit(marin).save(base / "xgb")
    return base


def candidate(**changes):
    config = yaml.safe_load((EXAMPLES / "candidate.yaml").read_text())
    for dotted, value in changes.items():
        section, _, field = dotted.partition(".")
        config.setdefault(section, {})[field] = value
    return config


def write(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


# --- 1. unknown fields ----------------------------------------------------------------------------


def test_misspelled_field_is_refused_in_yaml_sweeps_and_spaces(models, tmp_path):
    code, out = invoke(
        "predict", models / "xgb", "--candidate", write(tmp_path / "c.yaml", candidate(**{"optimizer.lrr": 3e-4}))
    )
    assert code == 2 and "optimizer.lrr" in out and "did you mean 'lr'" in out, out
    code, out = invoke(
        "predict", models / "xgb", "--candidate", write(tmp_path / "c.yaml", candidate(**{"modle.n_params": 1}))
    )
    assert code == 2 and "did you mean 'model'" in out, out
    sweep = pd.read_csv(EXAMPLES / "sweep.csv").rename(columns={"optimizer.lr": "optimizer.lrr"})
    writers = {
        "csv": lambda path: sweep.to_csv(path, index=False),
        "parquet": lambda path: sweep.to_parquet(path, index=False),
        "jsonl": lambda path: sweep.to_json(path, orient="records", lines=True),
    }
    for suffix, write_sweep in writers.items():
        path = tmp_path / f"sweep.{suffix}"
        write_sweep(path)
        code, out = invoke("score", models / "xgb", path, "-o", tmp_path / "out.parquet")
        assert code == 2 and "optimizer.lrr" in out and "did you mean 'optimizer.lr'" in out, (suffix, out)
    space = write(tmp_path / "space.yaml", {"optimizer.lrr": {"low": 1e-3, "high": 1e-2}})
    code, out = invoke("tune", models / "xgb", "--base", EXAMPLES / "candidate.yaml", "--space", space, "--n", 16)
    assert code == 2 and "did you mean 'optimizer.lr'" in out, out


def test_own_field_under_extra_is_accepted_and_warned_as_unseen(models, tmp_path):
    code, out = invoke(
        "predict", models / "xgb", "--candidate", write(tmp_path / "c.yaml", {**candidate(), "extra": {"knob": 2}})
    )
    assert code == 0 and "extra.knob never set" in out, out


def test_every_real_optimizer_field_is_declared():
    """The registry holds every optimizer-specific field of the bundled real runs (else their import would fail)."""
    from ncpl.schema import OPTIMIZER_FIELDS, OptimizerSpec

    for file in sorted((ROOT / "data").glob("*.parquet")):
        runs = pd.read_parquet(file)
        for column in [c for c in runs if c.startswith("optimizer.")]:
            field = column.removeprefix("optimizer.")
            if field in OptimizerSpec.model_fields:
                continue
            used = set(runs.loc[runs[column].notna(), "optimizer.name"])
            assert used <= {name for name, fields in OPTIMIZER_FIELDS.items() if field in fields}, (file.name, field)


# --- 2. units in every sweep format ---------------------------------------------------------------


def test_units_in_every_sweep_format_give_the_same_scores(models, tmp_path):
    sweep = pd.read_csv(EXAMPLES / "sweep.csv")
    assert sweep["data.tokens"].astype(str).str.endswith("B").all()  # the rows carry units
    paths = {
        "csv": EXAMPLES / "sweep.csv",
        "jsonl": tmp_path / "s.jsonl",
        "parquet": tmp_path / "s.parquet",
        "yaml": tmp_path / "s.yaml",
    }
    sweep.to_json(paths["jsonl"], orient="records", lines=True)
    sweep.astype(str).to_parquet(paths["parquet"], index=False)
    nested = [
        {
            "source": r["source"],
            "model": {"n_params": r["model.n_params"]},
            "data": {"tokens": r["data.tokens"]},
            "optimizer": {
                "name": r["optimizer.name"],
                "lr": r["optimizer.lr"],
                "weight_decay": r["optimizer.weight_decay"],
            },
            "batch": {"tokens": r["batch.tokens"]},
        }
        for r in sweep.to_dict("records")
    ]
    write(paths["yaml"], nested)
    scores = {}
    for fmt, path in paths.items():
        code, out = invoke("score", models / "chinchilla", path, "-o", tmp_path / f"{fmt}.parquet")
        assert code == 0, (fmt, out)
        scores[fmt] = pd.read_parquet(tmp_path / f"{fmt}.parquet")["pred_loss"].to_numpy()
    for fmt, values in scores.items():
        assert np.allclose(values, scores["yaml"]), fmt


# --- 3. extrapolation said out loud ---------------------------------------------------------------


def test_prediction_says_how_far_outside_the_training_runs(models, marin, tmp_path):
    code, out = invoke("predict", models / "xgb", "--candidate", EXAMPLES / "candidate.yaml")
    assert code == 0 and "outside" in out and "lie outside" not in out, out  # the 130M example is inside
    big = write(tmp_path / "big.yaml", candidate(**{"model.n_params": "1.2B"}))
    code, out = invoke("predict", models / "xgb", "--candidate", big, "--json")
    result = json.loads(out)
    assert result["outside_n_params"] == pytest.approx(np.log10(1.2e9 / marin["model.n_params"].max()))
    assert result["outside"] == result["outside_n_params"] and result["outside_tokens"] == 0
    code, out = invoke("predict", models / "xgb", "--candidate", big)
    assert (
        code == 0
        and "1 of 1 configs lie outside the training runs" in out
        and "N (non-embedding, active) up to 0.60" in out
    ), out
    code, out = invoke("score", models / "xgb", EXAMPLES / "sweep.csv", "-o", tmp_path / "scored.parquet")
    scored = pd.read_parquet(tmp_path / "scored.parquet")
    assert code == 0 and {"outside", "outside_lr", "outside_batch", "name"} <= set(scored.columns)
    assert (scored["outside"] == 0).all(), scored  # the example sweep stays inside the real runs


def test_model_saved_without_the_range_says_it_is_unknown(models, tmp_path):
    meta = json.loads((models / "xgb/predictor.json").read_text())
    (tmp_path / "old").mkdir()
    (tmp_path / "old/predictor.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "coverage"}))
    code, out = invoke("predict", tmp_path / "old", "--candidate", EXAMPLES / "candidate.yaml", "--json")
    assert code == 0 and json.loads(out)["outside"] is None, out
    code, out = invoke("predict", tmp_path / "old", "--candidate", EXAMPLES / "candidate.yaml")
    assert code == 0 and "training range of this model is unknown" in out, out


def test_tune_says_when_its_pick_is_outside_and_what_the_model_ignores(models, tmp_path):
    below = write(
        tmp_path / "space.yaml",
        {"batch.tokens": {"low": "16K", "high": "64K"}, "optimizer.lr": {"low": 1e-3, "high": 3e-2}},
    )
    code, out = invoke(
        "tune", models / "chinchilla", "--base", EXAMPLES / "candidate.yaml", "--space", below, "--n", 16
    )
    assert code == 0, out
    assert "chinchilla ignores batch.tokens, optimizer.lr" in out, out
    assert "the best pick: 1 of 1 configs lie outside the training runs" in out and "batch (tokens) up to" in out, out
    code, out = invoke(
        "tune",
        models / "xgb",
        "--base",
        EXAMPLES / "candidate.yaml",
        "--space",
        EXAMPLES / "space.yaml",
        "--n",
        16,
        "--top",
        3,
    )
    assert code == 0 and "ignores" not in out, out


def test_tune_runs_says_when_none_matched(models, tmp_path):
    base = write(tmp_path / "big.yaml", candidate(**{"model.n_params": "1B"}))
    code, out = invoke(
        "tune",
        models / "xgb",
        "--base",
        base,
        "--space",
        EXAMPLES / "space.yaml",
        "--n",
        16,
        "--plot",
        tmp_path / "map.png",
        "--runs",
        ROOT / "data/marin.parquet",
    )
    assert code == 0 and "no run of source marin at N = 1e+09" in out and (tmp_path / "map.png").exists(), out


# --- 4. progress and the work folder --------------------------------------------------------------


def test_progress_lines_without_a_terminal():
    from ncpl.regressor.heartbeat import Heartbeat

    lines = []
    items = list(Heartbeat(range(5), "stage 1 epoch 1/2", 5, lines.append, seconds=0.0, tty=False))
    assert items == list(range(5)) and len(lines) == 5
    assert re.fullmatch(r"stage 1 epoch 1/2: 5/5 batches, [\d.]+ batch/s, ETA 0s", lines[-1]), lines


@pytest.fixture(scope="module")
def tiny_ncpl(marin, tmp_path_factory):
    base = tmp_path_factory.mktemp("ncpl")
    marin.to_parquet(base / "train.parquet")
    write(base / "tiny.yaml", tiny_training(1))
    result = runner.invoke(
        app,
        [
            "train",
            "--train",
            str(base / "train.parquet"),
            "--config",
            str(base / "tiny.yaml"),
            "-o",
            str(base / "model"),
        ],
    )
    return base, result.exit_code, result.output


def test_train_prints_batches_and_removes_its_work_folder(tiny_ncpl):
    base, code, out = tiny_ncpl
    assert code == 0, out
    assert re.search(r"stage 1 epoch 1/1: \d+/\d+ batches", out) and "validation: 1/1 batches" in out, out
    assert not (base / "model/work").exists() and (base / "model/train_log.jsonl").exists()
    assert predictors.load_predictor(base / "model").coverage_["ranges"]["marin"]["n_params"][1] == pytest.approx(
        np.log10(301989888)
    )


def test_keep_work_keeps_it(tiny_ncpl, tmp_path):
    base, _, _ = tiny_ncpl
    code, out = invoke(
        "train", "--train", base / "train.parquet", "--config", base / "tiny.yaml", "-o", tmp_path / "m", "--keep-work"
    )
    assert code == 0 and (tmp_path / "m/work/checkpoint").exists(), out


# --- 5. the README's quickstart on the shipped examples --------------------------------------------


def test_readme_quickstart_runs_on_the_examples_before_the_benchmarks(tiny_ncpl, tmp_path):
    readme = (ROOT / "README.md").read_text()
    quick = readme.index("## Quickstart")
    assert quick < readme.index("| test | source | predictor |")  # before the first benchmark table
    for name in (
        "examples/candidate.yaml",
        "examples/sweep.csv",
        "examples/space.yaml",
        ".venv/bin/ncpl",
        "source .venv/bin/activate",
    ):
        assert name in readme[quick:], name
    model = tiny_ncpl[0] / "model"  # an NCPL model, as the README's runs/default/ncpl
    for args in (
        ["predict", model, "--candidate", EXAMPLES / "candidate.yaml", "--curve"],
        ["score", model, EXAMPLES / "sweep.csv", "-o", tmp_path / "scored.parquet"],
        ["tune", model, "--base", EXAMPLES / "candidate.yaml", "--space", EXAMPLES / "space.yaml", "--n", 16],
    ):
        code, out = invoke(*args)
        assert code == 0 and "error" not in out, (args[0], out)
        if args[0] == "score":
            assert f"scoring in {resolve('auto')}" in out  # the dtype `auto` chose on this CPU


# --- 6. the small things --------------------------------------------------------------------------


def test_rows_are_named_by_file_line_as_in_data_import(models, tmp_path):
    sweep = pd.read_csv(EXAMPLES / "sweep.csv")
    sweep.loc[3, "optimizer.lr"] = -1
    sweep.to_csv(tmp_path / "bad.csv", index=False)
    code, out = invoke("score", models / "xgb", tmp_path / "bad.csv", "-o", tmp_path / "o.parquet")
    assert code == 2 and "bad.csv:5: " in out, out  # line 1 is the header: data row 3 (0-based) is line 5


def test_help_shows_plain_flags():
    for command in (["score", "--help"], ["data", "import", "--help"], ["predict", "--help"], ["train", "--help"]):
        code, out = invoke(*command)
        assert code == 0 and "<bool>" not in out and "--" in out, out


def test_curve_ends_at_the_final_loss_prediction(tiny_ncpl):
    base, code, _ = tiny_ncpl
    code, out = invoke("predict", base / "model", "--candidate", EXAMPLES / "candidate.yaml", "--curve", "--json")
    result = json.loads(out)
    assert result["curve"]["fraction"][-1] == 1.0 and result["curve"]["loss"][-1] == result["pred_loss"], out


def test_candidate_option_and_deprecated_config_alias(models):
    code, new = invoke("predict", models / "xgb", "--candidate", EXAMPLES / "candidate.yaml", "--json")
    code_old, old = invoke("predict", models / "xgb", "--config", EXAMPLES / "candidate.yaml")
    assert code == code_old == 0 and "deprecated; use --candidate" in old
    assert f"{json.loads(new)['pred_loss']:.4f}" in old
