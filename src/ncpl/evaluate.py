"""How well predictors forecast runs they have not seen: accuracy per source and test set, and the
regret of picking hyperparameters with them. Written once against the `Predictor` interface.

Accuracy is reported on the converged runs (the headline: neither diverged nor unstable, `ncpl.unstable`)
and on every run (`all`), where a failed run counts at its source's loss ceiling in that test set (the
worst converged loss), and predictions are clipped there too: a run that reports 1.4e14 costs what
missing the worst converged run costs, not 1e14 (Marin OOD's `MAE (all)` read 3.7e11 before).
Predictors with an interval and a divergence probability (`predict_details`) also get the 10-90%
interval's coverage of the converged runs, its median width, and the ROC-AUC of the divergence
probability against the failed runs.
Regret: within each group of runs sharing source, N, D and optimizer (at least `MIN_GROUP` of them), the true
loss of the run the predictor ranks best minus the best true loss of the group. A pick that diverged
costs the group's worst converged loss (its own, 7 or 1e14, says nothing), and the rate of such
picks is reported beside the regret. Search cost: how many of the group's runs, tried in the
predictor's order, it takes to reach one within `NEAR_BEST` of the group's best, against the
expectation for a random order, (n + 1) / (k + 1) with k such runs among n. Tied scores (a law blind to
hyperparameters ranks a whole group equal) count as a random pick among them.

Loss curves are scored by `ncpl.curve_metrics`; `ncpl.report` writes the report as markdown, JSON and plots.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from ncpl.columns import hparam_groups, usable
from ncpl.curve_metrics import evaluate_curves
from ncpl.laws import steplaw
from ncpl.predictors import Predictor

MIN_GROUP = 5
NEAR_BEST = 0.005  # "reached the best": within this many nats of the group's best converged run
STEPLAW_PICKER = "steplaw-law (fitted on every shape, leaky)"


def accuracy(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    true, pred = np.asarray(true, float), np.asarray(pred, float)
    error = pred - true
    return {
        "n": int(len(true)),
        "mae": float(np.mean(np.abs(error))) if len(true) else math.nan,
        "rmse": float(np.sqrt(np.mean(error**2))) if len(true) else math.nan,
        "spearman": float(spearmanr(true, pred).statistic) if len(true) > 2 else math.nan,
    }


def regret(runs: pd.DataFrame, scores: np.ndarray, min_size: int = MIN_GROUP) -> dict[str, float]:
    """Mean regret and diverged-pick rate of choosing, per group, the run with the lowest score."""
    loss = pd.to_numeric(runs["final_loss"], errors="coerce").to_numpy(float)
    ok = usable(runs).to_numpy()
    regrets, diverged, tries, random_tries = [], [], [], []
    for rows in hparam_groups(runs, min_size, by_optimizer=True):
        if not ok[rows].any():
            continue
        score = np.where(np.isfinite(scores[rows]), scores[rows], np.inf)
        near = ok[rows] & (loss[rows] <= loss[rows][ok[rows]].min() + NEAR_BEST)
        tries.append(_expected_tries(score, near))
        random_tries.append((len(rows) + 1) / (near.sum() + 1))
        picks = rows[
            score <= score.min() + 1e-12 * max(1.0, abs(score.min()))
        ]  # ties: the expected cost of a random pick
        cost = np.where(ok[picks], loss[picks], loss[rows][ok[rows]].max())
        regrets.append(cost.mean() - loss[rows][ok[rows]].min())
        diverged.append(np.mean(~ok[picks]))
    return {
        "groups": len(regrets),
        "regret": float(np.mean(regrets)) if regrets else math.nan,
        "median_regret": float(np.median(regrets)) if regrets else math.nan,
        "diverged_picks": float(np.mean(diverged)) if diverged else math.nan,
        "runs_to_near_best": float(np.mean(tries)) if tries else math.nan,
        "random_runs_to_near_best": float(np.mean(random_tries)) if tries else math.nan,
    }


def loss_ceiling(loss: np.ndarray, ok: np.ndarray) -> float:
    """The worst converged loss: where a failed run's loss (and any prediction) is clipped for the `all` metrics."""
    return float(loss[ok].max()) if ok.any() else math.nan


