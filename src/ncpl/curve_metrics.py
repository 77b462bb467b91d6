"""How well predictors forecast the loss curve of a run after seeing a prefix of it.

On test runs with a logged curve, the per-point MAE of the absolute loss on the checkpoints after
the first 10, 20 and 40% of training, for every predictor that predicts curves from the
configuration alone and the same shifted to the observed prefix, and for two laws fitted to that
prefix (a power law in tokens and the temporal law, `ncpl.laws.temporal`). A run counts at a prefix
only where both laws can be fitted to it, so that every method is scored on the same points.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ncpl.columns import usable
from ncpl.errors import ConfigError
from ncpl.predictors import Predictor

PREFIXES = (0.1, 0.2, 0.4)
MAX_CURVE_POINTS = 32  # checkpoints scored per curve, evenly spaced (the paper subsamples 15-29)
PLOTTED_CURVES = 6  # runs per test set drawn with their predicted curves
PLOT_PREFIX = 0.2


def curve_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The converged runs with a logged loss curve."""
    if "curve_loss" not in runs:
        return runs.iloc[:0]
    has_curve = runs["curve_loss"].map(lambda c: isinstance(c, (list, np.ndarray)) and len(c) > 1)
    return runs[has_curve.to_numpy() & usable(runs).to_numpy()].reset_index(drop=True)


def evaluate_curves(
    models: dict[str, Predictor], runs: pd.DataFrame, test_name: str, prefixes: tuple[float, ...] = PREFIXES
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Curve accuracy rows (test, source, method, prefix, runs, points, MAE, end MAE) and the curves to plot.

    Each curve predictor is scored twice: from the config alone, and given the observed prefix (`NAME+prefix`,
    `Predictor.predict_curve(observed=...)`): NCPL trained with `prefix_points` reads it, any other predictor's curve
    is shifted by its mean miss on the last checkpoints seen.
    """
    from ncpl.laws.temporal import PowerLaw, TemporalLaw

    laws = {"power-law prefix": PowerLaw, "temporal-law prefix": TemporalLaw}
    runs = curve_runs(runs)
    errors: dict[tuple[str, str, float], list[np.ndarray]] = {}
    plotted = []
    for i, run in enumerate(runs.to_dict("records")):
        tokens_seen, loss = np.asarray(run["curve_tokens"], float), np.asarray(run["curve_loss"], float)
        fractions = tokens_seen / float(run["data.tokens"])
        keep = np.unique(np.linspace(0, len(loss) - 1, min(len(loss), MAX_CURVE_POINTS)).round().astype(int))
        curves = {}
        for name, model in models.items():
            curves[name] = np.full(len(loss), np.nan)
            curves[name][keep] = model.predict_curve(runs.iloc[[i]], fractions[keep])[0]
        for prefix in prefixes:
            seen = fractions <= prefix + 1e-9
            later = keep[~seen[keep]]
            if not len(later) or seen.sum() < max(law().min_points for law in laws.values()):
                continue
            try:
                fitted = {name: law().fit(tokens_seen[seen], loss[seen]) for name, law in laws.items()}
            except ConfigError:  # a prefix the laws refuse (tokens not increasing, a NaN): the run does not count here
                continue
            predicted = {}
            for name, model in models.items():
                predicted[name] = curves[name][later]
                observed = [(fractions[seen], loss[seen])]
                predicted[f"{name}+prefix"] = model.predict_curve(runs.iloc[[i]], fractions[later], observed)[0]
            predicted.update({name: law.predict(tokens_seen[later]) for name, law in fitted.items()})
            for name, prediction in predicted.items():
                errors.setdefault((str(run["source"]), name, prefix), []).append(np.abs(prediction - loss[later]))
            if prefix == PLOT_PREFIX and len(plotted) < PLOTTED_CURVES:
                plotted.append(
                    {
                        "run_id": run["run_id"],
                        "tokens": tokens_seen.tolist(),
                        "loss": loss.tolist(),
                        "prefix_tokens": float(tokens_seen[seen][-1]),
                        "predicted": {
                            **{
                                name: {"tokens": tokens_seen[keep].tolist(), "loss": curve[keep].tolist()}
                                for name, curve in curves.items()
                            },
                            **{
                                name: {"tokens": tokens_seen[later].tolist(), "loss": predicted[name].tolist()}
                                for name in (*(f"{n}+prefix" for n in curves), *fitted)
                            },
                        },
                    }
                )
    rows = [
        {
            "test": test_name,
            "source": source,
            "method": name,
            "prefix": prefix,
            "runs": len(per_run),
            "points": int(sum(len(e) for e in per_run)),
            "mae": float(np.concatenate(per_run).mean()),
            "end_mae": float(np.mean([e[-1] for e in per_run])),
        }
        for (source, name, prefix), per_run in sorted(
            errors.items(), key=lambda item: (item[0][0], item[0][2], item[0][1])
        )
    ]
    return rows, plotted
