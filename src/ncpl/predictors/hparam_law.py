"""A Chinchilla law with a learning-rate / batch-size bowl: the loss of a config that was not tuned.

    L = Chinchilla(N, D) + s + |B (u, v)|^2,   u = ln lr - ln lr*(N, D),   v = ln bs - ln bs*(N, D)
    ln lr* = p_opt + p_N ln N + p_D ln D,      ln bs* = q + q_N ln N + q_D ln D

Chinchilla assumes every run is tuned; a sweep is mostly runs that are not. Near its optimum the
loss is close to quadratic in log lr and log batch (DeepSeek LLM 2024, StepLaw 2025), and the
optimum moves as a power law of model size and tokens, so this law says how far an untuned run is
from the frontier and where the frontier's hyperparameters go at a size the runs never reached.
B = [[a, 0], [c, b]] (a positive semi-definite bowl) takes one a (b) below the optimal lr (batch)
and another above it: real sweeps rise far more steeply on the high-lr side, and a symmetric bowl
fitted to them puts the StepLaw optimum 3-5x too low. s is a per-source shift (the best run of a
group is not exactly at the optimum). The lr centre has one offset per optimizer (their lr scales
differ by orders of magnitude); everything else is per source, except the model-size exponents
p_N and q_N, which are shared by all sources, because one source of a single model size cannot
determine them and the best-studied ones agree that the optimum lr falls with size.

Fitted on converged runs with a soft-L1 loss (scale 0.02 nats), after the per-source Chinchilla law
through the best run of each (N, D) group. A source without two distinct lrs (or batch sizes) gets
no lr (batch) term, a config without an lr (batch) sits at the optimum, and an optimizer the source
never ran gets the mean of its offsets. As the residual baseline of NCPL and XGBoost, it leaves the
learned model the part of the loss that no smooth law explains.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from ncpl.columns import effective_params, tokens, usable
from ncpl.errors import ConfigError
from ncpl.predictors import TokenLaw
from ncpl.predictors.chinchilla import Chinchilla

N_REF, D_REF = 1e8, 1e10  # centres of ln N and ln D, so the offsets are lrs at a plausible size
LOSS_SCALE = 0.02  # soft-L1 scale (nats): runs further off the bowl than this count linearly
# What the fitted law says of a config beyond its loss (`HparamLaw.distances`), as fields a learned model can read:
# its lr and batch over the optimum the law puts at its source, N and D (ratios: positive, read on a log scale as every
# number is, so 1 is the optimum and 0.1 and 10 lie a decade either side of it)
LAW_FIELDS = ("law.lr_over_optimum", "law.batch_over_optimum")


@dataclass
class Bowl:
    shift: float = 0.0
    # B = [[a, 0], [c, b]], with a and b taking one value below the optimum and another above it
    curvature: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, 0.0, 0.0])  # a_low, a_high, c, b_low, b_high
    lr_offsets: dict[str, float] = field(default_factory=dict)  # optimizer -> p_opt; empty: no lr term
    lr_d: float = 0.0
    bs_offset: float | None = None  # None: no batch term
    bs_d: float = 0.0

    def lr_centre(self, optimizers: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, lr_n: float) -> np.ndarray:
        mean = float(np.mean(list(self.lr_offsets.values()))) if self.lr_offsets else 0.0
        offset = pd.Series(optimizers).map(self.lr_offsets).fillna(mean).to_numpy(float)
        return offset + lr_n * log_n + self.lr_d * log_d


@dataclass
class _Inputs:
    """One source's runs as the arrays the bowl reads."""

    log_n: np.ndarray
    log_d: np.ndarray
    log_lr: np.ndarray  # NaN where the config has no lr
    log_bs: np.ndarray
    optimizers: np.ndarray

    @classmethod
    def of(cls, runs: pd.DataFrame, n_tokens: np.ndarray | None = None) -> _Inputs:
        def log_column(name: str) -> np.ndarray:
            if name not in runs:
                return np.full(len(runs), np.nan)
            values = pd.to_numeric(runs[name], errors="coerce").to_numpy(float)
            return np.log(np.where(values > 0, values, np.nan))

        n_tokens = tokens(runs) if n_tokens is None else n_tokens
        optimizers = (
            runs["optimizer.name"].astype(str).to_numpy() if "optimizer.name" in runs else np.full(len(runs), "")
        )
        return cls(
            np.log(effective_params(runs) / N_REF),
            np.log(np.asarray(n_tokens, float) / D_REF),
            log_column("optimizer.lr"),
            log_column("batch.tokens"),
            optimizers,
        )


