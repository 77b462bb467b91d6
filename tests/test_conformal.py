"""The interval's calibration: m0 inside the training range, a slope per axis (N, D) beyond it, borrowed across
sources along an axis a source never stepped in."""

import numpy as np
import pandas as pd
import pytest

from ncpl.regressor import conformal
from ncpl.regressor.conformal import POOLED


def test_slopes_per_axis_and_who_borrows_what():
    rng = np.random.default_rng(0)
    # source a steps in N (0.1 decades, scores 0.02 above m0: k_N = 0.2); b only in D (0.3 decades, 0.003: k_D = 0.01)
    n = 4000
    sources = np.array(["a"] * n + ["b"] * n)
    distances = np.zeros((2 * n, 2))
    distances[:n, 0], distances[n:, 1] = 0.1, 0.3
    score = np.concatenate([rng.uniform(0, 0.025, n), rng.uniform(0, 0.00375, n)])
    slopes = conformal.slopes_beyond(score, sources, distances)
    assert set(slopes["N"]) == {"a", POOLED} and set(slopes["D"]) == {"b", POOLED}
    assert slopes["N"]["a"] == pytest.approx(0.2, rel=0.05) and slopes["D"]["b"] == pytest.approx(0.01, rel=0.05)
    margins = {"a": 0.001, "b": 0.002}
    ask = pd.Series(["a", "b", "b", "c"])
    step = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    got = conformal.margin(ask, margins, slopes, step)
    # a's D step borrows POOLED D (= b's); b's N step borrows POOLED N (= a's); c, never seen, takes POOLED of each
    assert got == pytest.approx(
        [
            0.001 + slopes["D"][POOLED],
            0.002 + slopes["N"][POOLED],
            0.002 + slopes["D"]["b"],
            0.0 + slopes["N"][POOLED] + slopes["D"][POOLED],
        ]
    )
    only_d = {"D": slopes["D"]}  # nobody stepped in N: a decade in N costs what one in D does
    assert conformal.margin(ask, margins, only_d, step)[1] == pytest.approx(0.002 + slopes["D"]["b"])
    assert conformal.slopes_beyond(score, sources, np.zeros_like(distances)) == {}


def test_slopes_saved_before_axes_load_as_one_slope_for_both():
    old = {"marin": 0.03, POOLED: 0.05}
    assert conformal.as_axes(old) == {"N": old, "D": old}
    assert conformal.as_axes({}) == {} and conformal.as_axes({"D": old}) == {"D": old}
    step = np.array([[0.2, 0.1]])
    assert conformal.margin(pd.Series(["marin"]), {}, conformal.as_axes(old), step)[0] == pytest.approx(0.03 * 0.3)
