"""The mean of several predictors: members with different errors (a language model reading the
config, trees on the same fields) average to a better ranking than either out of distribution.

Saved as a directory with one sub-directory a member (`member-0/`, ...), each loadable on its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ncpl.errors import ConfigError
from ncpl.predictors import Predictor, load_predictor


class Ensemble(Predictor):
    """Weighted mean of the members' losses. The members are settings that carry their own fitted state: `fit` fits
    each of them on the same runs, and an ensemble of fitted members predicts without it."""

    name = "ensemble"

    def __init__(self, members: list[Predictor] | None = None, weights: list[float] | None = None):
        if weights is not None and (
            len(weights) != len(members or []) or min(weights, default=1) < 0 or not sum(weights) > 0
        ):
            raise ConfigError(
                f"weights: got {weights}, expected {len(members or [])} nonnegative numbers with a positive sum"
            )
        self.members, self.weights = members, weights  # weights None: equal weights

    @property
    def _members(self) -> list[Predictor]:
        return list(self.members or [])

    def fit(self, runs: pd.DataFrame) -> Ensemble:
        if not self._members:
            raise ConfigError("members: an ensemble needs at least one predictor")
        for member in self._members:
            member.fit(runs)
        return self

    def _mean(self, values: list[np.ndarray]) -> np.ndarray:
        weights = np.ones(len(values)) if self.weights is None else np.asarray(self.weights, float)
        return np.tensordot(weights / weights.sum(), np.stack(values), axes=1)

    def __sklearn_is_fitted__(self) -> bool:
        return bool(self._members) and all(member.__sklearn_is_fitted__() for member in self._members)

    def _predict(self, configs: pd.DataFrame) -> np.ndarray:
        return self._mean([member.predict(configs) for member in self._members])

    def _predict_details(self, configs: pd.DataFrame) -> pd.DataFrame:
        """pred_loss, and p_diverge averaged over the members that give one (a tuner's cap must not go unheard)."""
        details = [member.predict_details(configs) for member in self._members]
        out = pd.DataFrame({"pred_loss": self._mean([d["pred_loss"].to_numpy() for d in details])})
        p = [d["p_diverge"].to_numpy() for d in details if "p_diverge" in d]
        if p:
            out["p_diverge"] = np.mean(p, axis=0)
        return out

    @property
    def predicts_curves(self) -> bool:
        return all(member.predicts_curves for member in self._members)

    def _predict_curve(self, configs: pd.DataFrame, fractions: np.ndarray) -> np.ndarray:
        if not self.predicts_curves:
            raise ConfigError(
                f"ensemble: members {[m.name for m in self._members if not m.predicts_curves]} do not predict curves"
            )
        return self._mean([member.predict_curve(configs, fractions) for member in self._members])

    def get_state(self) -> dict[str, Any]:
        return {"members": [member.name for member in self._members], "weights": self.weights}

    def set_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError("an ensemble is rebuilt from its members' directories (from_directory)")

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        for i, member in enumerate(self._members):
            member.save(directory / f"member-{i}")
        return super().save(directory)

    @classmethod
    def from_directory(cls, directory: str | Path, state: dict[str, Any]) -> Ensemble:
        members = [load_predictor(Path(directory) / f"member-{i}") for i in range(len(state["members"]))]
        return cls(members, state["weights"])
