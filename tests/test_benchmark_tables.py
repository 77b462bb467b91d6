"""benchmarks/ncpl_accuracy.py's tables over seeds, on hand-made predictors (the benchmark itself trains for minutes)."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ncpl import predictors
from ncpl.evaluate import evaluate

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import ncpl_accuracy  # noqa: E402


class Noisy(predictors.Predictor):
    """The true loss plus seeded noise of a given size, with an interval and a divergence probability."""

    name = "noisy"

    def __init__(self, noise: float, seed: int):
        self.noise, self.seed = noise, seed

    def fit(self, runs):
        return self

    def _predict(self, configs):
        rng = np.random.default_rng(self.seed)
        return np.nan_to_num(configs["final_loss"].to_numpy(float), nan=9.0) + rng.normal(0, self.noise, len(configs))

    def _predict_details(self, configs):
        pred = self._predict(configs)
        return pd.DataFrame(
            {
                "pred_loss": pred,
                "pred_loss_lo": pred - 0.05,
                "pred_loss_hi": pred + 0.05,
                "p_diverge": configs["diverged"].to_numpy(float) * 0.8 + 0.1,
            }
        )

    def get_state(self):
        return {}

    def set_state(self, state):
        pass


def test_tables_over_seeds_and_bootstrap_against_the_best_baseline():
    rng = np.random.default_rng(0)
    runs = pd.DataFrame(
        {
            "run_id": [f"r{i}" for i in range(60)],
            "source": "steplaw",
            "model.n_params": 1e8,
            "data.tokens": np.repeat([1e9, 2e9, 4e9], 20),
            "final_loss": rng.uniform(3, 3.5, 60),
            "diverged": np.arange(60) % 10 == 0,
            "optimizer.lr": rng.uniform(1e-4, 1e-2, 60),
            "batch.tokens": rng.choice([2**19, 2**20], 60),
        }
    )
    reports = []
    for seed in (1, 2):
        models = {"chinchilla": Noisy(0.05, seed), "xgboost": Noisy(0.02, seed + 10), "ncpl": Noisy(0.01, seed + 20)}
        report = evaluate(models, {"steplaw-ood": runs})
        report["meta"] = {"stage": "test", "seed": seed}
        reports.append(report)
    tables = ncpl_accuracy.aggregate(reports)
    mae = {row["predictor"]: row["ok.mae"] for row in tables["accuracy"]}
    assert (
        all(row["seeds"] == 2 for row in tables["accuracy"])
        and mae["ncpl"]["mean"] < mae["xgboost"]["mean"] < mae["chinchilla"]["mean"]
    )
    expected = np.mean([r["accuracy"][2]["ok"]["mae"] for r in reports])
    assert mae["ncpl"]["mean"] == pytest.approx(expected) and mae["ncpl"]["sd"] > 0
    interval = {row["predictor"]: row for row in tables["interval"]}
    assert interval["ncpl"]["auc_diverge"]["mean"] == pytest.approx(1.0)
    versus = ncpl_accuracy.versus_best_baseline(reports, tables["accuracy"])
    assert len(versus) == 1 and versus[0]["baseline"] == "xgboost" and versus[0]["n"] == 54
    assert versus[0]["lo"] <= versus[0]["diff"] <= versus[0]["hi"] < 0  # NCPL's errors are half the trees'
    text = ncpl_accuracy.markdown(tables, versus)
    assert (
        "| steplaw-ood | steplaw | ncpl | 54 |" in text
        and " ± " in text
        and "| steplaw-ood | steplaw | xgboost | 54 |" in text
    )


def test_curve_benchmark_tests_multipower_on_the_schedules_its_protocol_does_not_fit(shared):
    import curves

    train, tests = curves.splits(shared, "test")
    multipower = train[train["source"] == "multipower"]["run_id"].str.rsplit("/", n=1).str[-1]
    assert sorted(multipower) == sorted(curves.FIT * 2)  # the protocol's three fit curves of each size
    unseen = tests["multipower-unseen"]
    assert len(unseen) == 12 and set(unseen["model.n_params"]) == {25e6, 100e6}
    assert not set(unseen["run_id"]) & set(train["run_id"])
    held = set(unseen["run_id"])
    train, tests = curves.splits(shared, "dev")  # wsdcon_9 held out of the fit curves; no test schedule anywhere
    schedule = lambda runs: sorted(runs[runs["source"] == "multipower"]["run_id"].str.rsplit("/", n=1).str[-1])  # noqa: E731
    assert schedule(train) == sorted(["constant_24000", "cosine_24000"] * 2)
    assert schedule(tests["multipower-dev-unseen"]) == ["wsdcon_9"] * 2
    assert not held & (set(train["run_id"]) | {run for frame in tests.values() for run in frame["run_id"]})
