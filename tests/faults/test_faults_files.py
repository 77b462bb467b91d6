"""Damaged files: a truncated or corrupted Parquet input, an incomplete or corrupted model directory.

Each fault must end in exit code 2 and one message that names the file and says how to fix it,
never a raw traceback, and must leave no output behind.
"""

import json
import shutil

import pytest
from faultkit import ncpl
from typer.testing import CliRunner

from ncpl import predictors
from ncpl.cli import app
from ncpl.errors import DataError
from ncpl.scoring import score_file
from ncpl.store import read_runs

UNREADABLE = "not a readable Parquet file"
REEXPORT = "re-export it"


@pytest.fixture(scope="module")
def truncated(tmp_path_factory, write_sweep):
    """The bundled Marin runs cut to half their bytes, and a sweep cut the same way."""
    from faultkit import ROOT

    folder = tmp_path_factory.mktemp("truncated")
    data = (ROOT / "data/marin.parquet").read_bytes()
    (folder / "runs.parquet").write_bytes(data[: len(data) // 2])
    sweep = write_sweep(folder / "full-sweep.parquet", 2000).read_bytes()
    (folder / "sweep.parquet").write_bytes(sweep[: len(sweep) // 2])
    return folder


def test_truncated_runs_file_read_runs_and_data_show(truncated):
    with pytest.raises(DataError) as error:
        read_runs(truncated / "runs.parquet")
    assert (
        str(truncated / "runs.parquet") in str(error.value)
        and UNREADABLE in str(error.value)
        and REEXPORT in str(error.value)
    )
    result = CliRunner().invoke(app, ["data", "show", str(truncated / "runs.parquet")])
    assert result.exit_code == 2, result.output
    flat = " ".join(result.output.split())
    assert "runs.parquet: not a readable Parquet file" in flat and REEXPORT in flat and "Traceback" not in flat


def test_truncated_sweep_score_file(truncated, tiny_model, tmp_path):
    with pytest.raises(DataError, match=f"sweep.parquet: {UNREADABLE}.*{REEXPORT}"):
        score_file(
            predictors.load_predictor(tiny_model), truncated / "sweep.parquet", tmp_path / "out.parquet", batch_size=100
        )
    assert not (tmp_path / "out.parquet").exists()


def test_truncated_sweep_ncpl_score(truncated, tiny_model, tmp_path):
    result = ncpl("score", tiny_model, truncated / "sweep.parquet", "-o", tmp_path / "out.parquet")
    flat = " ".join(result.stdout.split())
    assert result.returncode == 2 and f"sweep.parquet: {UNREADABLE}" in flat and REEXPORT in flat, result.stdout[-2000:]
    assert "Traceback" not in result.stdout and not (tmp_path / "out.parquet").exists()


def test_sweep_damaged_in_the_middle_names_the_file_and_writes_no_output(tiny_model, write_sweep, tmp_path):
    """Footer intact, a data page overwritten: the failure comes mid-stream, after parts were written."""
    import pyarrow.parquet as pq

    sweep = write_sweep(tmp_path / "sweep.parquet", 3000, chunk=500)
    metadata = pq.ParquetFile(sweep).metadata
    group = metadata.row_group(4)  # rows 2000..2499
    column = next(group.column(i) for i in range(group.num_columns) if group.column(i).path_in_schema == "optimizer.lr")
    data = bytearray(sweep.read_bytes())
    start = column.data_page_offset
    data[start : start + column.total_compressed_size] = b"\xff" * column.total_compressed_size
    sweep.write_bytes(bytes(data))
    output = tmp_path / "out.parquet"
    with pytest.raises(DataError) as error:
        score_file(predictors.load_predictor(tiny_model), sweep, output, batch_size=500)
    assert str(sweep) in str(error.value) and (UNREADABLE in str(error.value)) and REEXPORT in str(error.value)
    assert not output.exists()
    assert (
        len(list((tmp_path / "out.parquet.parts").glob("part-*.parquet"))) == 4
    )  # rows before the damage, kept for --resume


def _damage(directory, fault):
    if fault == "weights missing":
        (directory / "model.safetensors").unlink()
        return "model.safetensors: weights file missing", "re-run `ncpl train`"
    if fault == "weights corrupted":
        (directory / "model.safetensors").write_bytes(b"\x00" * 100)
        return "model.safetensors: cannot read the weights", "re-run `ncpl train`"
    if fault == "backbone config missing":
        shutil.rmtree(directory / "backbone")
        return "backbone/config.json: backbone config missing", "re-run `ncpl train`"
    if fault == "predictor.json missing":
        (directory / "predictor.json").unlink()
        return "predictor.json not found", "`ncpl fit` or `ncpl train`"
    if fault == "predictor.json truncated":
        text = (directory / "predictor.json").read_text()
        (directory / "predictor.json").write_text(text[: len(text) // 2])
        return "predictor.json: corrupted predictor file", "re-create it with `ncpl fit` or `ncpl train`"
    if fault == "predictor.json without its state fields":
        (directory / "predictor.json").write_text(
            json.dumps({"predictor": "ncpl", "state": {"backbone": "tiny-decoder"}})
        )
        return "predictor.json: corrupted predictor file", "re-create it with `ncpl fit` or `ncpl train`"
    raise AssertionError(fault)


FAULTS = [
    "weights missing",
    "weights corrupted",
    "backbone config missing",
    "predictor.json missing",
    "predictor.json truncated",
    "predictor.json without its state fields",
]


@pytest.mark.parametrize("fault", FAULTS)
def test_damaged_model_directory(fault, tiny_model, write_sweep, tmp_path):
    directory = tmp_path / "model"
    shutil.copytree(tiny_model, directory)
    names, fix = _damage(directory, fault)
    sweep = write_sweep(tmp_path / "sweep.parquet", 10)
    result = CliRunner().invoke(app, ["score", str(directory), str(sweep), "-o", str(tmp_path / "out.parquet")])
    flat = " ".join(result.output.split())
    assert result.exit_code == 2 and names in flat and fix in flat, (result.exit_code, result.output, result.exception)
    assert not (tmp_path / "out.parquet").exists()
