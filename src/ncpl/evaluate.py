"""How well predictors forecast runs they have not seen: accuracy per source and test set, and the
regret of picking hyperparameters with them. Written once against the `Predictor` interface.

Accuracy is reported on the non-diverged runs (the headline) and on every run with a finite loss.
Regret: within each group of runs sharing source, N and D (at least `MIN_GROUP` of them), the true
loss of the run the predictor ranks best minus the best true loss of the group. A pick that diverged
costs the group's worst converged loss (its own, 7 or 1e14, says nothing), and the rate of such
picks is reported beside the regret. Search cost: how many of the group's runs, tried in the
predictor's order, it takes to reach one within `NEAR_BEST` of the group's best, against the
expectation for a random order, (n + 1) / (k + 1) with k such runs among n. Tied scores (a law blind to
hyperparameters ranks a whole group equal) count as a random pick among them.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from ncpl.columns import effective_params, tokens, usable
from ncpl.laws import steplaw
from ncpl.predictors import Predictor

MIN_GROUP = 5
NEAR_BEST = 0.005  # "reached the best": within this many nats of the group's best converged run
STEPLAW_PICKER = "steplaw-law"


def accuracy(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    true, pred = np.asarray(true, float), np.asarray(pred, float)
    error = pred - true
    return {
        "n": int(len(true)),
        "mae": float(np.mean(np.abs(error))) if len(true) else math.nan,
        "rmse": float(np.sqrt(np.mean(error**2))) if len(true) else math.nan,
        "spearman": float(spearmanr(true, pred).statistic) if len(true) > 2 else math.nan,
    }


def hparam_groups(runs: pd.DataFrame, min_size: int = MIN_GROUP) -> list[np.ndarray]:
    """Positional indices of each (source, N, D) group with at least `min_size` runs."""
    keys = pd.DataFrame({"source": runs["source"].to_numpy(), "n": effective_params(runs), "d": tokens(runs)})
    return [np.asarray(rows) for rows in keys.groupby(["source", "n", "d"]).indices.values() if len(rows) >= min_size]


def regret(runs: pd.DataFrame, scores: np.ndarray, min_size: int = MIN_GROUP) -> dict[str, float]:
    """Mean regret and diverged-pick rate of choosing, per group, the run with the lowest score."""
    loss = pd.to_numeric(runs["final_loss"], errors="coerce").to_numpy(float)
    ok = usable(runs).to_numpy()
    regrets, diverged, tries, random_tries = [], [], [], []
    for rows in hparam_groups(runs, min_size):
        if not ok[rows].any():
            continue
        score = np.where(np.isfinite(scores[rows]), scores[rows], np.inf)
        near = ok[rows] & (loss[rows] <= loss[rows][ok[rows]].min() + NEAR_BEST)
        tries.append(_expected_tries(score, near))
        random_tries.append((len(rows) + 1) / (near.sum() + 1))
        picks = rows[score <= score.min() + 1e-12 * max(1.0, abs(score.min()))]  # ties: the expected cost of a random pick
        cost = np.where(ok[picks], loss[picks], loss[rows][ok[rows]].max())
        regrets.append(cost.mean() - loss[rows][ok[rows]].min())
        diverged.append(np.mean(~ok[picks]))
    return {"groups": len(regrets), "regret": float(np.mean(regrets)) if regrets else math.nan,
            "median_regret": float(np.median(regrets)) if regrets else math.nan,
            "diverged_picks": float(np.mean(diverged)) if diverged else math.nan,
            "runs_to_near_best": float(np.mean(tries)) if tries else math.nan,
            "random_runs_to_near_best": float(np.mean(random_tries)) if tries else math.nan}


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
    report: dict[str, Any] = {"accuracy": [], "regret": [], "predictions": {}}
    for test_name, runs in tests.items():
        runs = runs.reset_index(drop=True)
        loss = pd.to_numeric(runs["final_loss"], errors="coerce").to_numpy(float)
        ok, finite = usable(runs).to_numpy(), np.isfinite(loss)
        scores = {name: model.predict(runs) for name, model in models.items()}
        report["predictions"][test_name] = {"run_id": runs["run_id"].tolist(), "source": runs["source"].tolist(),
                                            "final_loss": loss.tolist(), "usable": ok.tolist(),
                                            **{name: pred.tolist() for name, pred in scores.items()}}
        if {"optimizer.lr", "batch.tokens"} <= set(runs.columns):
            scores[STEPLAW_PICKER] = steplaw.distance(runs)
        for source in sorted(runs["source"].unique()):
            here = (runs["source"] == source).to_numpy()
            for name, score in scores.items():
                if name != STEPLAW_PICKER:
                    report["accuracy"].append({
                        "test": test_name, "source": source, "predictor": name,
                        "ok": accuracy(loss[here & ok], score[here & ok]),
                        "all": accuracy(loss[here & finite], score[here & finite]),
                    })
                picked = regret(runs[here].reset_index(drop=True), score[here])
                if picked["groups"]:
                    report["regret"].append({"test": test_name, "source": source, "picker": name, **picked})
    return report


def _fmt(value: float, digits: int = 4) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    lines = ["| test | source | predictor | n | MAE | RMSE | Spearman | n (all) | MAE (all) | Spearman (all) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["accuracy"]:
        ok, every = row["ok"], row["all"]
        lines.append(f"| {row['test']} | {row['source']} | {row['predictor']} | {ok['n']} | {_fmt(ok['mae'])} | "
                     f"{_fmt(ok['rmse'])} | {_fmt(ok['spearman'], 3)} | {every['n']} | {_fmt(every['mae'])} | {_fmt(every['spearman'], 3)} |")
    if report["regret"]:
        lines += ["", f"Hyperparameter-selection regret (groups of >= {MIN_GROUP} runs sharing source, N and D):", "",
                  "| test | source | picker | groups | mean regret | median regret | diverged picks | runs to near-best (random) |",
                  "|---|---|---|---|---|---|---|---|"]
        for row in report["regret"]:
            lines.append(f"| {row['test']} | {row['source']} | {row['picker']} | {row['groups']} | {_fmt(row['regret'])} | "
                         f"{_fmt(row['median_regret'])} | {_fmt(row['diverged_picks'], 2)} | "
                         f"{_fmt(row['runs_to_near_best'], 1)} ({_fmt(row['random_runs_to_near_best'], 1)}) |")
    return "\n".join(lines) + "\n"


def parity_plot(predictions: dict[str, list], predictor: str, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = pd.DataFrame({k: predictions[k] for k in ("source", "final_loss", "usable", predictor)})
    frame = frame[frame["usable"]]
    fig, ax = plt.subplots(figsize=(5, 5))
    for source, group in frame.groupby("source"):
        ax.scatter(group["final_loss"], group[predictor], s=8, alpha=0.6, label=source)
    low, high = frame[["final_loss", predictor]].min().min(), frame[["final_loss", predictor]].max().max()
    ax.plot([low, high], [low, high], color="black", lw=0.8)
    ax.set(xlabel="true final loss", ylabel="predicted final loss", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_report(report: dict[str, Any], directory: str | Path) -> list[Path]:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = [directory / "report.md", directory / "report.json"]
    _atomic_write(written[0], markdown(report))
    _atomic_write(written[1], json.dumps(report, indent=1, allow_nan=True))
    for test_name, predictions in report["predictions"].items():
        for predictor in predictions:
            if predictor in ("run_id", "source", "final_loss", "usable"):
                continue
            path = directory / f"parity_{predictor}_{test_name}.png"
            parity_plot(predictions, predictor, f"{predictor} on {test_name}", path)
            written.append(path)
    return written
