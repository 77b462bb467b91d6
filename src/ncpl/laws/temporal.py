"""Forecasting the rest of one run's loss curve from an observed prefix of it (tokens, loss).

Temporal scaling law (Xiong et al., arXiv 2404.17785): the loss at token position i of a sequence
is hyperbolic, L(i) = a0 / (1 + a1 i) + a2, with a0, a1, a2 smooth in the training tokens t. Logs
hold only the loss averaged over positions, so `TemporalLaw` fits that average over 1..n (n = 2048),
in closed form (midpoint-rule integral):

    L(t) = a2 + a0 [ln(1 + a1 (n + 1/2)) - ln(1 + a1 / 2)] / (n a1), with x = t / t_ref
    a2(t) = E + A x^-alpha   the loss with the full context: a power law in tokens
    a1(t) = c x^gamma        the context is used more sharply as training goes on
    a0(t) = U - a2(t)        the loss at the first position (no context) stays at U

U, a unigram-level loss learned in the first steps, cannot be told apart from c in an averaged loss,
so it is fixed (8 nats) and five numbers are fitted: E, A, alpha <= 1.5, c, gamma (t_ref = the last
observed tokens). Chosen by measurement (benchmarks/curves_extrapolation.py, the 16 constant-lr
Gemstones curves to 350B tokens, mean |error| of the end loss from a 20% prefix): this form 0.005
(with alpha up to 3: 0.010, and 0.006-0.010 for any U in 6..12); U fitted too 0.017; a0 a free constant
0.019; only a1 evolving (a2 constant) 0.037, no better than the power law E + A t^-a (`PowerLaw`,
0.037). The alpha bound was picked on these curves; the 100B-token curves agree (0.033 vs 0.037).
The power law, pulled by the fast early drop, flattens too soon; here the growth of a1 carries a
slow, log-corrected decay ~ x^-gamma ln x and A x^-alpha takes up the first checkpoints' drop.
Schedules with a decay (cosine) are not modelled: use the law on constant-lr stretches.

Both laws are linear in their coefficients (E, A) once the exponents are fixed: each is fitted by
nonnegative least squares on a grid of the nonlinear parameters, then the best few grid points are
refined by bounded `least_squares` with a soft-L1 loss.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

from ncpl.errors import ConfigError, NotFittedError
from ncpl.laws.fitting import robust_fit
from ncpl.laws.schedule_io import read_columns

NOISE = 0.01  # nats: residuals beyond this weigh linearly (soft L1), so one noisy checkpoint cannot steer a fit
STARTS = 3  # best grid points refined


def check_curve(tokens, loss, min_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Finite, positive, strictly increasing tokens with one finite loss each, at least `min_points`."""
    t, y = np.asarray(tokens, float), np.asarray(loss, float)
    if t.ndim != 1 or t.shape != y.shape:
        raise ConfigError(f"tokens, loss: got {t.size} and {y.size} values; give one loss per token count")
    for name, values in (("tokens", t), ("loss", y)):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise ConfigError(
                f"{name}: {values[bad[0]]} at point {bad[0] + 1}; drop or fill the {bad.size} such points"
            )
    if t.size < min_points:
        raise ConfigError(f"tokens: {t.size} points, the law needs at least {min_points}; observe a longer prefix")
    if t[0] <= 0:
        raise ConfigError(f"tokens: got {t[0]:g} at point 1; token counts must be positive")
    step = np.flatnonzero(np.diff(t) <= 0)
    if step.size:
        i = step[0]
        raise ConfigError(
            f"tokens: not increasing at point {i + 2} ({t[i]:g} then {t[i + 1]:g}); sort the curve by "
            "tokens and drop repeated token counts"
        )
    return t, y


