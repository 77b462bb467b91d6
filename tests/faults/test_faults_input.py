"""Bad input through the command line: a candidate config given to `ncpl predict --candidate`, and a sweep
with a few bad rows given to `ncpl score`. Exit code 2, the message names the field (and the row), and
nothing partial is written. (The Python-level validation of each field is in tests/test_schema.py.)
"""

import json

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from ncpl import predictors
from ncpl.cli import app

GOOD = {
    "source": "marin",
    "model": {"n_params": "134M", "d_model": 512, "n_layers": 32},
    "data": {"tokens": "2.7B"},
    "optimizer": {"name": "adamw", "lr": 0.008},
    "batch": {"tokens": 524288},
}


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("source: marin\nmodel: {n_params: [unclosed\n", ["not valid YAML"]),
        (yaml.safe_dump({**GOOD, "data": {}}), ["data.tokens", "required field is missing"]),
        (yaml.safe_dump(GOOD).replace("lr: 0.008", "lr: .nan"), ["optimizer.lr", "finite"]),
        (yaml.safe_dump(GOOD).replace("lr: 0.008", "lr: -0.008"), ["optimizer.lr", "greater than 0"]),
        (yaml.safe_dump(GOOD).replace("name: adamw", "name: adamq"), ["optimizer.name", "unknown optimizer 'adamq'"]),
        (yaml.safe_dump(GOOD).replace("n_layers: 32", "n_layers: thirty-two"), ["model.n_layers", "expected a number"]),
    ],
    ids=["malformed-yaml", "missing-field", "nan", "negative-lr", "unknown-optimizer", "wrong-type"],
)
def test_bad_candidate_config(text, fragments, tiny_model, tmp_path):
    path = tmp_path / "candidate.yaml"
    path.write_text(text)
    result = CliRunner().invoke(app, ["predict", str(tiny_model), "--candidate", str(path)])
    message = flat(result.output)
    assert result.exit_code == 2 and all(f in message for f in fragments) and "Traceback" not in message, result.output


def test_good_candidate_config_is_accepted(tiny_model, tmp_path):
    (tmp_path / "candidate.yaml").write_text(yaml.safe_dump(GOOD))
    result = CliRunner().invoke(
        app, ["predict", str(tiny_model), "--candidate", str(tmp_path / "candidate.yaml"), "--json"]
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)  # one JSON object, nothing else on stdout
    # the same config through the library
    expected = predictors.load_predictor(tiny_model).predict_details(GOOD).iloc[0]
    outside = {
        "outside",
        "outside_n_params",
        "outside_tokens",
        "outside_lr",
        "outside_batch",
    }  # beyond the training runs
    assert set(printed) == set(expected.index) == {"pred_loss", "pred_loss_lo", "pred_loss_hi", "p_diverge"} | outside
    assert all(printed[key] == pytest.approx(float(expected[key]), rel=1e-6, nan_ok=True) for key in printed), (
        printed,
        expected,
    )
    assert (
        2 < printed["pred_loss"] < 6 and 0 <= printed["p_diverge"] <= 1
    )  # a loss in nats for a 134M model, a probability


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_sweep_with_bad_rows_names_the_first_and_writes_nothing(fmt, tiny_model, write_sweep, tmp_path):
    sweep = pd.read_parquet(write_sweep(tmp_path / "good.parquet", 600))
    sweep.loc[437, "optimizer.lr"] = -1e-3  # in the third chunk of 200
    sweep.loc[512, "data.tokens"] = float("nan")
    sweep.loc[590, "optimizer.name"] = "adamq"
    path = tmp_path / f"bad.{fmt}"
    sweep.to_csv(path, index=False) if fmt == "csv" else sweep.to_parquet(path, index=False)
    output = tmp_path / "out.parquet"
    result = CliRunner().invoke(app, ["score", str(tiny_model), str(path), "-o", str(output), "--batch-size", "200"])
    message = flat(result.output)
    assert result.exit_code == 2, result.output
    place = {"csv": lambda row: f"bad.csv:{row + 2}: ", "parquet": lambda row: f"bad.parquet:{row + 1}: "}[
        fmt
    ]  # as data import
    assert place(437) in message and "optimizer.lr" in message and "greater than 0" in message, result.output
    assert not output.exists() and not list(tmp_path.glob(".out.parquet*"))  # no output file, whole or partial
    finished = sorted(p.name for p in (tmp_path / "out.parquet.parts").glob("part-*.parquet"))
    assert finished == ["part-000000.parquet", "part-000001.parquet"]  # only chunks that validated, for --resume
    sweep.loc[437, "optimizer.lr"] = 1e-3
    sweep.to_csv(path, index=False) if fmt == "csv" else sweep.to_parquet(path, index=False)
    result = CliRunner().invoke(
        app, ["score", str(tiny_model), str(path), "-o", str(output), "--batch-size", "200", "--resume"]
    )
    assert result.exit_code == 2 and place(512) in flat(result.output) and "data.tokens" in flat(result.output), (
        result.output
    )
    assert not output.exists()
