import pandas as pd
import pytest

from ncpl.sources import import_runs
from ncpl.splits import split_runs
from ncpl.store import read_runs, to_records, write_runs


@pytest.fixture(scope="module")
def marin(shared):
    return import_runs("marin", [shared / "marin/marin_sweep_runs.jsonl"]).records


def test_parquet_round_trip(marin, tmp_path):
    path = write_runs(marin, tmp_path / "runs.parquet")
    frame = read_runs(path)
    assert {"run_id", "model.n_params", "optimizer.lr", "optimizer.muon_to_adam_lr", "batch.tokens"} <= set(frame.columns)
    assert to_records(frame) == marin
    assert not list(tmp_path.glob("*.tmp"))


def test_read_runs_rejects_other_files(tmp_path):
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "x.parquet")
    with pytest.raises(ValueError, match="not a runs file"):
        read_runs(tmp_path / "x.parquet")
    with pytest.raises(ValueError, match="not found"):
        read_runs(tmp_path / "missing.parquet")


def test_splits_disjoint_deterministic_and_per_source(shared, marin):
    from ncpl.store import to_frame

    frame = pd.concat([to_frame(marin), to_frame(import_runs("gadre", [shared / "mlfoundations_scaling/exp_data/models"]).records)],
                      ignore_index=True)
    split = split_runs(frame, id_frac=0.2, seed=3, ood_min_params=3e8)
    ids = [set(part["run_id"]) for _, part in split.items()]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert sum(map(len, ids)) == len(frame)
    assert (split.ood["model.n_params"] >= 3e8).all() and (split.train["model.n_params"] < 3e8).all()
    assert set(split.id["source"]) == {"marin", "gadre"}
    again = split_runs(frame, id_frac=0.2, seed=3, ood_min_params=3e8)
    assert set(again.id["run_id"]) == ids[1]
    other = split_runs(frame, id_frac=0.2, seed=4, ood_min_params=3e8)
    assert set(other.id["run_id"]) != ids[1]
    explicit = split_runs(frame, id_frac=0.0, ood_runs=[frame["run_id"][0]], id_runs=[frame["run_id"][1]])
    assert list(explicit.ood["run_id"]) == [frame["run_id"][0]] and list(explicit.id["run_id"]) == [frame["run_id"][1]]
