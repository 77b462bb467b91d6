"""The ensemble predictor: a weighted mean of members, saved and loaded as one directory, built by `ncpl ensemble`."""

import numpy as np
import pytest
from typer.testing import CliRunner

from ncpl import predictors
from ncpl.cli import app
from ncpl.errors import ConfigError
from ncpl.predictors.ensemble import Ensemble
from ncpl.sources import import_runs
from ncpl.store import to_frame


@pytest.fixture(scope="module")
def runs(shared):
    runs = to_frame(import_runs("steplaw", [shared / "steplaw/dense_lr_bs_loss.csv"]).records)
    return runs[~runs["diverged"]].sample(300, random_state=0)


def test_weighted_mean_save_load_and_cli(runs, tmp_path):
    law = predictors.create("chinchilla").fit(runs)
    trees = predictors.create("xgboost-residual", n_estimators=30).fit(runs)
    model = Ensemble([law, trees], weights=[1, 3])
    expected = 0.25 * law.predict(runs) + 0.75 * trees.predict(runs)
    np.testing.assert_allclose(model.predict(runs), expected)
    assert not model.predicts_curves and Ensemble([law, law]).predicts_curves
    np.testing.assert_allclose(
        Ensemble([law, law]).predict_curve(runs, [0.5, 1.0]), law.predict_curve(runs, [0.5, 1.0])
    )
    with pytest.raises(ConfigError, match="do not predict curves"):
        model.predict_curve(runs, [0.5])
    np.testing.assert_array_equal(
        predictors.load_predictor(model.save(tmp_path / "ens")).predict(runs), model.predict(runs)
    )

    law.save(tmp_path / "law")
    trees.save(tmp_path / "trees")
    result = CliRunner().invoke(
        app,
        ["ensemble", str(tmp_path / "law"), str(tmp_path / "trees"), "--weights", "1,3", "-o", str(tmp_path / "cli")],
    )
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(predictors.load_predictor(tmp_path / "cli").predict(runs), expected)
    bad = CliRunner().invoke(app, ["ensemble", str(tmp_path / "law"), "--weights", "1,x", "-o", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "--weights" in bad.output
    with pytest.raises(ConfigError, match="weights"):
        Ensemble([law, trees], weights=[1])
    with pytest.raises(ConfigError, match="members"):
        predictors.create("ensemble").fit(runs)
