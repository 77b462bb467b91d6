"""The error hierarchy: what each kind is (so callers can catch it), and where the library raises which kind.

Unit tests: no ../shared/data; the configs are small made-up rows written here, not real runs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ncpl import predictors
from ncpl.atomic import atomic_path
from ncpl.errors import ConfigError, DataError, ModelDirError, NcplError, NotFittedError
from ncpl.launch import require_joined
from ncpl.laws.schedule import AnnealingLaw, MultiPowerLaw, ScheduleCurve, ScheduleLaw
from ncpl.laws.temporal import PowerLaw, TemporalLaw
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


@pytest.mark.parametrize("law", [MultiPowerLaw(), AnnealingLaw(), TemporalLaw(), PowerLaw()], ids=lambda law: law.name)
def test_every_curve_law_refuses_to_predict_unfitted(law):
    """Before: an unfitted law predicted from placeholder parameters (zeros) as if fitted."""
    curve = ScheduleCurve(np.full(100, 3e-4), np.array([10, 50]), np.array([4.0, 3.5]), "made-up")  # not a run
    with pytest.raises(NotFittedError, match=f"this {law.name} law is not fitted"):
        law.predict(curve) if isinstance(law, ScheduleLaw) else law.predict([1e9, 2e9])


def test_a_launch_accelerate_did_not_join_is_refused_with_the_fix(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match=r"launched 2 processes \(WORLD_SIZE\) but accelerate joined 1: each would"):
        require_joined(1, "each would score the whole sweep")
    with pytest.raises(ConfigError, match="ACCELERATE_USE_CPU=true accelerate launch --multi_gpu"):
        require_joined(1, "each would score the whole sweep")
    require_joined(2, "each would score the whole sweep")  # joined: nothing to refuse
    monkeypatch.delenv("WORLD_SIZE")
    require_joined(1, "each would score the whole sweep")  # not launched: one process


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


def test_a_failed_atomic_write_leaves_no_temporary_file(tmp_path):
    """Before: the temporary file of a write that raised stayed beside the target."""
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(tmp_path / "out.parquet") as tmp:
            tmp.write_text("half a file")
            raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []
