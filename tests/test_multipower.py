"""The Multi-Power data: importer against the raw files, the bundled copy, and the rebuilt per-step lr."""

import numpy as np
import pandas as pd
import pytest

from ncpl.schedules import config_lrs
from ncpl.sources import ImportFailed, import_runs
from ncpl.store import read_runs, to_records


def test_import_matches_files_and_bundle(shared):
    folder = shared / "multipower"
    result = import_runs("multipower", [folder])
    assert len(result.records) == 18 and not result.skipped
    records = {r.run_id: r for r in result.records}
    raw = pd.read_csv(folder / "csv_100/wsdcon_3.csv")
    record = records["multipower/100M/wsdcon_3"]
    assert record.curve.loss == raw["loss"].tolist() and record.final_loss == raw["loss"].iloc[-1]
    assert record.config.schedule.stage_lr_ratios == [pytest.approx(0.1)] and record.config.extra["tokens_are_steps"]
    lrs = config_lrs(record.config)
    assert len(lrs) == 16000 and np.allclose(lrs[raw["step"]], raw["lr"], rtol=0, atol=1e-12)
    bundled = {r.run_id: r for r in to_records(read_runs("data/multipower.parquet"))}
    assert bundled.keys() == records.keys()
    assert bundled["multipower/25M/wsd_20000_24000"] == records["multipower/25M/wsd_20000_24000"]


def test_every_bundled_schedule_rebuilds_its_lr_column(shared):
    for record in to_records(read_runs("data/multipower.parquet")):
        size = record.run_id.split("/")[1].removesuffix("M")
        raw = pd.read_csv(shared / f"multipower/csv_{size}/{record.meta['schedule_file']}.csv")
        lrs = config_lrs(record.config, int(raw["step"].max()) + 1)
        assert np.abs(lrs[raw["step"]] - raw["lr"]).max() < 1e-12, record.run_id


def test_unknown_schedule_file_is_named(tmp_path):
    folder = tmp_path / "csv_25"
    folder.mkdir()
    pd.DataFrame({"step": [1, 2], "lr": [1e-4, 1e-4], "loss": [4.0, 3.9]}).to_csv(folder / "sqrt_100.csv", index=False)
    with pytest.raises(ImportFailed, match="sqrt_100.csv: file name 'sqrt_100'"):
        import_runs("multipower", [folder])


def test_a_blank_lr_is_named(tmp_path):
    folder = tmp_path / "csv_25"
    folder.mkdir()
    (folder / "constant_24000.csv").write_text("step,lr,loss\n2160,0.0003,4.11\n2288,,4.03\n")
    with pytest.raises(ImportFailed, match="constant_24000.csv: lr: nan at line 3"):
        import_runs("multipower", [folder])
