"""What ncpl's boosted-tree models share: the columns they read (`FeatureSpec`: every numeric config column of
the training runs, log10 where all its training values are positive, as counts, rates and sizes are; booleans as
0/1; a few categorical fields: source, optimizer, schedule, architecture, dataset), how a booster is built, and
how a fitted one travels in predictor.json (JSON, never a pickle).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from ncpl.flat import CONFIG_PREFIXES
from ncpl.predictors.hparam_law import LAW_FIELDS

CATEGORICAL = ("source", "optimizer.name", "schedule.name", "model.arch", "data.dataset")
BOOSTER_OPTIONS = {"tree_method": "hist", "enable_categorical": True, "n_jobs": 2}


class FeatureSpec:
    """The columns a tree model reads, decided on the training runs and replayed on any configs."""

    def __init__(self, numeric: dict[str, bool] | None = None, categories: dict[str, list[str]] | None = None):
        self.numeric = numeric or {}  # column -> take log10
        self.categories = categories or {}  # column -> known values

    @classmethod
    def from_runs(cls, runs: pd.DataFrame) -> FeatureSpec:
        numeric, categories = {}, {}
        for name in runs.columns:
            values = runs[name].dropna()
            if name in CATEGORICAL and len(values):
                categories[name] = sorted(map(str, values.unique()))
            elif (name.startswith(CONFIG_PREFIXES) or name in LAW_FIELDS) and len(values) and _is_numeric(values):
                numbers = values.astype(float)
                numeric[name] = bool((numbers > 0).all() and not pd.api.types.is_bool_dtype(values))
        return cls(numeric, categories)

    def transform(self, configs: pd.DataFrame) -> pd.DataFrame:
        out = {}
        for name, use_log in self.numeric.items():
            values = (
                pd.to_numeric(configs[name], errors="coerce").astype(float)
                if name in configs
                else pd.Series(np.nan, index=configs.index)
            )
            out[name] = np.log10(values.where(values > 0)) if use_log else values
        for name, known in self.categories.items():
            values = (
                configs[name].astype("string")
                if name in configs
                else pd.Series(pd.NA, index=configs.index, dtype="string")
            )
            out[name] = pd.Categorical(values.where(values.isin(known)), categories=known)  # unseen: missing
        return pd.DataFrame(out, index=configs.index)

    def to_dict(self) -> dict[str, Any]:
        return {"numeric": self.numeric, "categories": self.categories}


def _is_numeric(values: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return True
    return bool(values.map(lambda v: isinstance(v, (int, float, bool, np.number))).all())


def booster_state(model: xgb.XGBModel) -> dict[str, Any]:
    return json.loads(model.get_booster().save_raw("json").decode())


def load_booster(model: xgb.XGBModel, state: dict[str, Any]) -> xgb.XGBModel:
    model.load_model(bytearray(json.dumps(state).encode()))
    return model
