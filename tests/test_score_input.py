"""What `ncpl score` reads from a sweep file and keeps: cells as written, the right line in an error, one model per job.

Unit tests: no ../shared/data; the model is a made-up Chinchilla law and the sweeps are small made-up rows, not runs.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from ncpl import predictors
from ncpl.cli import app
from ncpl.errors import DataError
from ncpl.predictors.chinchilla import ChinchillaLaw
from ncpl.scoring import model_identity, parts_folder, score_file

ROW = {"source": "made-up", "model.n_params": 1e8, "data.tokens": 2e9}  # a made-up config, not a run


def law_dir(directory, E=1.7):
    """A Chinchilla law with made-up constants (not fitted), saved to `directory`."""
    model = predictors.create("chinchilla")
    model.laws_ = {"made-up": ChinchillaLaw(E=E, A=400.0, alpha=0.34, B=410.0, beta=0.28)}
    return model.save(directory)


def score(model, sweep, output, *options):
    return CliRunner().invoke(app, ["score", str(model), str(sweep), "-o", str(output), *options])


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_column_of_another_type_in_a_later_chunk_is_merged_as_text(suffix, tmp_path):
    """Before: the merge of the parts (after all the scoring) failed with pyarrow's ArrowTypeError, as did --resume."""
    rows = [
        {
            "name": f"r{i}",
            **ROW,
            "model.n_params": 1e8 if i < 4 else "100M",
            **({"extra.note": "late"} if i > 4 else {}),
        }
        for i in range(10)
    ]  # chunks of 4: extra.note empty (CSV) or absent (JSONL), then text; N a number, then `100M`
    sweep = tmp_path / f"sweep{suffix}"
    if suffix == ".csv":
        pd.DataFrame(rows).to_csv(sweep, index=False)
    else:
        sweep.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = score(law_dir(tmp_path / "law"), sweep, tmp_path / "out.parquet", "--batch-size", "4")
    assert result.exit_code == 0, result.output
    scored = pd.read_parquet(tmp_path / "out.parquet")
    assert list(scored["name"]) == [f"r{i}" for i in range(10)]
    assert scored["extra.note"].isna().sum() == 5 and (scored["extra.note"][5:] == "late").all()
    assert list(scored["model.n_params"][3:5]) == ["100000000", "100M"]
    assert np.allclose(scored["pred_loss"], scored["pred_loss"][0])


def test_a_resume_with_another_model_or_dtype_is_refused(tmp_path):
    """Before: job.json named only the sweep and the batch size; a resume with another model mixed two models."""
    sweep, output = tmp_path / "sweep.csv", tmp_path / "out.parquet"
    pd.DataFrame([ROW] * 6).to_csv(sweep, index=False)
    first, other = law_dir(tmp_path / "first"), law_dir(tmp_path / "other", E=2.5)

    def killed(rows):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        model = predictors.load_predictor(first)
        score_file(model, sweep, output, batch_size=2, on_chunk=killed, model_id=model_identity(first, None))
    result = score(other, sweep, output, "--batch-size", "2", "--resume")
    assert result.exit_code == 2 and "another job (model " in result.output and "model_sha256 " in result.output
    assert "model directory and dtype that job.json records" in result.output
    result = score(first, sweep, output, "--batch-size", "2", "--resume")
    assert result.exit_code == 0, result.output
    assert np.allclose(
        pd.read_parquet(output)["pred_loss"], predictors.load_predictor(first).predict(pd.DataFrame([ROW] * 6))
    )

    parts_folder(tmp_path / "ncpl.parquet", False, sweep, 2, model_identity(first, "fp32"))
    with pytest.raises(DataError, match="dtype 'fp32' -> 'bf16'"):
        parts_folder(tmp_path / "ncpl.parquet", True, sweep, 2, model_identity(first, "bf16"))


def test_an_explicit_schedule_scores_as_it_predicts(tmp_path):
    """Before: the sweep's schedule_lr was left out of the configs validated, so `schedule.name: explicit` was
    refused as lacking schedule.lr; `ncpl predict` took the same config."""
    config = {
        "source": "made-up",
        "model": {"n_params": 1e8},
        "data": {"tokens": 2e9},
        "schedule": {"name": "explicit", "lr": [0.001, 0.01, 0.005]},
    }
    model = law_dir(tmp_path / "law")
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump([config]))
    (tmp_path / "one.yaml").write_text(yaml.safe_dump(config))
    csv = {**ROW, "schedule.name": "explicit", "schedule_lr": "[0.001, 0.01, 0.005]"}
    pd.DataFrame([csv, ROW]).to_csv(tmp_path / "sweep.csv", index=False)
    predicted = json.loads(
        CliRunner().invoke(app, ["predict", str(model), "--candidate", str(tmp_path / "one.yaml"), "--json"]).output
    )
    for sweep in ("sweep.yaml", "sweep.csv"):
        result = score(model, tmp_path / sweep, tmp_path / "out.parquet")
        assert result.exit_code == 0, result.output
        scored = pd.read_parquet(tmp_path / "out.parquet")
        assert scored["pred_loss"][0] == pytest.approx(predicted["pred_loss"])
        lrs = scored["schedule_lr"][0]  # a CSV's cell is kept as written
        assert list(json.loads(lrs) if isinstance(lrs, str) else lrs) == [0.001, 0.01, 0.005]


