"""Hyperparameters for continued pre-training (Zhou et al. 2026, arXiv 2606.05610).

From grids of from-scratch runs: the best converged run of each (N, D) group gives a point
(C = 6ND, loss, lr, batch); through those points go a loss-compute law L(C) = E + A C^-alpha and
power laws lr_opt = k C^c N^n, batch_opt (tokens) = k C^c N^n (n = 0 unless fitted with
``with_n``). A checkpoint with loss L has the *equivalent pre-training compute* C_eq = L^-1(L);
continuing it for D_planned tokens is treated as a from-scratch run of C_eq + 6 N D_planned.

The inversion only means something for a loss measured the way the fitted runs measured theirs:
same data mix, tokenizer and loss kind (StepLaw's is a smoothed training loss on its own mix). A
checkpoint evaluated on other data lands at an arbitrary C_eq. L(C) also ignores how C splits into
N and D: on StepLaw's held-out larger shape the inversion put checkpoints at 1.2x to 4x their true
compute (benchmarks/cpt_laws.py).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict
from scipy.optimize import least_squares, minimize_scalar

from ncpl.columns import best_runs, compute, effective_params
from ncpl.errors import ConfigError, DataError
from ncpl.schema import read_config, save
from ncpl.sources import ImportFailed, import_runs
from ncpl.store import read_runs, to_frame

MIN_GROUPS = 3


class _Law(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LossLaw(_Law):
    """L(C) = E + A C^-alpha."""

    E: float
    A: float
    alpha: float

    def __call__(self, flops: np.ndarray | float) -> np.ndarray:
        return self.E + self.A * np.asarray(flops, float) ** -self.alpha

    def inverse(self, loss: float) -> float:
        """The compute at which the law reaches `loss`."""
        if not math.isfinite(loss) or loss <= self.E:
            raise ConfigError(
                f"loss: got {loss}, at or below the fitted loss floor E = {self.E:.4f} that L(C) = E + A C^-alpha "
                "never reaches; give a loss above it, measured on the same data and tokenizer as the fitted runs"
            )
        return float((self.A / (loss - self.E)) ** (1 / self.alpha))


class ComputeLaw(_Law):
    """y = k C^c N^n."""

    k: float
    c: float
    n: float = 0.0

    def __call__(self, flops: np.ndarray | float, n_params: np.ndarray | float) -> np.ndarray:
        return self.k * np.asarray(flops, float) ** self.c * np.asarray(n_params, float) ** self.n


class CPTLaws(_Law):
    source: str
    groups: int
    flops_range: tuple[float, float]
    seq_len: int | None = None
    loss: LossLaw
    lr: ComputeLaw
    batch: ComputeLaw

    def save(self, path: str | Path) -> None:
        save(self, path)

    @classmethod
    def load(cls, path: str | Path) -> CPTLaws:
        return read_config(path, cls)

    def at(self, flops: float, n_params: float) -> dict[str, float]:
        """Predicted lr and batch of a from-scratch run of `flops` compute and `n_params` parameters."""
        out = {"lr": float(self.lr(flops, n_params)), "batch_tokens": float(self.batch(flops, n_params))}
        if self.seq_len:
            out["batch_sequences"] = out["batch_tokens"] / self.seq_len
        return out

    def predict(self, loss: float, n_params: float, planned_tokens: float) -> dict[str, float]:
        """Equivalent compute of a checkpoint with this loss, and the lr and batch for its continuation."""
        if not n_params > 0:
            raise ConfigError(f"n_params: got {n_params}, expected a positive parameter count (non-embedding)")
        if not planned_tokens >= 0:
            raise ConfigError(f"planned_tokens: got {planned_tokens}, expected a token count >= 0")
        c_eq = self.loss.inverse(loss)
        c_total = c_eq + 6 * n_params * planned_tokens
        return {
            "C_eq": c_eq,
            "equivalent_tokens": c_eq / (6 * n_params),
            "C_total": c_total,
            **self.at(c_total, n_params),
        }


def read_grid(path: str | Path) -> pd.DataFrame:
    """Runs to fit the laws on: a runs Parquet file, or StepLaw's dense CSV read through its importer."""
    if Path(path).suffix != ".csv":
        return read_runs(path)
    try:
        return to_frame(import_runs("steplaw", [path]).records)
    except ImportFailed as error:
        raise DataError(
            f"path: {error}; a .csv must be StepLaw's dense_lr_bs_loss.csv, other runs a Parquet file "
            "from `ncpl data import`"
        ) from None


