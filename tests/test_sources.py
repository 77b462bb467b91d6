"""Every importer on its real file: counts, values against the raw file, sane ranges."""

import json

import numpy as np
import pandas as pd
import pytest

from ncpl.errors import DataError
from ncpl.sources import ImportFailed, import_runs


def by_id(result):
    return {record.run_id: record for record in result.records}


def test_steplaw_dense(shared):
    path = shared / "steplaw/dense_lr_bs_loss.csv"
    result = import_runs("steplaw", [path])
    raw = pd.read_csv(path)
    assert len(result.records) == len(raw) == 1404 and result.rows_read == 1404 and not result.skipped
    records = by_id(result)
    for _, row in raw.sample(5, random_state=0).iterrows():
        record = records[row["exp_name"]]
        assert record.final_loss == pytest.approx(row["smooth loss"])
        assert record.config.model.n_params == row["N"] and record.config.data.tokens == row["D"]
        assert record.config.optimizer.lr == pytest.approx(row["lr"]) and record.config.batch.tokens == row["bs"] * 2048
        assert record.config.schedule.min_lr == pytest.approx(1e-5)
    diverged = [r for r in result.records if r.diverged]
    assert len(diverged) == (raw["smooth loss"] >= 4).sum() == 135
    losses = [r.final_loss for r in result.records if not r.diverged]
    assert 1.5 < min(losses) and max(losses) < 3.5


def test_steplaw_moe(shared):
    path = shared / "steplaw/moe_lr_bs_loss.csv"
    result = import_runs("steplaw-moe", [path])
    raw = pd.read_csv(path)
    assert len(result.records) == len(raw)
    first = by_id(result)[raw["exp_name"][0]]
    assert first.config.model.arch == "moe" and first.config.model.n_experts == raw["nume"][0]
    assert first.config.model.top_k == raw["topk"][0] and first.config.model.n_params_active == raw["Na"][0]
    assert all(r.config.model.n_params_active < r.config.model.n_params for r in result.records)


def test_marin(shared):
    path = shared / "marin/marin_sweep_runs.jsonl"
    raw = [json.loads(line) for line in path.open()]
    result = import_runs("marin", [path])
    missing = sum(r["loss"] is None and not r["superseded_version"] for r in raw)
    superseded = sum(bool(r["superseded_version"]) for r in raw)
    assert result.rows_read == len(raw) == 1490
    assert len(result.records) == len(raw) - missing - superseded == 1359
    assert sum(result.skipped.values()) == missing + superseded  # every dropped row is counted with its reason
    assert {r.config.optimizer.name for r in result.records} == {
        "adamw",
        "nadamw",
        "mars",
        "cautious",
        "lion",
        "adam-mini",
        "muon",
        "scion",
        "kron",
        "soap",
        "sophia",
    }
    baseline = by_id(result)["marin/adamw/130m/x1/Baseline"]
    assert baseline.final_loss == pytest.approx(3.5291428565979004) and baseline.config.optimizer.lr == 0.008
    assert baseline.config.optimizer.beta2 == 0.98 and baseline.config.batch.sequences == 128
    assert baseline.config.model.d_model == 512 and baseline.loss_kind == "paloma_c4_en"
    muon = next(r for r in result.records if r.config.optimizer.name == "muon")
    assert "muon_to_adam_lr" in muon.config.optimizer.model_extra  # optimizer-specific fields kept
    nan_losses = sum(r["loss"] == "NaN" and not r["superseded_version"] for r in raw)
    assert sum(r.diverged and r.final_loss is None for r in result.records) == nan_losses > 0


def test_gadre_models(shared):
    result = import_runs("gadre", [shared / "mlfoundations_scaling/exp_data/models"])
    assert len(result.records) == 104
    record = by_id(result)["gadre/rw_original-d=96_l=8_h=4-1.0"]
    assert record.config.model.n_params == 5727840 and record.config.data.tokens == 211386240
    assert record.final_loss == pytest.approx(5.271892380117802)  # the c4_val result
    assert record.config.optimizer.beta2 == 0.95 and record.config.batch.sequences == 64
    big = by_id(result)["gadre/rw_original-open_lm_7b-1.0"]
    assert big.config.batch.sequences > 1  # from the command line, not the wrong global_bs 1


