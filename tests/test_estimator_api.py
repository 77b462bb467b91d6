"""Every predictor is a scikit-learn-style estimator: settings are constructor arguments (get_params / set_params),
fitted state lives in attributes ending in `_`, and fitting never changes a setting.

Unit tests: no ../shared/data; the runs are a small made-up table written here (a Chinchilla law plus an lr bowl
plus noise), not real runs.
"""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import pytest

from ncpl import predictors
from ncpl.errors import ConfigError, NotFittedError
from ncpl.regressor.predictor import NCPL
from ncpl.regressor.train_config import TrainConfig

FAST = {  # settings that fit in a second; NCPL's fit is tested in test_ncpl.py
    "chinchilla": {},
    "hparam-law": {},
    "xgboost": {"n_estimators": 20},
    "xgboost-residual": {"n_estimators": 20, "tune": True, "grid": {"max_depth": (2, 3)}},
    "xgboost-hparam-residual": {"n_estimators": 20, "seed": 3},
}


@pytest.fixture(scope="module")
def made_up_runs() -> pd.DataFrame:
    """Made up for these tests, not real data: 4 sizes x 3 token budgets x 5 lrs of one source."""
    rng = np.random.default_rng(0)
    rows = [
        {
            "run_id": f"{n:g}-{d:g}-{lr:g}",
            "source": "made-up",
            "model.n_params": n,
            "data.tokens": d,
            "optimizer.name": "adamw",
            "optimizer.lr": lr,
            "batch.tokens": 2**19,
            "final_loss": 1.8 + 480 / n**0.35 + 2000 / d**0.37 + 0.02 * np.log(lr / 1e-3) ** 2 + rng.normal(0, 0.005),
            "diverged": False,
        }
        for n in (1e7, 3e7, 1e8, 3e8)
        for d in (1e9, 3e9, 1e10)
        for lr in (2.5e-4, 5e-4, 1e-3, 2e-3, 4e-3)
    ]
    return pd.DataFrame(rows)


def fitted_attributes(model: predictors.Predictor) -> set[str]:
    return {name for name in vars(model) if name.endswith("_") and not name.startswith("_")} - {"coverage_"}


@pytest.mark.parametrize("name", sorted(predictors.REGISTRY))
def test_settings_are_the_constructor_arguments(name):
    cls = predictors.predictor_class(name)
    model = predictors.create(name)
    arguments = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    assert list(model.get_params()) == arguments
    copy = cls(**model.get_params())
    assert copy.get_params().keys() == model.get_params().keys() and repr(copy) == repr(model) == f"{cls.__name__}()"
    assert not fitted_attributes(model)  # an unfitted predictor holds no fitted state
    with pytest.raises(ConfigError, match=f"n_estimator: not a setting of {name}; its settings: "):
        model.set_params(n_estimator=10)


@pytest.mark.parametrize("name", sorted(FAST))
def test_fit_sets_fitted_attributes_and_leaves_settings_alone(name, made_up_runs, tmp_path):
    model = predictors.create(name, **FAST[name])
    settings = model.get_params()
    model.fit(made_up_runs)
    assert model.get_params() == settings  # a tuned fit keeps what it chose in params_, not in the settings
    assert fitted_attributes(model)  # fit set state of its own (coverage_ aside)
    loaded = predictors.load_predictor(model.save(tmp_path / name))
    assert repr(loaded) == repr(model) and fitted_attributes(loaded) == fitted_attributes(model)
    np.testing.assert_allclose(loaded.predict(made_up_runs), model.predict(made_up_runs))


def test_a_tuned_fit_records_its_choice_in_fitted_state(made_up_runs):
    model = predictors.create("xgboost-residual", **FAST["xgboost-residual"]).fit(made_up_runs)
    best = min(model.tuning_, key=lambda row: row["val_mae"])
    assert len(model.tuning_) == 2 and model.params_["max_depth"] == best["max_depth"]
    assert model.max_depth == 6  # the setting is the constructor's


def test_set_params_validates_like_the_constructor_and_returns_the_predictor():
    model = NCPL()
    assert model.set_params(inference_dtype="fp32") is model and model.inference_dtype == "fp32"
    assert repr(model) == "NCPL(inference_dtype='fp32')"
    with pytest.raises(ConfigError, match="inference_dtype: 'fp64' is not one of"):
        model.set_params(inference_dtype="fp64")
    assert model.inference_dtype == "fp32"  # a refused value changes nothing
    model.set_params(config=TrainConfig(seed=7))
    assert model.config.seed == 7
    with pytest.raises(ConfigError, match="val_split: got 'biggest'"):
        predictors.create("xgboost", val_split="biggest")
    with pytest.raises(ConfigError, match="grid: depth are not booster settings"):
        predictors.create("xgboost", tune=True, grid={"depth": (3, 6)})


def test_settings_without_effect_and_unfitted_use_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="n_estimator: not a setting of xgboost"):
        predictors.create("xgboost", n_estimator=10)
    for tuning in ({"grid": {"max_depth": (3, 6)}}, {"val_split": "random"}, {"val_frac": 0.2}):
        with pytest.raises(ConfigError, match="grid, val_split, val_frac: they choose the tuning; set tune=True"):
            predictors.create("xgboost", **tuning)
    assert predictors.create("xgboost", val_split="largest", val_frac=0.1).get_params()["tune"] is False  # defaults
    with pytest.raises(ValueError, match="baseline_fit_on: hparam-law fits its frontier through the best runs"):
        TrainConfig(baseline="hparam-law", baseline_fit_on="all")
    assert TrainConfig(baseline="chinchilla", baseline_fit_on="all").baseline_fit_on == "all"
    for name in ("chinchilla", "hparam-law"):
        law = predictors.create(name)
        with pytest.raises(NotFittedError, match="not fitted"):
            law.predict_at(pd.DataFrame({"source": ["made-up"], "model.n_params": [1e8]}), np.array([1e9]))
        with pytest.raises(NotFittedError, match="not fitted"):
            law.save(tmp_path / name)
        assert not (tmp_path / name).exists()
