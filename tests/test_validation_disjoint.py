"""Runs that choose anything (a checkpoint, a margin) are never test runs, and never training examples. Fast: the
split tests run on a small made-up runs table written here (not real data); the NCPL test on the bundled Marin runs.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ncpl.splits import split_runs, validation_split

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def made_up_runs() -> pd.DataFrame:
    """A synthetic runs table (made up for this test, not real data): two sources, 4 model sizes x 3 token budgets x
    5 learning rates each, a few diverged runs."""
    rng = np.random.default_rng(0)
    rows = []
    for source in ("alpha", "beta"):
        for n in (1e7, 3e7, 1e8, 3e8):
            for d in (1e9, 3e9, 1e10):
                for lr in (1e-4, 3e-4, 1e-3, 3e-3, 1e-2):
                    rows.append(
                        {
                            "run_id": f"{source}-{n:g}-{d:g}-{lr:g}",
                            "source": source,
                            "model.n_params": n,
                            "data.tokens": d,
                            "optimizer.lr": lr,
                            "final_loss": 3 + rng.normal(0, 0.1),
                            "diverged": lr == 1e-2 and rng.random() < 0.5,
                        }
                    )
    return pd.DataFrame(rows)


def ids(frame: pd.DataFrame) -> set[str]:
    return set(frame["run_id"])


@pytest.mark.parametrize("how", ["random", "largest"])
def test_validation_runs_come_from_training_runs_only(made_up_runs, how):
    split = split_runs(made_up_runs, id_frac=0.2, seed=1, ood_min_params=3e8)
    test = ids(split.id) | ids(split.ood)
    assert ids(split.train) and ids(split.id) and ids(split.ood)
    assert not ids(split.train) & test and not ids(split.id) & ids(split.ood)
    assert ids(split.train) | test == ids(made_up_runs) and len(split.train) + len(test) == len(made_up_runs)
    train, val = validation_split(split.train, how, frac=0.1, seed=2)
    assert len(val) >= 2 and set(val["source"]) == {"alpha", "beta"}
    assert not ids(val) & test  # no test run chooses anything
    assert not ids(val) & ids(train) and ids(train) | ids(val) == ids(split.train)
    if how == "largest":  # the step beyond the training sizes: each source's largest trained size is validation
        assert (val.groupby("source")["model.n_params"].max() == 1e8).all() and (train["model.n_params"] < 1e8).all()


def test_ncpl_picks_its_checkpoint_on_runs_it_does_not_train_on(monkeypatch, tmp_path):
    """NCPL.fit's own validation split: the runs that choose the checkpoint (and the interval margins) are none of
    the runs its training examples are built from. Stops before the first epoch; bundled real Marin runs."""
    from ncpl.regressor import predictor as ncpl_module
    from ncpl.regressor.train_config import TrainConfig
    from ncpl.regressor.trainer import Trainer
    from ncpl.store import read_runs

    runs = read_runs(ROOT / "data" / "marin.parquet").sample(120, random_state=0)
    seen: dict[str, list] = {"train": [], "val": []}
    build_examples = ncpl_module.build_examples
    example = ncpl_module.NCPL._example

    def recording_build_examples(frame, *args, **kwargs):
        seen["train"] += frame["run_id"].tolist()
        return build_examples(frame, *args, **kwargs)

    def recording_example(self, row, fraction=None):
        seen["val"].append(row["run_id"])
        return example(self, row, fraction)

    class Stop(Exception):
        pass

    def stop(self, train, val, val_loss):
        seen["examples"] = (len(train), len(val), len(val_loss))
        raise Stop

    monkeypatch.setattr(ncpl_module, "build_examples", recording_build_examples)
    monkeypatch.setattr(ncpl_module.NCPL, "_example", recording_example)
    monkeypatch.setattr(Trainer, "fit", stop)
    config = TrainConfig(
        backbone="tiny-decoder", baseline="chinchilla", max_curve_points=0, val_frac=0.2, seed=0, members=1
    )
    with pytest.raises(Stop):
        ncpl_module.NCPL(config, work_dir=tmp_path / "work").fit(runs)
    train, val = set(seen["train"]), set(seen["val"])
    assert len(val) == round(0.2 * len(runs)) and len(train) == len(runs) - len(val)
    assert not train & val and train | val == set(runs["run_id"])
    assert seen["examples"] == (len(train), len(val), len(val))  # max_curve_points=0: one example a run