def test_gadre_grid_param_count_matches_models(shared):
    from ncpl.sources.gadre_grid import params_no_embed

    grid = import_runs("gadre-grid", [shared / "mlfoundations_scaling/exp_data/grid.json"])
    assert len(grid.records) == 435
    models = import_runs("gadre", [shared / "mlfoundations_scaling/exp_data/models"])
    shaped = [r for r in models.records if r.config.model.d_model]
    assert shaped and all(
        params_no_embed(r.config.model.d_model, r.config.model.n_layers) == r.config.model.n_params for r in shaped
    )
    losses = np.array([r.final_loss for r in grid.records])
    assert 2.4 < losses.min() and losses.max() < 5.4


def test_gemstones_curves_and_branches(shared):
    folder = shared / "gemstones/wandb_dfs"
    hot = import_runs("gemstones", [folder / "wandb_df_for_fitting_hot_477.jsonl"])
    raw = pd.read_json(folder / "wandb_df_for_fitting_hot_477.jsonl", lines=True)
    assert len(hot.records) == raw["run_name"].nunique() == 16 and hot.rows_kept == len(raw)
    run = by_id(hot)["gemstones/hot_477/PyGemma-1024x28_pretrain"]
    rows = raw[raw["run_name"] == "PyGemma-1024x28_pretrain"].sort_values("tokens")
    assert run.curve.loss == pytest.approx(rows["final_loss"].tolist()) and run.final_loss == pytest.approx(
        rows["final_loss"].iloc[-1]
    )
    cool = import_runs("gemstones", [folder / "wandb_df_for_fitting_cool_end.jsonl"])
    assert len(cool.records) == 140 and all(r.config.schedule.name == "wsd" for r in cool.records)
    slim = import_runs("gemstones", [folder / "wandb_df_for_fitting_slim_chinchilla.jsonl"])
    assert not slim.records and sum(slim.skipped.values()) == slim.rows_read == 13


def test_misfitting_curves(shared):
    path = shared / "misfitting/scaling_results.csv"
    result = import_runs("misfitting", [path])
    raw = pd.read_csv(path)
    assert raw.groupby(["model", "total_steps", "peak_lr", "sweep"]).ngroups == 235  # keys; 258 runs in them
    assert len(result.records) == 235 and result.rows_read == len(raw) == 4652  # 23 of the 258 runs skipped (rows):
    assert result.skipped == {
        "a copy of checkpoints of a longer run": 30,
        "the same losses as a run of another steps or lr: which is true is unknown": 8,
        "a repeat of an earlier run": 2,
    }
    for record in result.records:
        assert record.curve.tokens[-1] >= 0.99 * record.config.data.tokens  # each curve reaches the end of its run
        assert record.final_loss == record.curve.loss[-1]
    # one key, four runs in the file, three of them the last two checkpoints of runs at other lrs: before, one curve
    # spliced from all four (5.93 at 128 steps overwritten by a copy's 4.34, the end a copy's 4.296)
    key = "misfitting/misfitting_17m/steps750/lr0.004/2024_11_10-23_08_29_sweep_test"
    (run,) = [r for r in result.records if r.run_id.startswith(key)]
    assert run.run_id == key + "/run3" and len(run.curve.loss) == 6
    assert run.curve.loss[0] == pytest.approx(5.9315, abs=1e-4) and run.final_loss == pytest.approx(4.1639, abs=1e-4)
    # two runs of one key with the same losses: one is kept (a first copy rule dropped both)
    same = "misfitting/misfitting_17m/steps200/lr0.008/2024_11_10-23_08_29_sweep_test"
    assert [r.run_id for r in result.records if r.run_id.startswith(same)] == [same + "/run1"]


def test_epoch(shared):
    path = shared / "epoch_chinchilla/data/svg_extracted_data.csv"
    result = import_runs("epoch", [path])
    raw = pd.read_csv(path)
    assert len(result.records) == len(raw) == 245
    first = result.records[0]
    assert first.config.data.tokens == pytest.approx(raw["Training FLOP"][0] / (6 * raw["Model Size"][0]))


