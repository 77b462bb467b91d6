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
