"""The command line end to end on small real files."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from ncpl import predictors
from ncpl.cli import app
from ncpl.store import read_runs

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def test_import_show_split_fit(shared, tmp_path):
    code, out = invoke(
        "data", "import", "marin", shared / "marin/marin_sweep_runs.jsonl", "-o", tmp_path / "marin.parquet"
    )
    assert code == 0 and "1490 rows read" in out and "skipped" in out
    assert (
        len(read_runs(tmp_path / "marin.parquet")) == 1359 and f"wrote 1359 runs to {tmp_path / 'marin.parquet'}" in out
    )
    code, out = invoke(
        "data", "import", "gadre", shared / "mlfoundations_scaling/exp_data/models", "-o", tmp_path / "gadre.parquet"
    )
    assert code == 0 and "104 rows read, 104 kept" in out and len(read_runs(tmp_path / "gadre.parquet")) == 104, out
    code, out = invoke("data", "show", tmp_path / "marin.parquet", tmp_path / "gadre.parquet")
    assert code == 0 and "1463 runs" in out and "marin" in out and "gadre" in out
    header = next(line for line in out.splitlines() if "unstable" in line)
    marin_row = next(line for line in out.splitlines() if "│ marin" in line)
    column = [cell.strip() for cell in header.split("┃")].index("unstable")
    assert [cell.strip() for cell in marin_row.split("│")][
        column
    ] == "17"  # ncpl.unstable: Marin runs >= 1.08 nats above their group's best
    code, out = invoke(
        "data",
        "split",
        tmp_path / "marin.parquet",
        tmp_path / "gadre.parquet",
        "--ood-min-params",
        "3e8",
        "--id-frac",
        "0.15",
        "--seed",
        "0",
        "-o",
        tmp_path / "split",
    )
    assert code == 0, out
    parts = {name: read_runs(tmp_path / "split" / f"{name}.parquet") for name in ("train", "id", "ood")}
    assert sum(len(p) for p in parts.values()) == 1463
    assert all(f"{name}: {len(part)} runs" in out for name, part in parts.items()), (
        out
    )  # what it prints is what it wrote
    assert parts["ood"]["model.n_params"].min() >= 3e8 > parts["train"]["model.n_params"].max()
    code, out = invoke("fit", "chinchilla", "--train", tmp_path / "split/train.parquet", "-o", tmp_path / "law")
    assert code == 0 and "alpha" in out and f"chinchilla fitted on {len(parts['train'])} runs" in out, out
    state = json.loads((tmp_path / "law/predictor.json").read_text())
    assert set(state["state"]["laws"]) == {"marin", "gadre"}


def test_errors_are_reported_not_raised(tmp_path):
    code, out = invoke("data", "import", "steplaw", tmp_path / "missing.csv", "-o", tmp_path / "x.parquet")
    assert code == 2 and "file not found" in out
    code, out = invoke("fit", "chinchilla", "--train", tmp_path / "missing.parquet", "-o", tmp_path / "law")
    assert code == 2 and "not found" in out
    (tmp_path / "ood.txt").write_text("multipower/25M/typo\n")
    code, out = invoke("data", "split", "data/multipower.parquet", "--ood-runs", tmp_path / "ood.txt", "-o", tmp_path)
    assert code == 2 and "--ood-runs: 1 ids match no run (multipower/25M/typo)" in out, out


def test_eval_command(shared, tmp_path):
    code, out = invoke(
        "data", "import", "gadre", shared / "mlfoundations_scaling/exp_data/models", "-o", tmp_path / "gadre.parquet"
    )
    assert code == 0, out
    code, out = invoke("data", "split", tmp_path / "gadre.parquet", "--ood-min-params", "3e8", "-o", tmp_path / "split")
    assert code == 0, out
    code, out = invoke("fit", "chinchilla", "--train", tmp_path / "split/train.parquet", "-o", tmp_path / "law")
    assert code == 0 and (tmp_path / "law/predictor.json").exists(), out
    code, out = invoke(
        "eval",
        "--train",
        tmp_path / "split/train.parquet",
        "--test",
        f"ood={tmp_path / 'split/ood.parquet'}",
        "--models",
        f"xgboost,saved:{tmp_path / 'law'}",
        "-o",
        tmp_path / "report",
    )
    assert code == 0, out
    assert "| ood | gadre | saved |" in out and (tmp_path / "report/parity_xgboost_ood.png").exists()
    # the saved law is evaluated as saved (not refitted): its printed and written MAE are the loaded model's
    ood = read_runs(tmp_path / "split/ood.parquet")
    mae = np.abs(predictors.load_predictor(tmp_path / "law").predict(ood) - ood["final_loss"].to_numpy()).mean()
    assert f"| ood | gadre | saved | {len(ood)} | {mae:.4f} |" in out
    rows = {row["predictor"]: row for row in json.loads((tmp_path / "report/report.json").read_text())["accuracy"]}
    assert rows["saved"]["ok"]["mae"] == pytest.approx(mae) and rows["xgboost"]["ok"]["n"] == len(ood)
    assert f"| ood | gadre | saved | {len(ood)} | {mae:.4f} |" in (tmp_path / "report/report.md").read_text()
    code, out = invoke("eval", "--train", tmp_path / "split/train.parquet", "--test", "nonsense", "-o", tmp_path / "r2")
    assert code == 2 and "NAME=FILE" in out
