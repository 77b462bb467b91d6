"""Every loss predictor answers one interface, so evaluation, scoring and tuning are written once.

In the spirit of scikit-learn: construct with hyperparameters, ``fit(runs)`` on a runs table (the
flat frame of `ncpl.store`), ``predict(configs)`` the final loss of each row, ``predict_curve`` the
loss at fractions of training where the predictor has curves, ``save(dir)`` and
``ncpl.predictors.load(dir)``. Nothing is pickled: a directory holds JSON (and safetensors or the
model's own format for weights).
"""

from __future__ import annotations

import importlib
import json
from abc import ABC, abstractmethod
from pathlib import Path
from collections.abc import Sequence
from typing import Any, ClassVar, Union

import numpy as np
import pandas as pd

from ncpl.schema import ConfigError, RunConfig, RunRecord, config_to_flat, validate

META_FILE = "predictor.json"
REGISTRY = {  # name -> "module:Class"
    "chinchilla": "ncpl.predictors.chinchilla:Chinchilla",
    "xgboost": "ncpl.predictors.trees:XGBoost",
    "xgboost-residual": "ncpl.predictors.trees:XGBoostResidual",
    "hparam-law": "ncpl.predictors.hparam_law:HparamLaw",
    "xgboost-hparam-residual": "ncpl.predictors.trees:XGBoostHparamResidual",
    "ncpl": "ncpl.predictors.ncpl:NCPL",
    "ensemble": "ncpl.predictors.ensemble:Ensemble",
}


Configs = Union[pd.DataFrame, RunConfig, RunRecord, dict, Sequence[RunConfig]]


def as_frame(configs: Configs) -> pd.DataFrame:
    """Flat config rows from a frame, one or many `RunConfig`s / `RunRecord`s, or a nested dict."""
    if isinstance(configs, pd.DataFrame):
        return configs
    items = [configs] if isinstance(configs, (RunConfig, RunRecord, dict)) else list(configs)
    rows = []
    for item in items:
        if isinstance(item, dict):
            item = validate(RunConfig, item)
        rows.append(item.to_flat() if isinstance(item, RunRecord) else config_to_flat(item))
    return pd.DataFrame(rows)


class Predictor(ABC):
    """Subclasses implement `fit`, `_predict` (and `_predict_curve`, `_predict_details` where they can)."""

    name: ClassVar[str]

    @abstractmethod
    def fit(self, runs: pd.DataFrame) -> Predictor: ...

    def predict(self, configs: Configs) -> np.ndarray:
        """Final loss of each config."""
        return self._predict(as_frame(configs))

    def predict_details(self, configs: Configs) -> pd.DataFrame:
        """``pred_loss``, and where the predictor has them ``pred_loss_lo`` / ``pred_loss_hi`` (10-90%) and ``p_diverge``."""
        return self._predict_details(as_frame(configs))

    def predict_curve(self, configs: Configs, fractions: np.ndarray) -> np.ndarray:
        """Loss at each fraction of training: shape (configs, fractions)."""
        return self._predict_curve(as_frame(configs), np.asarray(fractions, float))

    @abstractmethod
    def _predict(self, configs: pd.DataFrame) -> np.ndarray: ...

    def _predict_details(self, configs: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"pred_loss": self._predict(configs)})

    @property
    def predicts_curves(self) -> bool:
        return type(self)._predict_curve is not Predictor._predict_curve

    def _predict_curve(self, configs: pd.DataFrame, fractions: np.ndarray) -> np.ndarray:
        raise ConfigError(f"{self.name} does not predict loss curves; use chinchilla or ncpl")

    @abstractmethod
    def get_state(self) -> dict[str, Any]:
        """Everything needed to predict, as JSON-serialisable data."""

    @abstractmethod
    def set_state(self, state: dict[str, Any]) -> None: ...

    @classmethod
    def from_directory(cls, directory: str | Path, state: dict[str, Any]) -> Predictor:
        """Rebuild from `save`'s directory; predictors with weight files beside the JSON override this."""
        predictor = cls()
        predictor.set_state(state)
        return predictor

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{META_FILE}.tmp"
        tmp.write_text(json.dumps({"predictor": self.name, "state": self.get_state()}, indent=2))
        tmp.replace(directory / META_FILE)
        return directory


def predictor_class(name: str) -> type[Predictor]:
    if name not in REGISTRY:
        raise ConfigError(f"unknown predictor {name!r}; known: {', '.join(REGISTRY)}")
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def create(name: str, **params: Any) -> Predictor:
    return predictor_class(name)(**params)


def load(directory: str | Path) -> Predictor:
    from pydantic import ValidationError

    meta_path = Path(directory) / META_FILE
    if not Path(directory).is_dir():
        raise ConfigError(f"{directory}: model directory not found; give the folder written by `ncpl fit` or `ncpl train`")
    if not meta_path.exists():
        raise ConfigError(f"{directory}: not a predictor directory ({meta_path} not found); "
                          "give the folder written by `ncpl fit` or `ncpl train`, or re-create it with them")
    corrupted = f"{meta_path}: corrupted predictor file"
    fix = "re-create it with `ncpl fit` or `ncpl train`"
    try:
        meta = json.loads(meta_path.read_text())
        name, state = meta["predictor"], meta["state"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
        raise ConfigError(f"{corrupted} ({type(error).__name__}: {error}); {fix}") from None
    cls = predictor_class(name)
    try:
        return cls.from_directory(directory, state)
    except (KeyError, TypeError, ValidationError) as error:  # the state lacks a field or has the wrong shape
        raise ConfigError(f"{corrupted} (its state does not fit {name}: {type(error).__name__}: {error}); {fix}") from None
