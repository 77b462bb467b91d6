"""The probability that a run fails (diverges, or ends unstable: `ncpl.unstable`), from shallow
gradient-boosted trees on the flat config.

Why trees and not the network's divergence logit: on Marin a run fails through a few fields acting
together (lr, optimizer, warmup, beta1, weight decay), which shallow splits isolate, and which the
network, reading each number through its own embedding, did not combine. On the dev splits (seeds
42-44) the default's three members rank Marin's failed runs at ROC-AUC 0.86 / 0.84 (dev-ID / dev-OOD),
these trees at 0.96 / 0.95; both at 1.00 on StepLaw. The settings were chosen there too, on the mean of
Marin's two AUCs over depth 2-4, 150-600 trees and learning rate 0.05-0.1: a flat grid (0.91-0.96).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from ncpl.columns import usable
from ncpl.errors import NotFittedError
from ncpl.predictors.features import FeatureSpec
from ncpl.predictors.hparam_law import with_law_fields


class DivergenceClassifier:
    """Boosted trees of depth `max_depth` on the flat fields (`ncpl.predictors.features`), fitted on
    every run with the label failed = not `usable`. Fitted: `features_`, `model_` (None when every training run
    failed or none did: `prior_` is then the probability), `prior_` (the training runs' failure rate)."""

    def __init__(
        self,
        n_estimators: int = 600,
        learning_rate: float = 0.05,
        max_depth: int = 3,
        subsample: float = 0.8,
        seed: int = 0,
    ):
        self.n_estimators, self.learning_rate, self.max_depth = n_estimators, learning_rate, max_depth
        self.subsample, self.seed = subsample, seed

    def _classifier(self) -> xgb.XGBClassifier:
        return xgb.XGBClassifier(
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            max_depth=self.max_depth,
            subsample=self.subsample,
            random_state=self.seed,
            tree_method="hist",
            enable_categorical=True,
            n_jobs=2,
        )

    def fit(self, runs: pd.DataFrame) -> DivergenceClassifier:
        runs = with_law_fields(runs, None)  # the config's own fields only: a frame's law.* columns may be stale
        failed = (~usable(runs)).to_numpy()
        self.features_ = FeatureSpec.from_runs(runs)
        self.prior_ = float(failed.mean())
        self.model_ = None
        if 0 < failed.sum() < len(failed):
            self.model_ = self._classifier().fit(self.features_.transform(runs), failed)
        return self

    def predict_proba(self, configs: pd.DataFrame) -> np.ndarray:
        """The probability that each config's run fails."""
        if not hasattr(self, "features_"):
            raise NotFittedError("DivergenceClassifier: call fit(runs) before predict_proba")
        if self.model_ is None:
            return np.full(len(configs), self.prior_)
        features = self.features_.transform(with_law_fields(configs, None))
        return self.model_.predict_proba(features)[:, 1].astype(float)

    def get_state(self) -> dict[str, Any]:
        return {
            "settings": {
                "n_estimators": self.n_estimators,
                "learning_rate": self.learning_rate,
                "max_depth": self.max_depth,
                "subsample": self.subsample,
                "seed": self.seed,
            },
            "features": self.features_.to_dict(),
            "prior": self.prior_,
            "booster": None if self.model_ is None else json.loads(self.model_.get_booster().save_raw("json").decode()),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> DivergenceClassifier:
        known = ("n_estimators", "learning_rate", "max_depth", "subsample", "seed")
        model = cls(**{k: v for k, v in state.get("settings", {}).items() if k in known})  # a newer ncpl's dropped
        model.features_ = FeatureSpec(**state["features"])
        model.prior_ = float(state["prior"])
        model.model_ = None
        if state.get("booster") is not None:
            model.model_ = model._classifier()
            model.model_.load_model(bytearray(json.dumps(state["booster"]).encode()))
        return model