def read_curve(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Columns `tokens` and `loss` of a CSV or JSONL file."""
    names = ("tokens", "loss")
    columns = read_columns(path, names, names, "a CSV or JSONL file with columns tokens and loss")
    try:
        return check_curve(columns["tokens"], columns["loss"], min_points=1)
    except ConfigError as error:
        raise ConfigError(f"{path}: column {error}") from None


class CurveLaw:
    """A law of the loss in training tokens: `terms` gives the columns multiplied by the nonnegative
    coefficients and a fixed offset, for the nonlinear parameters theta."""

    name = ""
    theta_names: tuple[str, ...] = ()
    coef_names: tuple[str, ...] = ()
    grid: tuple[np.ndarray, ...] = ()
    lower: tuple[float, ...] = ()
    upper: tuple[float, ...] = ()

    @property
    def min_points(self) -> int:
        return len(self.theta_names) + len(self.coef_names) + 1

    def terms(self, x: np.ndarray, theta: np.ndarray) -> tuple[list[np.ndarray], np.ndarray | float]:
        raise NotImplementedError

    def _value(self, x: np.ndarray, theta: np.ndarray, coef: np.ndarray) -> np.ndarray:
        columns, offset = self.terms(x, theta)
        return np.column_stack(columns) @ coef + offset

    def fit(self, tokens, loss) -> CurveLaw:
        t, y = check_curve(tokens, loss, self.min_points)
        self.t_ref_ = float(t[-1])
        x = t / self.t_ref_
        scored = []
        for theta in itertools.product(*self.grid):
            columns, offset = self.terms(x, np.array(theta))
            coef, norm = nnls(np.column_stack(columns), y - offset)
            scored.append((norm, theta, coef))
        scored.sort(key=lambda item: item[0])
        k = len(self.theta_names)
        low = np.concatenate([self.lower, np.zeros(len(self.coef_names))])
        high = np.concatenate([self.upper, np.full(len(self.coef_names), np.inf)])
        best = robust_fit(
            lambda p: self._value(x, p[:k], p[k:]) - y,
            [np.concatenate([theta, coef]) for _, theta, coef in scored[:STARTS]],
            low,
            high,
            loss="soft_l1",
            f_scale=NOISE,
        )
        self.theta_, self.coef_ = best.x[:k], best.x[k:]
        return self

    def predict(self, tokens) -> np.ndarray:
        if not hasattr(self, "coef_"):
            raise NotFittedError(f"this {self.name} law is not fitted: call fit() with a measured curve first")
        return self._value(np.asarray(tokens, float) / self.t_ref_, self.theta_, self.coef_)

    @property
    def params(self) -> dict[str, float]:
        return {
            "t_ref": self.t_ref_,
            **dict(zip(self.theta_names + self.coef_names, map(float, [*self.theta_, *self.coef_]))),
        }


class PowerLaw(CurveLaw):
    """L = E + A x^-alpha, x = tokens / t_ref: the baseline."""

    name = "power"
    theta_names = ("alpha",)
    coef_names = ("E", "A")
    grid = (np.linspace(0.05, 2.0, 40),)
    lower, upper = (0.01,), (3.0,)

    def terms(self, x, theta):
        return [np.ones_like(x), x ** -theta[0]], 0.0


def position_mean(a1: np.ndarray, n: int) -> np.ndarray:
    """Mean over positions 1..n of 1 / (1 + a1 i)."""
    a1 = np.maximum(a1, 1e-12)
    return (np.log1p(a1 * (n + 0.5)) - np.log1p(a1 * 0.5)) / (n * a1)


class TemporalLaw(CurveLaw):
    """The position-averaged temporal law of the module docstring; `seq_len` n, `context_free_loss` U."""

    name = "temporal"
    theta_names = ("log10_c", "gamma", "alpha")
    coef_names = ("E", "A")
    grid = (np.linspace(-5.0, 2.0, 15), np.linspace(0.0, 2.5, 11), np.linspace(0.05, 1.5, 8))
    lower, upper = (-7.0, 0.0, 0.01), (3.0, 4.0, 1.5)

    def __init__(self, seq_len: int = 2048, context_free_loss: float = 8.0) -> None:
        self.seq_len, self.context_free_loss = seq_len, context_free_loss

    def terms(self, x, theta):
        # L = a2 + (U - a2) h = E (1 - h) + A x^-alpha (1 - h) + U h, h the position mean at a1 = c x^gamma
        h = position_mean(10 ** theta[0] * x ** theta[1], self.seq_len)
        return [1 - h, x ** -theta[2] * (1 - h)], self.context_free_loss * h


LAWS: dict[str, type[CurveLaw]] = {"temporal": TemporalLaw, "power": PowerLaw}


def forecast_tokens(observed: np.ndarray, until: float, max_points: int = 200) -> np.ndarray:
    """Token counts after the last observed one up to `until`, at the observed spacing (at most max_points)."""
    last = float(observed[-1])
    if not until > last:
        raise ConfigError(f"until: got {until:g}, must exceed the last observed tokens {last:g}")
    step = float(np.median(np.diff(observed))) if len(observed) > 1 else until - last
    points = int(np.clip(np.ceil((until - last) / step), 1, max_points))
    return np.linspace(last, until, points + 1)[1:]


def draw_forecast(
    ax, tokens: np.ndarray, law: CurveLaw, until: float, label: str | None = None, color: str = "C1"
) -> None:
    """The law over the observed range (dashed) and beyond it up to `until` (solid)."""
    fitted = np.geomspace(tokens[0], tokens[-1], 100)
    ahead = np.linspace(tokens[-1], until, 100)
    ax.plot(fitted, law.predict(fitted), color=color, ls="--", lw=1)
    ax.plot(ahead, law.predict(ahead), color=color, lw=1.5, label=label or f"{law.name} law forecast")


def plot_forecast(
    tokens: np.ndarray, loss: np.ndarray, law: CurveLaw, until: float, path: str | Path, title: str = ""
) -> Path:
    from matplotlib.figure import Figure  # not pyplot: no backend switch, no global state

    from ncpl.plots import save_figure

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.scatter(tokens, loss, s=8, color="C0", label="observed")
    draw_forecast(ax, tokens, law, until)
    ax.set(xlabel="tokens", ylabel="loss", title=title)
    ax.legend()
    return save_figure(fig, path)