def interval(true: np.ndarray, details: pd.DataFrame, failed: np.ndarray) -> dict[str, float]:
    """Coverage and median width of the 10-90% interval on the converged runs; ROC-AUC of `p_diverge` for the failed ones."""
    lo, hi = details["pred_loss_lo"].to_numpy(float)[~failed], details["pred_loss_hi"].to_numpy(float)[~failed]
    inside = (lo <= true[~failed]) & (true[~failed] <= hi)
    p = details["p_diverge"].to_numpy(float) if "p_diverge" in details else np.full(len(true), np.nan)
    both = failed.any() and (~failed).any() and np.isfinite(p).all()
    return {
        "n": int((~failed).sum()),
        "coverage_80": float(inside.mean()) if len(inside) else math.nan,
        "median_width": float(np.median(hi - lo)) if len(inside) else math.nan,
        "n_failed": int(failed.sum()),
        "auc_diverge": float(roc_auc_score(failed, p)) if both else math.nan,
    }


def paired_bootstrap(
    errors_a: np.ndarray, errors_b: np.ndarray, n_resamples: int = 2000, seed: int = 0, level: float = 0.95
) -> dict[str, float]:
    """Mean of a - b (per-run absolute errors of two predictors on the same runs) and its percentile bootstrap
    interval, resampling runs; a negative difference means `a` is the more accurate."""
    diff = np.asarray(errors_a, float) - np.asarray(errors_b, float)
    if not len(diff):
        return {"diff": math.nan, "lo": math.nan, "hi": math.nan, "n": 0}
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(n_resamples, len(diff)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    return {
        "diff": float(diff.mean()),
        "lo": float(np.percentile(means, tail)),
        "hi": float(np.percentile(means, 100 - tail)),
        "n": int(len(diff)),
    }


def _expected_tries(score: np.ndarray, near: np.ndarray) -> float:
    """Runs tried, best score first, until one is near the best; a block of tied scores is tried in random order."""
    tried = 0
    for value in np.unique(score):
        block = score == value
        hits = int(near[block].sum())
        if hits:
            return tried + (block.sum() + 1) / (hits + 1)
        tried += int(block.sum())
    return float(tried)


def evaluate(models: dict[str, Predictor], tests: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Accuracy, interval and regret of each model on each test set (runs marked by `ncpl.unstable.mark_unstable`
    count their unstable runs as failed; unmarked tables count only the diverged ones)."""
    report: dict[str, Any] = {
        "accuracy": [],
        "interval": [],
        "regret": [],
        "predictions": {},
        "curves": [],
        "curve_plots": {},
    }
    curve_models = {name: model for name, model in models.items() if model.predicts_curves}
    for test_name, runs in tests.items():
        runs = runs.reset_index(drop=True)
        loss = pd.to_numeric(runs["final_loss"], errors="coerce").to_numpy(float)
        ok = usable(runs).to_numpy()
        every = np.isfinite(loss) | ~ok  # a failed run without a loss still counts, at the ceiling
        details = {name: model.predict_details(runs) for name, model in models.items()}
        scores = {name: frame["pred_loss"].to_numpy(float) for name, frame in details.items()}
        report["predictions"][test_name] = {
            "run_id": runs["run_id"].tolist(),
            "source": runs["source"].tolist(),
            "final_loss": loss.tolist(),
            "usable": ok.tolist(),
            **{name: pred.tolist() for name, pred in scores.items()},
        }
        if {"optimizer.lr", "batch.tokens"} <= set(runs.columns):
            scores[STEPLAW_PICKER] = steplaw.distance_from_optimum(runs)
        for source in sorted(runs["source"].unique()):
            here = (runs["source"] == source).to_numpy()
            ceiling = loss_ceiling(loss[here], ok[here])
            clipped = np.minimum(np.where(np.isfinite(loss), loss, ceiling), ceiling)
            for name, score in scores.items():
                if name != STEPLAW_PICKER:
                    report["accuracy"].append(
                        {
                            "test": test_name,
                            "source": source,
                            "predictor": name,
                            "ok": accuracy(loss[here & ok], score[here & ok]),
                            "all": {
                                **accuracy(clipped[here & every], np.minimum(score[here & every], ceiling)),
                                "ceiling": ceiling,
                            },
                        }
                    )
                    if {"pred_loss_lo", "pred_loss_hi"} <= set(details[name].columns):
                        report["interval"].append(
                            {
                                "test": test_name,
                                "source": source,
                                "predictor": name,
                                **interval(loss[here], details[name][here], ~ok[here]),
                            }
                        )
                picked = regret(runs[here].reset_index(drop=True), score[here])
                if picked["groups"]:
                    report["regret"].append({"test": test_name, "source": source, "picker": name, **picked})
        rows, plotted = evaluate_curves(curve_models, runs, test_name)
        report["curves"] += rows
        if plotted:
            report["curve_plots"][test_name] = plotted
    return report