def test_malformed_row_fails_or_is_skipped_and_counted(shared, tmp_path):
    raw = pd.read_csv(shared / "steplaw/dense_lr_bs_loss.csv").head(20)
    raw.loc[7, "lr"] = -1.0
    raw.loc[11, "smooth loss"] = float("nan")
    bad = tmp_path / "dense.csv"
    raw.to_csv(bad, index=False)
    with pytest.raises(ImportFailed) as error:
        import_runs("steplaw", [bad])
    assert (
        "dense.csv:9" in str(error.value) and "optimizer.lr" in str(error.value) and "skip_bad=True" in str(error.value)
    )
    result = import_runs("steplaw", [bad], skip_bad=True)
    assert len(result.records) == 18 and sum(result.skipped.values()) == 2 and result.rows_read == 20


def test_missing_file_and_unknown_source(tmp_path):
    with pytest.raises(ImportFailed, match="file not found"):
        import_runs("steplaw", [tmp_path / "nope.csv"])
    with pytest.raises(ImportFailed, match="unknown source"):
        import_runs("wandb", [tmp_path])


def test_a_file_the_importer_cannot_read_is_a_data_error_naming_it(tmp_path):
    """Small files written here (not real data): a table in an unknown format, a Marin log without its shapes file,
    a (Mis)Fitting table without its columns. Each is a DataError (the CLI prints it and exits 2), not a traceback."""
    (tmp_path / "runs.txt").write_text("source,final_loss\n")
    (tmp_path / "marin_sweep_runs.jsonl").write_text("{}\n")
    (tmp_path / "scaling_results.csv").write_text("a,b\n1,2\n")
    for source, name, message in (
        ("table", "runs.txt", "unsupported table format '.txt'"),
        ("marin", "marin_sweep_runs.jsonl", "Marin model shapes not found"),
        ("misfitting", "scaling_results.csv", "missing columns"),
    ):
        with pytest.raises(DataError, match=message) as raised:
            import_runs(source, [tmp_path / name])
        assert str(tmp_path / name) in str(raised.value) or name.startswith("marin")


def test_a_file_that_cannot_be_parsed_is_an_import_error_naming_it(shared, tmp_path):
    """Small files written here: a CSV row with more fields than the header, an empty CSV, truncated JSON, and a
    (Mis)Fitting file whose model config beside it is truncated (the error once named the CSV)."""
    (tmp_path / "dense.csv").write_text("h,lr,bs\n960,3e-4,736\n1,2,3,4,5\n")
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "grid.json").write_text('{"a": 1,\n')
    (tmp_path / "scaling_results.csv").write_text(
        "".join((shared / "misfitting/scaling_results.csv").open().readlines()[:3])
    )
    (tmp_path / "model_configs").mkdir()
    (tmp_path / "model_configs/misfitting_35m.json").write_text('{"hidden_dim": 1,\n')
    for source, name, message in (
        ("steplaw", "dense.csv", "dense.csv: cannot parse the file .*Expected 3 fields in line 3, saw 5"),
        ("epoch", "empty.csv", "empty.csv: cannot parse the file .*No columns to parse"),
        ("gadre-grid", "grid.json", "grid.json: not valid JSON .*Expecting property name"),
        ("misfitting", "scaling_results.csv", "misfitting_35m.json: not valid JSON"),
    ):
        with pytest.raises(DataError, match=message):
            import_runs(source, [tmp_path / name])


def test_table_round_trip_through_csv(shared, tmp_path):
    from ncpl.store import to_frame

    records = import_runs("gemstones", [shared / "gemstones/wandb_dfs/wandb_df_for_fitting_hot.jsonl"]).records
    frame = to_frame(records)
    for column in ("curve_tokens", "curve_loss"):
        frame[column] = frame[column].map(json.dumps)
    frame.to_csv(tmp_path / "runs.csv", index=False)
    assert import_runs("table", [tmp_path / "runs.csv"]).records == records
