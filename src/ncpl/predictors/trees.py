"""Gradient-boosted trees on the flat configuration, on the raw loss or on the residual over Chinchilla.

The trees read the flat config as `ncpl.predictors.boosting` lays it out. The residual variants fit a law on
the same runs first and learn what it misses: ``xgboost-residual`` the per-source Chinchilla law (through the
best run of each (N, D) group, as NCPL does), ``xgboost-hparam-residual`` the law with the lr / batch bowl
(`ncpl.predictors.hparam_law`). Diverged runs are left out of the fit.

With `tune=True` the trees get the tuning NCPL gets: `fit` carves validation runs the way NCPL's `val_split`
does (`ncpl.splits.validation_split`; the same runs when given NCPL's `val_split`, `val_frac` and seed, as
benchmarks/ncpl_accuracy.py does: the defaults differ, `largest` and seed 0 here), boosts each setting of `grid` (`GRID`) on the rest with early
stopping on the validation runs' MAE, keeps the setting and number of rounds with the lowest one, and
refits those on every run (the law, as in NCPL, is fitted on every run throughout). `params_` holds the
booster settings fitted with, `tuning_` the grid's validation MAEs. With `law_fields=True` (hparam-residual only) the
trees also read the law's fields, as NCPL does under its `law_fields` (`ncpl.predictors.hparam_law.LAW_FIELDS`).
With `divergence=True` (the default) `fit` also fits `ncpl.predictors.divergence` on every run, the failed ones
included, and `predict_details` gives its `p_diverge`, as NCPL's does.
"""

from __future__ import annotations

import inspect
import itertools
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from ncpl.columns import usable
from ncpl.errors import ConfigError
from ncpl.predictors import Predictor
from ncpl.predictors.boosting import BOOSTER_OPTIONS, FeatureSpec, booster_state, load_booster
from ncpl.predictors.divergence import DivergenceClassifier
from ncpl.predictors.hparam_law import residual_law, with_law_fields

GRID = {"max_depth": (3, 6, 9), "learning_rate": (0.05, 0.15), "min_child_weight": (1.0, 5.0, 20.0)}  # 18 settings
BOOSTER_SETTINGS = ("n_estimators", "learning_rate", "max_depth", "subsample", "colsample_bytree", "min_child_weight")
MAX_ROUNDS = 2000  # boosting rounds a tuned setting may use; early stopping ends it
PATIENCE = 50  # rounds without a better validation MAE before stopping


