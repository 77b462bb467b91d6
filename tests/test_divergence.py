"""The divergence probability: shallow trees on the flat config, given by the XGBoost predictors and by NCPL (or
NCPL's head)."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from ncpl import predictors
from ncpl.columns import usable
from ncpl.errors import NotFittedError
from ncpl.predictors.divergence import DivergenceClassifier
from ncpl.regressor.predictor import NCPL
from ncpl.sources import import_runs
from ncpl.store import to_frame
from ncpl.unstable import mark_unstable


@pytest.fixture(scope="module")
def marin(shared):
    return mark_unstable(to_frame(import_runs("marin", [shared / "marin/marin_sweep_runs.jsonl"]).records))


def test_trees_rank_failed_runs_of_a_larger_model(marin):
    """Fitted on Marin's smaller models, the trees rank the failed runs of its largest (300M) well above chance,
    and their state saved as JSON predicts the same."""
    large = marin["model.n_params"] >= 3e8
    train, test = marin[~large], marin[large]
    failed = ~usable(test)
    assert 5 <= failed.sum() < len(test)
    model = DivergenceClassifier(seed=0).fit(train)
    p = model.predict_proba(test)
    assert ((0 <= p) & (p <= 1)).all() and roc_auc_score(failed, p) > 0.85
    loaded = DivergenceClassifier.from_state(json.loads(json.dumps(model.get_state())))
    np.testing.assert_array_equal(loaded.predict_proba(test), p)


def test_without_both_outcomes_the_rate_is_the_probability(marin):
    converged = marin[usable(marin)].head(40)
    unknown = converged.head(1).assign(final_loss=float("nan"), diverged=False)  # no loss, no divergence: no outcome
    model = DivergenceClassifier().fit(pd.concat([converged, unknown], ignore_index=True))
    assert model.model_ is None and np.array_equal(model.predict_proba(marin.head(3)), np.zeros(3))
    state = model.get_state()
    assert state["booster"] is None
    assert DivergenceClassifier.from_state(state).predict_proba(marin.head(2)).tolist() == [0.0, 0.0]
    failed = marin[~usable(marin)]
    assert DivergenceClassifier().fit(failed).predict_proba(marin.head(2)).tolist() == [1.0, 1.0]
    with pytest.raises(NotFittedError, match="fit"):
        DivergenceClassifier().predict_proba(marin.head(1))


def test_stale_law_fields_in_a_frame_are_not_read(marin):
    model = DivergenceClassifier(seed=0).fit(marin)
    stale = marin.head(20).assign(**{"law.lr_over_optimum": 1e6, "law.batch_over_optimum": 1e-6})
    np.testing.assert_array_equal(model.predict_proba(stale), model.predict_proba(marin.head(20)))
    assert not any(name.startswith("law.") for name in model.features_.numeric)


def test_ncpl_gives_the_trees_or_its_head(monkeypatch, marin):
    """p_diverge is the trees' where NCPL holds them (`divergence: trees`), its network head's where it does not."""
    configs = marin.head(6).reset_index(drop=True)
    model = NCPL()
    outputs = np.zeros((2, len(configs), 4))
    share = np.arange(1, 7) / 7
    outputs[:, :, 3] = np.log(share / (1 - share))  # two members' divergence logits
    monkeypatch.setattr(model, "_example", lambda row, *a: row)
    monkeypatch.setattr(model, "_outputs", lambda examples: outputs)
    model.targets_ = type("Targets", (), {"to_loss": staticmethod(lambda c, t, n: np.full(len(c), 3.0))})()
    model.networks_, model.interval_margins_, model.interval_slopes_, model.train_ranges_ = [None], {}, {}, {}
    model.divergence_ = None
    np.testing.assert_allclose(model.predict_details(configs)["p_diverge"], share)
    model.divergence_ = DivergenceClassifier(seed=0).fit(marin)
    got = model.predict_details(configs)["p_diverge"].to_numpy()
    np.testing.assert_array_equal(got, model.divergence_.predict_proba(configs))
    assert not np.allclose(got, share)


def test_trees_give_p_diverge_too_and_older_directories_load(marin, tmp_path):
    """The XGBoost predictors answer p_diverge as NCPL does (from the same classifier), keep it through a save, and
    drop it with divergence=False; a directory saved before they had one loads without it."""
    model = predictors.create("xgboost-hparam-residual", n_estimators=50, seed=3).fit(marin)
    details = model.predict_details(marin)
    np.testing.assert_array_equal(details["p_diverge"], DivergenceClassifier(seed=3).fit(marin).predict_proba(marin))
    assert roc_auc_score(~usable(marin), details["p_diverge"]) > 0.9  # its own training runs
    model.save(tmp_path / "trees")
    pd.testing.assert_frame_equal(predictors.load_predictor(tmp_path / "trees").predict_details(marin), details)
    meta = json.loads((tmp_path / "trees/predictor.json").read_text())
    del meta["state"]["divergence"], meta["state"]["settings"]["divergence"]
    (tmp_path / "trees/predictor.json").write_text(json.dumps(meta))
    older = predictors.load_predictor(tmp_path / "trees")
    assert older.divergence is False and older.divergence_ is None
    assert "p_diverge" not in older.predict_details(marin) and np.array_equal(
        older.predict(marin), model.predict(marin)
    )
    off = predictors.create("xgboost-hparam-residual", n_estimators=50, seed=3, divergence=False).fit(marin)
    assert off.divergence_ is None and "p_diverge" not in off.predict_details(marin)
    np.testing.assert_array_equal(off.predict(marin), model.predict(marin))


def test_an_unseen_optimizer_reads_as_missing_without_a_warning(marin):
    model = DivergenceClassifier(seed=0).fit(marin)
    unseen = marin.head(3).assign(**{"optimizer.name": "brand-new"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pandas warns (and will raise) on a category it was not given
        got = model.predict_proba(unseen)
    missing = marin.head(3).assign(**{"optimizer.name": None})
    np.testing.assert_array_equal(got, model.predict_proba(missing))
