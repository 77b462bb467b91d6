"""Robust least squares from several starting points: the one fitting loop every curve law uses."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from scipy.optimize import OptimizeResult, least_squares


def robust_fit(
    residuals: Callable[[np.ndarray], np.ndarray],
    starts: Iterable[np.ndarray],
    lower,
    upper,
    *,
    loss: str = "huber",
    f_scale: float = 1e-3,
    max_nfev: int | None = None,
) -> OptimizeResult:
    """The lowest-cost bounded `least_squares` over `starts` (each clipped inside the bounds).

    loss / f_scale: residuals beyond f_scale weigh linearly, so a few noisy points cannot steer the fit.
    """
    low, high = np.asarray(lower, float), np.asarray(upper, float)
    finite_low, finite_high = np.where(np.isfinite(low), low, 0.0), np.where(np.isfinite(high), high, 1e6)
    inside_low = low + 1e-9 * np.maximum(1.0, np.abs(finite_low))
    inside_high = np.minimum(finite_high - 1e-9 * np.maximum(1.0, np.abs(finite_high)), 1e6)
    best = None
    for start in starts:
        x0 = np.clip(np.asarray(start, float), inside_low, inside_high)
        result = least_squares(residuals, x0, bounds=(low, high), loss=loss, f_scale=f_scale, max_nfev=max_nfev)
        if best is None or result.cost < best.cost:
            best = result
    if best is None:
        raise ValueError("robust_fit: no starting point given")
    return best
