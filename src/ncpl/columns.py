"""Derived quantities of a runs table that several modules need."""

from __future__ import annotations

import numpy as np
import pandas as pd


def effective_params(frame: pd.DataFrame) -> np.ndarray:
    """Non-embedding parameters that touch a token: active ones for MoE, all of them for dense."""
    n = frame["model.n_params"].to_numpy(float)
    if "model.n_params_active" in frame:
        n = frame["model.n_params_active"].fillna(frame["model.n_params"]).to_numpy(float)
    return n


def tokens(frame: pd.DataFrame) -> np.ndarray:
    return frame["data.tokens"].to_numpy(float)


def compute(frame: pd.DataFrame) -> np.ndarray:
    """Training FLOPs, 6 N D."""
    return 6.0 * effective_params(frame) * tokens(frame)


def usable(frame: pd.DataFrame) -> pd.Series:
    """Runs with a finite loss that did not diverge: what a law of the loss is fitted on."""
    loss = pd.to_numeric(frame["final_loss"], errors="coerce")
    return np.isfinite(loss) & ~frame["diverged"].fillna(False).astype(bool)


def hparam_groups(runs: pd.DataFrame, min_size: int = 1, by_optimizer: bool = False) -> list[np.ndarray]:
    """Positional indices of each (source, N, D) group with at least `min_size` runs; with `by_optimizer`, each
    (source, N, D, optimizer) group (a user tunes one optimizer's hyperparameters; Marin pools 11 in a group)."""
    keys = pd.DataFrame({"source": runs["source"].to_numpy(), "n": effective_params(runs), "d": tokens(runs)})
    if by_optimizer and "optimizer.name" in runs:
        keys["optimizer"] = runs["optimizer.name"].astype(str).to_numpy()
    return [np.asarray(rows) for rows in keys.groupby(list(keys.columns)).indices.values() if len(rows) >= min_size]


def best_runs(runs: pd.DataFrame, min_size: int = 1) -> pd.DataFrame:
    """The lowest-loss run of each (source, N, D) group of at least `min_size` converged runs."""
    ok = runs[usable(runs)].reset_index(drop=True)
    rows = [group[np.argmin(ok["final_loss"].to_numpy(float)[group])] for group in hparam_groups(ok, min_size)]
    return ok.iloc[sorted(rows)]
