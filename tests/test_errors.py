"""The error hierarchy: what each kind is (so callers can catch it), and where the library raises which kind.

Unit tests: no ../shared/data; the configs are small made-up rows written here, not real runs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ncpl import predictors
from ncpl.errors import ConfigError, DataError, ModelDirError, NcplError, NotFittedError
from ncpl.predictors.chinchilla import ChinchillaLaw
from ncpl.predictors.hparam_law import residual_law

CANDIDATE = {"source": "made-up", "model": {"n_params": 1e8}, "data": {"tokens": 2e9}}  # a made-up config, not a run


@pytest.mark.parametrize(
    "kind, builtin",
    [(ConfigError, ValueError), (DataError, ValueError), (ModelDirError, OSError), (NotFittedError, AttributeError)],
)
def test_every_kind_is_an_ncpl_error_and_the_builtin_callers_expect(kind, builtin):
    error = kind("field: got x")
    assert isinstance(error, NcplError) and isinstance(error, builtin) and str(error) == "field: got x"


@pytest.mark.parametrize("name", sorted(predictors.REGISTRY))
def test_every_registered_predictor_refuses_to_predict_unfitted(name):
    model = predictors.create(name)
    for call in (lambda: model.predict([CANDIDATE]), lambda: model.predict_details([CANDIDATE])):
        with pytest.raises(NotFittedError, match="not fitted"):
            call()


def test_residual_law_refuses_an_unknown_name():
    assert type(residual_law("chinchilla")).__name__ == "Chinchilla"
    assert type(residual_law("hparam-law")).__name__ == "HparamLaw"
    with pytest.raises(ConfigError, match="baseline: got 'chinchila'"):
        residual_law("chinchila")


def test_loading_a_missing_or_foreign_model_directory_is_a_model_dir_error(tmp_path):
    with pytest.raises(ModelDirError, match="model directory not found"):
        predictors.load_predictor(tmp_path / "absent")
    with pytest.raises(ModelDirError, match="not a predictor directory"):
        predictors.load_predictor(tmp_path)
    (tmp_path / predictors.META_FILE).write_text('{"predictor": "gpt-oracle", "state": {}}')
    with pytest.raises(ModelDirError, match="unknown predictor 'gpt-oracle'"):
        predictors.load_predictor(tmp_path)


def test_configs_to_predict_must_give_source_n_and_d():
    model = predictors.create("chinchilla")
    model.laws_ = {"made-up": ChinchillaLaw(E=1.7, A=400.0, alpha=0.34, B=410.0, beta=0.28)}  # made up, not fitted
    frame = pd.DataFrame([{"source": "made-up", "model.n_params": 1e8, "data.tokens": 2e9}])
    assert np.isfinite(model.predict(frame)).all()
    with pytest.raises(ConfigError, match="configs: no column 'source'; a config row needs source, model.n_params"):
        model.predict(frame.drop(columns="source"))
    nan_tokens = pd.concat([frame, frame.assign(**{"data.tokens": float("nan")})], ignore_index=True)
    with pytest.raises(ConfigError, match="data.tokens: got nan in row 1; every config needs a positive number"):
        model.predict_details(nan_tokens)  # a law of NaN tokens predicts NaN, silently