def fit_loss_law(flops: np.ndarray, loss: np.ndarray) -> LossLaw:
    """Least squares on log L; E profiled over [0, min L) with log(L - E) linear in log C, then polished."""
    log_c, log_l = np.log(flops), np.log(loss)

    def line(e: float) -> tuple[float, float]:
        slope, intercept = np.polyfit(log_c, np.log(loss - e), 1)
        return intercept, -slope

    def sse(e: float) -> float:
        log_a, alpha = line(e)
        return float(np.sum((np.log(e + np.exp(log_a - alpha * log_c)) - log_l) ** 2))

    top = float(loss.min()) * (1 - 1e-6)
    e0 = minimize_scalar(sse, bounds=(0.0, top), method="bounded").x
    low, high = [0.0, -np.inf, 1e-6], [top, np.inf, np.inf]
    start = np.clip([e0, *line(e0)], low, high)  # a grid whose best loss does not fall with C profiles alpha <= 0
    result = least_squares(lambda p: np.log(p[0] + np.exp(p[1] - p[2] * log_c)) - log_l, start, bounds=(low, high))
    e, log_a, alpha = result.x
    return LossLaw(E=float(e), A=float(np.exp(log_a)), alpha=float(alpha))


def fit_power_law(flops: np.ndarray, n_params: np.ndarray, y: np.ndarray, with_n: bool) -> ComputeLaw:
    """Least squares in log space."""
    columns = [np.ones_like(flops), np.log(flops)] + ([np.log(n_params)] if with_n else [])
    coef = np.linalg.lstsq(np.stack(columns, axis=1), np.log(y), rcond=None)[0]
    return ComputeLaw(k=float(np.exp(coef[0])), c=float(coef[1]), n=float(coef[2]) if with_n else 0.0)


def fit_laws(runs: pd.DataFrame, *, with_n: bool | None = None, min_size: int = 5) -> CPTLaws:
    """The laws through the best run of each (N, D) group of one source's runs.

    with_n: N enters the lr and batch laws; None = when the runs have more than one model size.
    On the held-out StepLaw shape it cut the regret from 0.021 to 0.008 (benchmarks/cpt_laws.py):
    at fixed C a larger model trains on fewer tokens, and the optimal batch follows the tokens.
    """
    sources = runs["source"].astype(str).unique()
    if len(sources) != 1:
        raise ConfigError(f"source: got runs of {sorted(sources)}; losses compare only within one source, fit on one")
    best = best_runs(runs, min_size)
    if len(best) < MIN_GROUPS:
        raise ConfigError(
            f"runs: {len(best)} (N, D) groups with >= {min_size} converged runs; "
            f"the laws need at least {MIN_GROUPS} (a grid over lr x batch at several N and D)"
        )
    missing = [c for c in ("optimizer.lr", "batch.tokens") if c not in best or best[c].isna().any()]
    if missing:
        raise ConfigError(
            f"{', '.join(missing)}: missing on some best runs; the laws need each run's lr and batch (tokens)"
        )
    n_params, flops = effective_params(best), compute(best)
    if with_n is None:
        with_n = len(np.unique(n_params)) > 1
    if with_n and len(np.unique(n_params)) < 2:
        raise ConfigError("with_n: the runs have one model size; N cannot enter the laws")
    seq = best["model.seq_len"].dropna().unique() if "model.seq_len" in best else []
    return CPTLaws(
        source=str(sources[0]),
        groups=len(best),
        flops_range=(float(flops.min()), float(flops.max())),
        seq_len=int(seq[0]) if len(seq) == 1 else None,
        loss=fit_loss_law(flops, best["final_loss"].to_numpy(float)),
        lr=fit_power_law(flops, n_params, best["optimizer.lr"].to_numpy(float), with_n),
        batch=fit_power_law(flops, n_params, best["batch.tokens"].to_numpy(float), with_n),
    )
