"""The temporal loss-curve law on a real Gemstones curve, and `ncpl extrapolate` end to end."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ncpl.cli import app
from ncpl.errors import ConfigError
from ncpl.laws.temporal import PowerLaw, TemporalLaw
from ncpl.store import read_runs

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(scope="module")
def curve():
    """A constant-lr Gemstones curve to 350B tokens (the largest shape) and its first 20%."""
    runs = read_runs(ROOT / "data/gemstones.parquet")
    row = runs[runs["run_id"] == "gemstones/hot_100b+_477/PyGemma-1024x28_pretrain"].iloc[0]
    tokens, loss = np.asarray(row["curve_tokens"], float), np.asarray(row["curve_loss"], float)
    return tokens, loss, tokens <= 0.2 * tokens[-1]


def test_forecast_from_a_fifth_of_the_curve(curve):
    tokens, loss, seen = curve
    temporal = TemporalLaw().fit(tokens[seen], loss[seen])
    power = PowerLaw().fit(tokens[seen], loss[seen])
    temporal_error = abs(temporal.predict(tokens[-1:])[0] - loss[-1])
    power_error = abs(power.predict(tokens[-1:])[0] - loss[-1])
    assert temporal_error < 0.025
    assert temporal_error <= power_error + 1e-3
    later = np.abs(temporal.predict(tokens[~seen]) - loss[~seen]).mean()
    assert later < 0.025


def test_bad_curves_are_named():
    with pytest.raises(ConfigError, match="loss: nan at point 3"):
        TemporalLaw().fit([1e9, 2e9, 3e9, 4e9, 5e9, 6e9], [4, 3.5, np.nan, 3.2, 3.1, 3.0])
    with pytest.raises(ConfigError, match="tokens: not increasing at point 3"):
        PowerLaw().fit([1e9, 2e9, 2e9, 4e9], [4, 3.5, 3.4, 3.2])
    with pytest.raises(ConfigError, match="at least 6"):
        TemporalLaw().fit([1e9, 2e9, 3e9], [4, 3.5, 3.4])


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def test_cli_json_and_plot(curve, tmp_path):
    tokens, loss, seen = curve
    path = tmp_path / "curve.csv"
    pd.DataFrame({"tokens": tokens[seen], "loss": loss[seen]}).to_csv(path, index=False)
    code, out = invoke("extrapolate", path, "--until", "350B", "--json", "--plot", tmp_path / "forecast.png")
    assert code == 0, out
    result = json.loads(out)  # exactly one JSON object, nothing else on stdout
    assert set(result) == {"tokens", "loss"} and len(result["tokens"]) == len(result["loss"]) > 1
    assert result["tokens"][-1] == pytest.approx(350e9) and result["tokens"][0] > tokens[seen][-1]
    assert abs(result["loss"][-1] - loss[-1]) < 0.03
    assert (tmp_path / "forecast.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    jsonl = tmp_path / "curve.jsonl"
    pd.DataFrame({"tokens": tokens[seen], "loss": loss[seen]}).to_json(jsonl, orient="records", lines=True)
    code, out = invoke("extrapolate", jsonl, "--until", "1e11", "--law", "power")
    assert code == 0 and "forecast loss" in out, out


def test_cli_bad_input(tmp_path):
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("tokens,val_loss\n1e9,4\n")
    code, out = invoke("extrapolate", wrong, "--until", "1e10")
    assert code == 2 and "wrong.csv" in out and "column 'loss' is missing" in out
    holes = tmp_path / "holes.csv"
    holes.write_text("tokens,loss\n1e9,4\n2e9,\n")
    code, out = invoke("extrapolate", holes, "--until", "1e10")
    assert code == 2 and "column 'loss'" in out and "row 2" in out
    code, out = invoke("extrapolate", tmp_path / "missing.csv", "--until", "1e10")
    assert code == 2 and "missing.csv" in out and "not found" in out
    code, out = invoke("extrapolate", holes, "--until", "1e10", "--law", "cubic")
    assert code == 2 and "--law" in out


def test_cli_missing_curve_files_are_named(tmp_path):
    code, out = invoke("extrapolate", tmp_path / "missing.csv")
    assert code == 2 and f"curve: {tmp_path / 'missing.csv'}: curve file not found" in out, out
    prefix = tmp_path / "prefix.csv"
    prefix.write_text("tokens,loss\n1e9,4\n2e9,3.9\n")
    code, out = invoke("extrapolate", prefix, "--fit-on", tmp_path / "other.csv")
    assert code == 2 and f"--fit-on: {tmp_path / 'other.csv'}: curve file not found" in out, out