def test_csv_columns_other_than_config_fields_are_kept_as_written(tmp_path):
    """Before: pandas guessed types, so the id `007` came back as 7 and the note `1e3` as 1000.0."""
    rows = [{"name": "007", "note": "1e3", **ROW}, {"name": "010", "note": "x", **ROW}]
    pd.DataFrame(rows).to_csv(tmp_path / "sweep.csv", index=False)
    result = score(law_dir(tmp_path / "law"), tmp_path / "sweep.csv", tmp_path / "out.parquet")
    assert result.exit_code == 0, result.output
    scored = pd.read_parquet(tmp_path / "out.parquet")
    assert list(scored["name"]) == ["007", "010"] and list(scored["note"]) == ["1e3", "x"]
    # a runs file's own columns keep their types, and its ids their text
    rows = [{"run_id": "007", "other_loss.c4": 3.25, "meta.multiple": 20, **ROW}]
    pd.DataFrame(rows).to_csv(tmp_path / "runs.csv", index=False)
    assert score(law_dir(tmp_path / "law"), tmp_path / "runs.csv", tmp_path / "runs.parquet").exit_code == 0
    scored = pd.read_parquet(tmp_path / "runs.parquet")
    assert scored["run_id"][0] == "007" and scored["other_loss.c4"][0] == 3.25 and scored["meta.multiple"][0] == 20


def test_an_error_is_printed_as_text_not_markup(tmp_path):
    """Before: Rich read `[old]` in a file name as a tag and dropped it, and `[/adamw]` raised its MarkupError."""
    model = law_dir(tmp_path / "law")
    pd.DataFrame([{**ROW, "model.n_params": -1}]).to_csv(tmp_path / "sweep[old].csv", index=False)
    result = score(model, tmp_path / "sweep[old].csv", tmp_path / "out.parquet")
    assert result.exit_code == 2 and "sweep[old].csv:2: " in result.output
    pd.DataFrame([{**ROW, "optimizer.name": "[/adamw]"}]).to_csv(tmp_path / "sweep.csv", index=False)
    result = score(model, tmp_path / "sweep.csv", tmp_path / "out.parquet")
    assert result.exit_code == 2 and "unknown optimizer '[/adamw]'" in result.output
    pd.DataFrame([ROW]).to_csv(tmp_path / "sweep.csv", index=False)
    result = score(model, tmp_path / "sweep.csv", tmp_path / "out[new].parquet")  # and what it says when it works
    assert result.exit_code == 0 and "out[new].parquet" in result.output.replace("\n", ""), result.output


def test_scoring_a_scored_file_is_refused_naming_the_columns(tmp_path):
    """Before: the part file's write failed on pyarrow's `Duplicate column names found`."""
    model = law_dir(tmp_path / "law")
    pd.DataFrame([ROW]).to_csv(tmp_path / "sweep.csv", index=False)
    assert score(model, tmp_path / "sweep.csv", tmp_path / "scored.parquet").exit_code == 0
    result = score(model, tmp_path / "scored.parquet", tmp_path / "again.parquet")
    assert result.exit_code == 2, result.output
    assert "has the columns pred_loss, outside" in result.output and "score the original sweep" in result.output


def test_a_bad_row_is_named_by_its_line(tmp_path):
    """Before: a CSV's blank line shifted the lines after it by one, and JSONL named the first line of the chunk pandas
    failed to parse rather than the bad line."""
    model, good = predictors.load_predictor(law_dir(tmp_path / "law")), json.dumps(ROW)
    (tmp_path / "blank.csv").write_text("source,model.n_params,data.tokens\nmade-up,1e8,2e9\n\nmade-up,-1,2e9\n")
    with pytest.raises(DataError, match=r"blank\.csv:4: .*model\.n_params"):
        score_file(model, tmp_path / "blank.csv", tmp_path / "out.parquet")
    (tmp_path / "bad.jsonl").write_text(f"{good}\n{good}\n\n{good}\n{good}\n{{bad\n{good}\n")
    with pytest.raises(DataError, match=r"bad\.jsonl:6: cannot read the sweep from here on as JSONL \(not valid JSON"):
        score_file(model, tmp_path / "bad.jsonl", tmp_path / "out.parquet", batch_size=3)
    (tmp_path / "list.jsonl").write_text(f"{good}\n\n[1, 2]\n")
    with pytest.raises(DataError, match=r"list\.jsonl:3: .*expected a JSON object per line, got '\[1, 2\]'"):
        score_file(model, tmp_path / "list.jsonl", tmp_path / "out.parquet")