class XGBoost(Predictor):
    name = "xgboost"
    baseline_name: str | None = None  # the law whose residual the trees learn

    def __init__(
        self,
        n_estimators: int = 600,
        learning_rate: float = 0.03,
        max_depth: int = 6,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        min_child_weight: float = 1.0,
        seed: int = 0,
        tune: bool = False,
        val_split: str = "largest",
        val_frac: float = 0.1,
        grid: dict[str, tuple[Any, ...]] | None = None,
        law_fields: bool = False,
        divergence: bool = True,
    ):
        from ncpl.splits import VAL_SPLITS

        if law_fields and self.baseline_name != "hparam-law":
            raise ConfigError(
                f"law_fields: {self.name} learns no residual over hparam-law; use xgboost-hparam-residual"
            )

        if val_split not in VAL_SPLITS:
            raise ConfigError(f"val_split: got {val_split!r}, expected one of {', '.join(VAL_SPLITS)}")
        tuning = {"val_split": val_split, "val_frac": val_frac, "grid": grid}
        defaults = {name: p.default for name, p in inspect.signature(XGBoost.__init__).parameters.items()}
        if not tune and any(value != defaults[name] for name, value in tuning.items()):
            raise ConfigError("grid, val_split, val_frac: they choose the tuning; set tune=True, or leave them")
        unknown = sorted(set(grid or {}) - set(BOOSTER_SETTINGS))
        if unknown:
            raise ConfigError(
                f"grid: {', '.join(unknown)} are not booster settings; tune {', '.join(BOOSTER_SETTINGS)}"
            )
        self.n_estimators, self.learning_rate, self.max_depth = n_estimators, learning_rate, max_depth
        self.subsample, self.colsample_bytree, self.min_child_weight = subsample, colsample_bytree, min_child_weight
        self.seed, self.tune, self.val_split, self.val_frac, self.grid = seed, tune, val_split, val_frac, grid
        self.law_fields, self.divergence = law_fields, divergence

    def _regressor(self, **overrides: Any) -> xgb.XGBRegressor:
        return xgb.XGBRegressor(**{**self.params_, **overrides}, **BOOSTER_OPTIONS)

    def fit(self, runs: pd.DataFrame) -> XGBoost:
        self.divergence_ = DivergenceClassifier(seed=self.seed).fit(runs) if self.divergence else None
        runs = runs[usable(runs)].reset_index(drop=True)
        target = runs["final_loss"].to_numpy(float)
        self.baseline_: Predictor | None = None
        if self.baseline_name:
            self.baseline_ = residual_law(self.baseline_name).fit(runs)
            target = target - self.baseline_.predict(runs)
        runs = self._with_law_fields(runs)
        self.features_ = FeatureSpec.from_runs(runs)
        features = self.features_.transform(runs)
        self.params_ = {name: getattr(self, name) for name in BOOSTER_SETTINGS} | {"random_state": self.seed}
        self.tuning_: list[dict[str, float]] = []
        if self.tune:
            self.params_.update(self._tuned(runs, features, target))
        self.model_ = self._regressor().fit(features, target)
        return self

    def _tuned(self, runs: pd.DataFrame, features: pd.DataFrame, target: np.ndarray) -> dict[str, Any]:
        """The grid setting (and its rounds) with the lowest validation MAE under early stopping; each setting's
        validation MAE and rounds go to `tuning_`."""
        from ncpl.splits import validation_split

        train, val = validation_split(runs, self.val_split, self.val_frac, self.seed)
        fit_rows, val_rows = train.index.to_numpy(), val.index.to_numpy()
        grid = self.grid or GRID
        for values in itertools.product(*grid.values()):
            setting = dict(zip(grid, values))
            model = self._regressor(
                **setting, n_estimators=MAX_ROUNDS, early_stopping_rounds=PATIENCE, eval_metric="mae"
            )
            model.fit(
                features.iloc[fit_rows],
                target[fit_rows],
                eval_set=[(features.iloc[val_rows], target[val_rows])],
                verbose=False,
            )
            self.tuning_.append(
                {**setting, "n_estimators": int(model.best_iteration) + 1, "val_mae": float(model.best_score)}
            )
        best = min(self.tuning_, key=lambda row: row["val_mae"])
        return {key: best[key] for key in (*grid, "n_estimators")}

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_")

    def _with_law_fields(self, configs: pd.DataFrame) -> pd.DataFrame:
        return with_law_fields(configs, self.baseline_ if self.law_fields else None)

    def _predict(self, configs: pd.DataFrame) -> np.ndarray:
        prediction = self.model_.predict(self.features_.transform(self._with_law_fields(configs))).astype(float)
        return prediction + self.baseline_.predict(configs) if self.baseline_ else prediction

    def _predict_details(self, configs: pd.DataFrame) -> pd.DataFrame:
        out = pd.DataFrame({"pred_loss": self._predict(configs)})
        if self.divergence_ is not None:
            out["p_diverge"] = self.divergence_.predict_proba(configs)
        return out

    def get_state(self) -> dict[str, Any]:
        return {
            "settings": self.get_params(),
            "params": self.params_,
            "features": self.features_.to_dict(),
            "tuning": self.tuning_,
            "baseline": self.baseline_.get_state() if self.baseline_ else None,
            "booster": booster_state(self.model_),
            "divergence": self.divergence_.get_state() if self.divergence_ is not None else None,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        # a directory saved before `settings` existed: the booster's settings are the ones it was fitted with
        settings = state.get("settings") or {
            **{name: state["params"][name] for name in BOOSTER_SETTINGS},
            "seed": state["params"]["random_state"],
        }
        settings = {k: v for k, v in settings.items() if k in self._param_names()}  # a newer ncpl's are dropped
        settings.setdefault("divergence", False)  # saved before the trees gave p_diverge: they give none
        if settings.get("grid"):
            settings["grid"] = {k: tuple(v) for k, v in settings["grid"].items()}
        self.set_params(**settings)
        self.params_, self.tuning_ = state["params"], state.get("tuning", [])
        self.features_ = FeatureSpec(**state["features"])
        self.baseline_ = None
        if state["baseline"]:
            self.baseline_ = residual_law(self.baseline_name)
            self.baseline_.set_state(state["baseline"])
        self.model_ = load_booster(self._regressor(), state["booster"])
        self.divergence_ = DivergenceClassifier.from_state(state["divergence"]) if state.get("divergence") else None


class XGBoostResidual(XGBoost):
    """XGBoost on the residual of the per-source Chinchilla law."""

    name = "xgboost-residual"
    baseline_name = "chinchilla"


class XGBoostHparamResidual(XGBoost):
    """XGBoost on the residual of the per-source law with the lr / batch bowl."""

    name = "xgboost-hparam-residual"
    baseline_name = "hparam-law"