class HparamLaw(TokenLaw):
    name = "hparam-law"

    def __init__(self, loss_scale: float = LOSS_SCALE):
        self.loss_scale = loss_scale

    def fit(self, runs: pd.DataFrame) -> HparamLaw:
        runs = runs[usable(runs)]
        self.frontier_ = Chinchilla(fit_on="best").fit(runs)
        problem = _JointFit(
            {
                str(source): (_Inputs.of(group), group["final_loss"].to_numpy(float) - self.frontier_.predict(group))
                for source, group in runs.groupby("source")
            }
        )
        theta = least_squares(
            problem.residuals,
            problem.start(),
            jac=problem.jacobian,
            loss="soft_l1",
            f_scale=self.loss_scale,
            x_scale="jac",
        ).x
        lr_n, bs_n, self.bowls_ = problem.unpack(theta)
        self.lr_n_, self.bs_n_ = float(lr_n), float(bs_n)
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "bowls_")

    def predict_at(self, configs: pd.DataFrame, n_tokens: np.ndarray) -> np.ndarray:
        self._check_fitted()
        out = self.frontier_.predict_at(configs, n_tokens)  # raises for a source it was not fitted on
        sources = configs["source"].astype(str).to_numpy()
        for source in np.unique(sources):
            rows = sources == source
            out[rows] += _excess(self.bowls_[source], _Inputs.of(configs[rows], n_tokens[rows]), self.lr_n_, self.bs_n_)
        return out

    def distances(self, configs: pd.DataFrame) -> pd.DataFrame:
        """`LAW_FIELDS` of each config (index kept), exp(u) and exp(v): NaN where the config has no lr (batch) or its
        source's bowl no such term. A run's divergence and its miss both depend on how far its lr is from the optimum,
        and the law moves that optimum with N and D: read relative to it, a model need not learn that move from the
        runs."""
        self._check_fitted()
        out = pd.DataFrame(np.nan, index=configs.index, columns=list(LAW_FIELDS))
        sources = configs["source"].astype(str).to_numpy()
        for source in np.unique(sources):
            self.frontier_.law_for(source)  # raises, naming the fitted sources, for one the law never saw
            rows = sources == source
            u, v = _offsets(self.bowls_[source], _Inputs.of(configs[rows]), self.lr_n_, self.bs_n_)
            out.loc[rows, list(LAW_FIELDS)] = np.exp(np.stack([u, v], axis=1))
        return out

    def get_state(self) -> dict[str, Any]:
        return {
            "loss_scale": self.loss_scale,
            "frontier": self.frontier_.get_state(),
            "lr_n": self.lr_n_,
            "bs_n": self.bs_n_,
            "bowls": {source: asdict(bowl) for source, bowl in self.bowls_.items()},
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.loss_scale, self.lr_n_, self.bs_n_ = state["loss_scale"], state["lr_n"], state["bs_n"]
        self.frontier_ = Chinchilla()
        self.frontier_.set_state(state["frontier"])
        self.bowls_ = {source: Bowl(**bowl) for source, bowl in state["bowls"].items()}


def _offsets(bowl: Bowl, inputs: _Inputs, lr_n: float, bs_n: float) -> tuple[np.ndarray, np.ndarray]:
    """(u, v): log lr and log batch above their optimum; NaN where the config has no lr (batch) or the bowl no term."""
    u = np.full_like(inputs.log_n, np.nan)
    v = np.full_like(inputs.log_n, np.nan)
    if bowl.lr_offsets:
        u = inputs.log_lr - bowl.lr_centre(inputs.optimizers, inputs.log_n, inputs.log_d, lr_n)
    if bowl.bs_offset is not None:
        v = inputs.log_bs - (bowl.bs_offset + bs_n * inputs.log_n + bowl.bs_d * inputs.log_d)
    return u, v


def _distances(bowl: Bowl, inputs: _Inputs, lr_n: float, bs_n: float) -> tuple[np.ndarray, np.ndarray]:
    """`_offsets` with 0 (the optimum) where there is none."""
    u, v = _offsets(bowl, inputs, lr_n, bs_n)
    return np.nan_to_num(u), np.nan_to_num(v)


def _excess(bowl: Bowl, inputs: _Inputs, lr_n: float, bs_n: float) -> np.ndarray:
    """Loss above the frontier: the shift plus the bowl at the config's distance from the optimum."""
    u, v = _distances(bowl, inputs, lr_n, bs_n)
    a_low, a_high, c, b_low, b_high = bowl.curvature
    a, b = np.where(u < 0, a_low, a_high), np.where(v < 0, b_low, b_high)
    return bowl.shift + (a * u) ** 2 + (c * u + b * v) ** 2


def _excess_jacobian(
    layout: _Layout, bowl: Bowl, inputs: _Inputs, lr_n: float, bs_n: float
) -> tuple[np.ndarray, np.ndarray]:
    """The derivatives of `_excess` by (lr_n, bs_n) and by the source's own parameters, in `_Layout.bowl`'s order."""
    u, v = _distances(bowl, inputs, lr_n, bs_n)
    a_low, a_high, c, b_low, b_high = bowl.curvature
    below_u, below_v = u < 0, v < 0
    a, b = np.where(below_u, a_low, a_high), np.where(below_v, b_low, b_high)
    w = c * u + b * v
    # d excess / d centre of u (v): the centre moves u by -1; rows without an lr (batch) do not move
    d_lr = -(2 * a * a * u + 2 * w * c) * np.isfinite(inputs.log_lr)
    d_bs = -(2 * w * b) * np.isfinite(inputs.log_bs)
    columns = [np.ones_like(u)]
    if layout.has_lr:
        columns += [2 * a_low * u * u * below_u, 2 * a_high * u * u * ~below_u]
    if layout.has_lr and layout.has_bs:
        columns.append(2 * w * u)
    if layout.has_bs:
        columns += [2 * w * v * below_v, 2 * w * v * ~below_v]
    columns += [d_lr * (inputs.optimizers == name) for name in layout.optimizers]
    if layout.has_lr and layout.has_d:
        columns.append(d_lr * inputs.log_d)
    if layout.has_bs:
        columns.append(d_bs)
    if layout.has_bs and layout.has_d:
        columns.append(d_bs * inputs.log_d)
    shared = np.stack(
        [d_lr * inputs.log_n if layout.has_lr else 0 * u, d_bs * inputs.log_n if layout.has_bs else 0 * u], 1
    )
    return shared, np.stack(columns, axis=1)


class _JointFit:
    """The least-squares problem of every source's bowl at once: theta = (lr_n, bs_n, each source's parameters).

    The Jacobian is analytic, so a step costs one pass over the runs instead of one a parameter (StepLaw + Marin
    on one core: 18-23 s -> 9-13 s; all nine sources: 0.5-1 min). Where a source's runs all lie on one side of an
    optimizer's optimum, the fit slides along a flat valley (its offset drifting, the curvature shrinking) and may stop at
    least_squares' step limit: on the StepLaw + Marin dev runs, stopping at the default limit instead of 8000 steps
    moves single predictions by up to 0.003 nats and the MAE of every benchmark split by less than 1e-4.
    """

    def __init__(self, data: dict[str, tuple[_Inputs, np.ndarray]]):
        self.data = data  # source -> (its inputs, its runs' loss above the frontier)
        self.layout = {source: _Layout.of(inputs) for source, (inputs, _) in data.items()}
        self.shared_n = any(len(np.unique(inputs.log_n)) > 1 for inputs, _ in data.values())

    def start(self) -> np.ndarray:
        return np.concatenate([[-0.5, 0.0]] + [lay.start for lay in self.layout.values()])

    def unpack(self, theta: np.ndarray) -> tuple[float, float, dict[str, Bowl]]:
        lr_n, bs_n = (theta[0], theta[1]) if self.shared_n else (0.0, 0.0)
        start, bowls = 2, {}
        for source, lay in self.layout.items():
            bowls[source] = lay.bowl(theta[start : start + lay.size])
            start += lay.size
        return lr_n, bs_n, bowls

    def residuals(self, theta: np.ndarray) -> np.ndarray:
        lr_n, bs_n, bowls = self.unpack(theta)
        return np.concatenate(
            [_excess(bowls[s], inputs, lr_n, bs_n) - excess for s, (inputs, excess) in self.data.items()]
        )

    def jacobian(self, theta: np.ndarray) -> np.ndarray:
        lr_n, bs_n, bowls = self.unpack(theta)
        out = np.zeros((sum(len(excess) for _, excess in self.data.values()), len(theta)))
        row, column = 0, 2
        for source, (inputs, excess) in self.data.items():
            lay = self.layout[source]
            shared, own = _excess_jacobian(lay, bowls[source], inputs, lr_n, bs_n)
            rows = slice(row, row + len(excess))
            out[rows, :2] = shared if self.shared_n else 0.0
            out[rows, column : column + lay.size] = own
            row, column = row + len(excess), column + lay.size
        return out


@dataclass
class _Layout:
    """Which of a source's bowl parameters the runs can determine, and where they start."""

    optimizers: list[str]
    has_lr: bool
    has_bs: bool
    has_d: bool
    start: np.ndarray

    @classmethod
    def of(cls, inputs: _Inputs) -> _Layout:
        has_lr = len(np.unique(inputs.log_lr[np.isfinite(inputs.log_lr)])) > 1
        has_bs = len(np.unique(inputs.log_bs[np.isfinite(inputs.log_bs)])) > 1
        has_d = len(np.unique(inputs.log_d)) > 1
        optimizers = sorted(set(inputs.optimizers)) if has_lr else []
        lr_start = [float(np.nanmedian(inputs.log_lr[inputs.optimizers == name])) for name in optimizers]
        lr_start += [0.0] if has_lr and has_d else []
        bs_start = ([float(np.nanmedian(inputs.log_bs))] + ([0.0] if has_d else [])) if has_bs else []
        curvature_start = (
            ([0.2, 0.2] if has_lr else []) + ([0.0] if has_lr and has_bs else []) + ([0.1, 0.1] if has_bs else [])
        )
        return cls(optimizers, has_lr, has_bs, has_d, np.array([0.0] + curvature_start + lr_start + bs_start))

    @property
    def size(self) -> int:
        return len(self.start)

    def bowl(self, theta: np.ndarray) -> Bowl:
        values = list(map(float, theta))
        take = lambda count: [values.pop(0) for _ in range(count)]  # noqa: E731
        (shift,) = take(1)
        a_low, a_high = take(2) if self.has_lr else [0.0, 0.0]
        (c,) = take(1) if self.has_lr and self.has_bs else [0.0]
        b_low, b_high = take(2) if self.has_bs else [0.0, 0.0]
        lr_offsets = dict(zip(self.optimizers, take(len(self.optimizers))))
        (lr_d,) = take(1) if self.has_lr and self.has_d else [0.0]
        (bs_offset,) = take(1) if self.has_bs else [None]
        (bs_d,) = take(1) if self.has_bs and self.has_d else [0.0]
        return Bowl(shift, [a_low, a_high, c, b_low, b_high], lr_offsets, lr_d, bs_offset, bs_d)


def with_law_fields(configs: pd.DataFrame, law: HparamLaw | None) -> pd.DataFrame:
    """The configs with `law`'s `LAW_FIELDS` written (over any a frame carries), or, without a law, with none of them:
    a model that does not read them must not read stale copies either."""
    if law is None:
        return configs.drop(columns=list(LAW_FIELDS), errors="ignore")
    return configs.assign(**law.distances(configs))


def residual_law(name: str, fit_on: str = "best") -> TokenLaw:
    """An unfitted law that a learned model takes the residual over: "chinchilla" or "hparam-law"."""
    if name == "chinchilla":
        return Chinchilla(fit_on=fit_on)
    if name == "hparam-law":
        return HparamLaw()
    raise ConfigError(f"baseline: got {name!r}, expected 'chinchilla' or 'hparam-law'")