def test_predict_observed_gives_the_curves_end_as_the_final_loss(tmp_path):
    """Before: pred_loss was the law's unconditioned final loss while the curve, shifted to the observed points, ended
    elsewhere (3.1999 beside 3.3427)."""
    (tmp_path / "candidate.yaml").write_text(
        yaml.safe_dump({"source": "made-up", "model": {"n_params": 1e8}, "data": {"tokens": 2e9}})
    )
    pd.DataFrame({"tokens": [5e8, 1e9, 1.5e9], "loss": [4.2, 4.1, 4.05]}).to_csv(tmp_path / "seen.csv", index=False)
    command = ["predict", str(law_dir(tmp_path / "law")), "--candidate", str(tmp_path / "candidate.yaml"), "--json"]
    unconditioned = json.loads(CliRunner().invoke(app, command).output)["pred_loss"]
    result = json.loads(CliRunner().invoke(app, [*command, "--observed", str(tmp_path / "seen.csv")]).output)
    assert result["pred_loss"] == pytest.approx(result["curve"]["loss"][-1])
    assert result["pred_loss"] > unconditioned + 0.1  # the observed losses lie above the law's curve


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("header.csv", "source,model.n_params,data.tokens\n", "header.csv: no configs to score"),
        ("blank.csv", "source,model.n_params,data.tokens\nmade-up,,2e9\n", "blank.csv:2: model.n_params: empty"),
        (
            "nested.jsonl",
            '{"source": "made-up", "model": {"n_params": 1e8}, "data": {"tokens": 2e9}}\n',
            "nested.jsonl: model, data: a nested object; a sweep's rows are flat",
        ),
    ],
)
def test_a_sweep_without_rows_with_a_blank_needed_field_or_nested_rows_is_named(name, text, message, tmp_path):
    """Before: `configs: no column 'source', ...` for a header with those columns, and `model: required field is
    missing` for a blank model.n_params and for nested rows."""
    (tmp_path / name).write_text(text)
    result = score(law_dir(tmp_path / "law"), tmp_path / name, tmp_path / "out.parquet")
    assert result.exit_code == 2 and message in result.output.replace("\n", ""), result.output


def test_a_bad_schedule_lr_cell_or_a_missing_column_is_named(tmp_path):
    """Before: a schedule_lr cell that is not JSON was named by its chunk's first line, without the column; a sweep
    without a data.tokens column was told `data.tokens: empty` at its first row."""
    model = law_dir(tmp_path / "law")
    good = {**ROW, "schedule.name": "explicit", "schedule_lr": "[0.001, 0.01]"}
    pd.DataFrame([good, {**good, "schedule_lr": "[0.001, 0.01"}]).to_csv(tmp_path / "lr.csv", index=False)
    result = score(model, tmp_path / "lr.csv", tmp_path / "out.parquet")
    assert result.exit_code == 2 and "lr.csv:3: schedule_lr: not a JSON list" in result.output, result.output
    pd.DataFrame([ROW]).drop(columns="data.tokens").to_csv(tmp_path / "no.csv", index=False)
    result = score(model, tmp_path / "no.csv", tmp_path / "out.parquet")
    assert result.exit_code == 2 and "no.csv: no column data.tokens; every config needs" in result.output


def test_a_job_started_before_the_model_was_recorded_resumes(tmp_path):
    """A job.json of an earlier version holds only the sweep and the batch size: resuming it is not refused."""
    pd.DataFrame([ROW, ROW]).to_csv(tmp_path / "sweep.csv", index=False)
    parts = parts_folder(tmp_path / "out.parquet", False, tmp_path / "sweep.csv", 1)  # no model_id: as before
    again = parts_folder(tmp_path / "out.parquet", True, tmp_path / "sweep.csv", 1, model_identity(tmp_path, None))
    assert again == parts
    with pytest.raises(DataError, match=r"\(batch_size 1 -> 2\); resume with .* that job.json records"):
        parts_folder(tmp_path / "out.parquet", True, tmp_path / "sweep.csv", 2, model_identity(tmp_path, None))
