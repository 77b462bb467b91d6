"""predict and score on real runs: every row and column kept, atomic output, resume after a kill, bad rows named."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ncpl import predictors, schema
from ncpl.cli import app
from ncpl.errors import DataError
from ncpl.scoring import merge_parts, parts_folder, score_file
from ncpl.sources import import_runs
from ncpl.store import to_frame
from ncpl.validation import validate


@pytest.fixture(scope="module")
def sweep(shared):
    return to_frame(import_runs("steplaw", [shared / "steplaw/dense_lr_bs_loss.csv"]).records).head(250)


@pytest.fixture(scope="module")
def model_dir(sweep, tmp_path_factory):
    directory = tmp_path_factory.mktemp("model")
    predictors.create("xgboost-residual", n_estimators=40).fit(sweep[~sweep["diverged"]]).save(directory)
    return directory


def test_score_keeps_rows_and_columns(sweep, model_dir, tmp_path):
    sweep.drop(columns=["curve_tokens", "curve_loss"], errors="ignore").to_csv(tmp_path / "sweep.csv", index=False)
    result = CliRunner().invoke(
        app,
        [
            "score",
            str(model_dir),
            str(tmp_path / "sweep.csv"),
            "-o",
            str(tmp_path / "out.parquet"),
            "--batch-size",
            "64",
        ],
    )
    assert result.exit_code == 0, result.output
    scored = pd.read_parquet(tmp_path / "out.parquet")
    assert len(scored) == len(sweep) and list(scored["run_id"]) == list(sweep["run_id"])
    assert set(sweep.columns) - {"curve_tokens", "curve_loss"} < set(scored.columns) and "pred_loss" in scored
    expected = predictors.load_predictor(model_dir).predict(sweep)
    assert np.allclose(scored["pred_loss"], expected)
    assert not (tmp_path / "out.parquet.parts").exists()


def test_ranks_in_any_order_lose_no_rows(sweep, model_dir, tmp_path):
    """Rank 1 finishing before rank 0 starts: its parts survive, since the folder is cleared once, up front."""
    sweep.to_parquet(tmp_path / "sweep.parquet", index=False)
    model, output = predictors.load_predictor(model_dir), tmp_path / "out.parquet"
    parts_folder(output, resume=False, sweep=tmp_path / "sweep.parquet", batch_size=50)
    for rank in (1, 0):
        parts = score_file(model, tmp_path / "sweep.parquet", output, batch_size=50, resume=True, rank=rank, world=2)
    assert merge_parts(parts, output) == len(sweep)
    assert list(pd.read_parquet(output)["run_id"]) == list(sweep["run_id"])


def test_killed_score_leaves_no_output_and_resumes_to_the_same_result(sweep, model_dir, tmp_path):
    sweep.to_parquet(tmp_path / "sweep.parquet", index=False)
    model = predictors.load_predictor(model_dir)
    straight = tmp_path / "straight.parquet"
    merge_parts(score_file(model, tmp_path / "sweep.parquet", straight, batch_size=50), straight)

    calls = []

    def killed_after_two_chunks(rows):
        calls.append(rows)
        if len(calls) == 2:
            raise KeyboardInterrupt

    output = tmp_path / "resumed.parquet"
    with pytest.raises(KeyboardInterrupt):
        score_file(model, tmp_path / "sweep.parquet", output, batch_size=50, on_chunk=killed_after_two_chunks)
    assert not output.exists() and len(list((tmp_path / "resumed.parquet.parts").glob("part-*.parquet"))) == 2
    with pytest.raises(DataError, match="--resume: .* holds the parts of another job .*batch_size 50 -> 40"):
        score_file(model, tmp_path / "sweep.parquet", output, batch_size=40, resume=True)  # parts of other rows
    merge_parts(score_file(model, tmp_path / "sweep.parquet", output, batch_size=50, resume=True), output)
    pd.testing.assert_frame_equal(pd.read_parquet(output), pd.read_parquet(straight))


def test_bad_row_is_named(sweep, model_dir, tmp_path):
    bad = sweep.copy()
    bad.loc[bad.index[7], "optimizer.lr"] = -3.0
    bad.to_parquet(tmp_path / "bad.parquet", index=False)
    with pytest.raises(DataError, match=r"bad\.parquet:8: .*optimizer\.lr"):
        score_file(
            predictors.load_predictor(model_dir), tmp_path / "bad.parquet", tmp_path / "out.parquet", batch_size=5
        )


def test_predict_command_and_python_api(sweep, model_dir, tmp_path):
    import ncpl

    record = validate(schema.RunRecord, {**schema.RunRecord.from_flat(sweep.iloc[0].to_dict()).model_dump()})
    schema.save(record.config, tmp_path / "candidate.yaml")
    result = CliRunner().invoke(
        app, ["predict", str(model_dir), "--candidate", str(tmp_path / "candidate.yaml"), "--json"]
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    assert answer["pred_loss"] == pytest.approx(float(ncpl.load(model_dir).predict(record.config)[0]))
    law = predictors.create("chinchilla").fit(sweep[~sweep["diverged"]])
    law.save(tmp_path / "law")
    result = CliRunner().invoke(
        app, ["predict", str(tmp_path / "law"), "--candidate", str(tmp_path / "candidate.yaml"), "--curve", "--json"]
    )
    curve = json.loads(result.output)["curve"]
    assert len(curve["loss"]) == 10 and curve["loss"] == sorted(curve["loss"], reverse=True)
    (tmp_path / "broken.yaml").write_text("source: steplaw\nmodel: {n_params: 1e8}\n")
    result = CliRunner().invoke(app, ["predict", str(model_dir), "--candidate", str(tmp_path / "broken.yaml")])
    assert result.exit_code == 2 and "data" in result.output and "required" in result.output


@pytest.fixture(scope="module")
def ncpl_dir(sweep, tmp_path_factory):
    """An untrained tiny NCPL: its `auto` dtype is settled once for every rank."""
    from ncpl.regressor.predictor import NCPL
    from ncpl.regressor.train_config import TrainConfig

    directory = tmp_path_factory.mktemp("ncpl")
    config = TrainConfig(
        backbone="tiny-encoder", members=1, stage1={"epochs": 0, "lr": 1e-3}, stage2={"epochs": 0, "lr": 1e-3}
    )
    NCPL(config).fit(sweep[~sweep["diverged"]]).save(directory)
    return directory


@pytest.mark.parametrize("kind", ["xgboost-residual", "ncpl"])
def test_two_processes_score_like_one(sweep, model_dir, ncpl_dir, kind, tmp_path):
    """Under accelerate launch the ranks score alternate chunks; the merged file is the single-process one."""
    from processes import launch_two_cpu_processes

    model_dir = ncpl_dir if kind == "ncpl" else model_dir

    sweep.to_parquet(tmp_path / "sweep.parquet", index=False)
    args = [
        "score",
        str(model_dir),
        str(tmp_path / "sweep.parquet"),
        "--batch-size",
        "40",
    ]  # 7 chunks: 4 on rank 0, 3 on rank 1
    result = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "one.parquet")])
    assert result.exit_code == 0, result.output
    launched = launch_two_cpu_processes("-m", "ncpl.cli", *args, "-o", str(tmp_path / "two.parquet"))
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    assert launched.stdout.count("scored 250 configs") == 1  # only the main process merges and reports
    two = pd.read_parquet(tmp_path / "two.parquet")
    assert list(two["run_id"]) == list(sweep["run_id"])
    pd.testing.assert_frame_equal(two, pd.read_parquet(tmp_path / "one.parquet"))
    assert not (tmp_path / "two.parquet.parts").exists()
