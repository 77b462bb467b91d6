import numpy as np
import pandas as pd
import pytest

from ncpl.errors import ConfigError
from ncpl.sources import import_runs
from ncpl.splits import split_runs
from ncpl.store import read_runs, to_records, write_runs


@pytest.fixture(scope="module")
def marin(shared):
    return import_runs("marin", [shared / "marin/marin_sweep_runs.jsonl"]).records


def test_parquet_round_trip(marin, tmp_path):
    path = write_runs(marin, tmp_path / "runs.parquet")
    frame = read_runs(path)
    assert {"run_id", "model.n_params", "optimizer.lr", "optimizer.muon_to_adam_lr", "batch.tokens"} <= set(
        frame.columns
    )
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

    frame = pd.concat(
        [to_frame(marin), to_frame(import_runs("gadre", [shared / "mlfoundations_scaling/exp_data/models"]).records)],
        ignore_index=True,
    )
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


def test_ids_that_match_no_run_are_refused():
    frame = pd.DataFrame({"run_id": ["a/1", "a/2", "a/3"], "source": "a"})
    with pytest.raises(ConfigError, match=r"ood_runs: 7 ids match no run \(b/0, b/1, b/2, b/3, b/4, \.\.\.\)"):
        split_runs(frame, ood_runs=["a/1", *(f"b/{i}" for i in range(7))])
    with pytest.raises(ConfigError, match=r"id_runs: 1 ids match no run \(a/9\).*run_id"):
        split_runs(frame, id_runs=["a/9"])


def test_validation_split_largest_takes_each_sources_largest_size(shared):
    from ncpl.splits import validation_split
    from ncpl.store import to_frame

    steplaw = to_frame(import_runs("steplaw", [shared / "steplaw/dense_lr_bs_loss.csv"]).records)
    steplaw = steplaw[steplaw["model.d_model"] < 1280]
    marin = to_frame(import_runs("marin", [shared / "marin/marin_sweep_runs.jsonl"]).records)
    marin = marin[marin["model.n_params"] < 3e8]  # one model size: the step is in tokens
    frame = pd.concat([steplaw, marin], ignore_index=True)
    train, val = validation_split(frame, "largest", frac=0.1, seed=0)
    assert not set(train["run_id"]) & set(val["run_id"]) and len(train) + len(val) == len(frame)
    assert (train.loc[train["source"] == "steplaw", "model.d_model"] == 960).all()  # every h1024 run validates
    assert (val["model.d_model"] == 1024).sum() == (frame["model.d_model"] == 1024).sum()
    marin_val, marin_train = val[val["source"] == "marin"], train[train["source"] == "marin"]
    top = marin["data.tokens"].max()
    assert (marin_val["data.tokens"] == top).sum() == (marin["data.tokens"] == top).sum()  # the largest D, and the next
    assert marin_train["data.tokens"].max() < 2e10 and (marin_val["data.tokens"] > 2e10).sum() >= 0.1 * len(marin)
    assert (marin_val["data.tokens"] < 2e10).sum() == round(
        0.1 * (marin["data.tokens"] < 2e10).sum()
    )  # + a random share
    _, random_val = validation_split(frame, "random", frac=0.1, seed=0)
    assert set(random_val["run_id"]) == set(split_runs(frame, id_frac=0.1, seed=0).id["run_id"])
    with pytest.raises(ValueError, match="val_split"):
        validation_split(frame, "biggest")


def test_unstable_runs_relative_to_their_group(shared):
    from ncpl.store import to_frame
    from ncpl.unstable import gap_ceilings, mark_unstable

    marin = to_frame(import_runs("marin", [shared / "marin/marin_sweep_runs.jsonl"]).records)
    steplaw = to_frame(import_runs("steplaw", [shared / "steplaw/dense_lr_bs_loss.csv"]).records)
    frame = pd.concat([steplaw, marin], ignore_index=True)
    ceilings = gap_ceilings(frame)
    assert 0.4 < ceilings["marin"] < 1.0 and ceilings["steplaw"] > 0.6
    marked = mark_unstable(frame)
    flagged = marked[marked["unstable"]]
    assert set(flagged["source"]) == {"marin"} and 5 <= len(flagged) <= 40  # none in StepLaw: its worst gap is 0.54
    assert (marked["diverged"] == (frame["diverged"] | marked["unstable"])).all()
    assert not (frame.loc[marked["unstable"], "diverged"]).any()  # only converged runs are flagged
    assert (flagged["final_loss"] > 4.0).sum() >= 6  # the 300m runs that blew up to 4.5-6 nats


def test_largest_sizes_hold_out_a_step_not_a_hair():
    """Gemstones' sizes: the largest lies 0.007 decades above the next; the held-out sizes reach down until the
    largest is MIN_STEP (0.1 decades) above the largest left, never taking the smallest size."""
    from ncpl.splits import largest_sizes

    log_n = [7.685, 7.719, 7.825, 7.977, 7.98, 7.994, 8.011, 8.016, 8.019, 8.059, 8.066]
    frame = pd.DataFrame({"source": "g", "model.n_params": np.repeat(10.0 ** np.array(log_n), 10), "data.tokens": 1e10})
    held = np.log10(frame.loc[largest_sizes(frame, 0.1), "model.n_params"])
    assert held.min() == pytest.approx(7.977)  # 8.066 - 7.825 = 0.24 >= 0.1; 8.066 - 7.977 = 0.09 is not
    assert largest_sizes(frame, 0.1, min_step=0.0).sum() == 20  # the fraction alone: 8.066 and 8.059
    two = frame[
        np.isclose(np.log10(frame["model.n_params"]), 7.977) | np.isclose(np.log10(frame["model.n_params"]), 8.066)
    ]
    assert largest_sizes(two, 0.1).sum() == 10  # a step too short, but only the largest can go
