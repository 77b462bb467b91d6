"""StepLaw (Li et al. 2025, arXiv 2503.04715): the optimal AdamW peak lr and batch size from N and D.

lr_opt = 1.79 N^-0.713 D^0.307 and batch_opt = 0.58 D^0.571 tokens, N non-embedding parameters,
D training tokens. As a tuning baseline it picks, among candidate runs at one (N, D), the one
nearest the law in log space.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ncpl.columns import effective_params, tokens


def optimal_lr(n_params: np.ndarray, n_tokens: np.ndarray) -> np.ndarray:
    return 1.79 * np.asarray(n_params, float) ** -0.713 * np.asarray(n_tokens, float) ** 0.307


def optimal_batch_tokens(n_tokens: np.ndarray) -> np.ndarray:
    return 0.58 * np.asarray(n_tokens, float) ** 0.571


def distance_from_optimum(configs: pd.DataFrame) -> np.ndarray:
    """Log-space distance of each config's (lr, batch tokens) from the law's optimum at its (N, D)."""
    n, d = effective_params(configs), tokens(configs)
    lr = configs["optimizer.lr"].to_numpy(float)
    batch = configs["batch.tokens"].to_numpy(float)
    return np.hypot(np.log(lr / optimal_lr(n, d)), np.log(batch / optimal_batch_tokens(d)))


def pick(candidates: pd.DataFrame) -> int:
    """Positional index of the candidate nearest the law (candidates without lr or batch never win)."""
    return int(np.nanargmin(np.where(np.isfinite(dist := distance_from_optimum(candidates)), dist, np.inf)))
