"""The conformal calibration of NCPL's 10-90% interval: per source, a margin m0 + k d, d the decades beyond the
training range (`training_range.distance`).

Conformalized quantile regression (Romano et al. 2019), per source (Mondrian conformal prediction). m0 makes the
quantile heads' interval hold COVERAGE of a source's calibration runs inside the training range; k is the
conformal quantile of the normalised scores (score - m0) / d of the runs beyond it (locally weighted conformal
prediction, Lei et al. 2018), at least 0. A source without such runs takes the quantile over all sources (POOLED).
One decade in N is taken to cost what one in D does: the calibration step of a source of one model size is in D.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

POOLED = "*"  # the margin of a source without calibration runs
COVERAGE = 0.8  # of the 10-90% interval


def scores(details: pd.DataFrame, loss: np.ndarray) -> np.ndarray:
    """How far each loss lies outside its interval (negative: inside)."""
    return np.maximum(details["pred_loss_lo"].to_numpy() - loss, loss - details["pred_loss_hi"].to_numpy())


def per_source_quantile(
    values: np.ndarray, sources: np.ndarray, where: np.ndarray, floor: float = -np.inf
) -> dict[str, float]:
    """The split-conformal quantile (level ceil((n + 1) COVERAGE) / n) of `values[where]`, per source and over all
    (POOLED), at least `floor`; {} when `where` selects nothing."""

    def quantile(chosen: np.ndarray) -> float:
        level = min(1.0, math.ceil((len(chosen) + 1) * COVERAGE) / len(chosen))
        return max(floor, float(np.quantile(chosen, level, method="higher")))

    if not where.any():
        return {}
    return {
        **{s: quantile(values[where & (sources == s)]) for s in np.unique(sources[where])},
        POOLED: quantile(values[where]),
    }


def calibrate(
    score: np.ndarray, sources: np.ndarray, distance: np.ndarray
) -> tuple[dict[str, float], dict[str, float]]:
    """(m0, k) per source from the conformity scores of calibration runs and their distances; k = {} when no run
    lies beyond the training range."""
    inside, beyond = distance <= 1e-9, distance > 1e-9
    margins = per_source_quantile(score, sources, inside if inside.any() else beyond)
    m0 = np.array([margins.get(source, margins.get(POOLED, 0.0)) for source in sources])
    return margins, slopes_beyond(score - m0, sources, distance)


def slopes_beyond(score: np.ndarray, sources: np.ndarray, distance: np.ndarray) -> dict[str, float]:
    """k alone, from scores of an interval that already holds its m0: the quantile of score / d beyond the range."""
    far = distance > 1e-9
    return per_source_quantile(score / np.where(far, distance, 1.0), sources, far, floor=0.0)


def margin(sources: pd.Series, margins: dict[str, float], slopes: dict[str, float], distance: np.ndarray) -> np.ndarray:
    """m0 + k d per config (a source without its own takes POOLED's)."""
    out = sources.map(margins).fillna(margins.get(POOLED, 0.0)).to_numpy(float)
    if slopes:
        out = out + sources.map(slopes).fillna(slopes.get(POOLED, 0.0)).to_numpy(float) * distance
    return out
