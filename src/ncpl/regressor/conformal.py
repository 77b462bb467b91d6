"""The conformal calibration of NCPL's 10-90% interval: per source, a margin m0 + k_N d_N + k_D d_D, d_N and d_D
the decades beyond the training range in model size and in tokens (`training_range.axis_distances`).

Conformalized quantile regression (Romano et al. 2019), per source (Mondrian conformal prediction). m0 makes the
quantile heads' interval hold COVERAGE of a source's calibration runs inside the training range; k_N (k_D) is the
conformal quantile of the normalised scores (score - m0) / d of the runs beyond it mostly in N (in D) (locally
weighted conformal prediction, Lei et al. 2018), at least 0. A decade in N does not cost what one in D does, and
a source of one model size never steps in N: a source without its own k of an axis takes the quantile over the
sources that stepped along it (POOLED), and only where none did, its own k of the other axis (then POOLED's).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

POOLED = "*"  # the margin of a source without calibration runs
AXES = ("N", "D")
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


# axis ("N" or "D") -> source (or POOLED) -> k; an axis no calibration run stepped along is absent
Slopes = dict[str, dict[str, float]]


def calibrate(score: np.ndarray, sources: np.ndarray, distances: np.ndarray) -> tuple[dict[str, float], Slopes]:
    """(m0, k) per source from the conformity scores of calibration runs and their (d_N, d_D) distances; k = {}
    when no run lies beyond the training range."""
    total = distances.sum(axis=1)
    inside, beyond = total <= 1e-9, total > 1e-9
    margins = per_source_quantile(score, sources, inside if inside.any() else beyond)
    m0 = np.array([margins.get(source, margins.get(POOLED, 0.0)) for source in sources])
    return margins, slopes_beyond(score - m0, sources, distances)


def slopes_beyond(score: np.ndarray, sources: np.ndarray, distances: np.ndarray) -> Slopes:
    """k alone, from scores of an interval that already holds its m0: per axis, the quantile of score / d over the
    runs beyond the range that step mostly along it."""
    total = distances.sum(axis=1)
    far = total > 1e-9
    along = np.argmax(distances, axis=1)
    normalised = score / np.where(far, total, 1.0)
    slopes = {
        axis: per_source_quantile(normalised, sources, far & (along == i), floor=0.0) for i, axis in enumerate(AXES)
    }
    return {axis: k for axis, k in slopes.items() if k}


def as_axes(slopes: dict) -> Slopes:
    """Slopes saved before they had an axis ({source: k}, one k a decade of either) in today's form."""
    if slopes and not set(slopes) <= set(AXES):
        return {axis: dict(slopes) for axis in AXES}
    return slopes


def margin(sources: pd.Series, margins: dict[str, float], slopes: Slopes, distances: np.ndarray) -> np.ndarray:
    """m0 + k_N d_N + k_D d_D per config; k of an axis from the source, else POOLED, else the other axis'."""
    out = sources.map(margins).fillna(margins.get(POOLED, 0.0)).to_numpy(float)
    for i, axis in enumerate(AXES):
        k = pd.Series(np.nan, index=sources.index)
        for known in (slopes.get(axis, {}), slopes.get(AXES[1 - i], {})):
            k = k.fillna(sources.map(known)).fillna(known.get(POOLED, np.nan))
        out = out + k.fillna(0.0).to_numpy(float) * distances[:, i]
    return out
