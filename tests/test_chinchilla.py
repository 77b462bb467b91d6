import numpy as np
import pandas as pd
import pytest

from ncpl import predictors
from ncpl.errors import ConfigError
from ncpl.predictors.chinchilla import EPOCH_N_TERM, Chinchilla, ChinchillaLaw, fit_chinchilla

HOFFMANN = ChinchillaLaw(E=1.69, A=406.4, alpha=0.34, B=410.7, beta=0.28)
EPOCH = ChinchillaLaw(E=1.8172, A=482.01, alpha=0.3478, B=2085.43, beta=0.3658)


@pytest.mark.parametrize("law", [HOFFMANN, EPOCH])
def test_recovers_known_constants(law):
    rng = np.random.default_rng(0)
    n, d = 10 ** rng.uniform(7, 10, 300), 10 ** rng.uniform(9, 12, 300)
    fitted = fit_chinchilla(n, d, law(n, d))
    for name in ("E", "alpha", "beta"):
        assert getattr(fitted, name) == pytest.approx(getattr(law, name), rel=1e-3)
    for name in ("A", "B"):
        assert getattr(fitted, name) == pytest.approx(getattr(law, name), rel=1e-2)


def frame_from_law(law, source, rng, n=120):
    params, tokens = 10 ** rng.uniform(7, 9.5, n), 10 ** rng.uniform(9, 11.5, n)
    return pd.DataFrame(
        {
            "run_id": [f"{source}{i}" for i in range(n)],
            "source": source,
            "model.n_params": params,
            "data.tokens": tokens,
            "final_loss": law(params, tokens),
            "diverged": False,
        }
    )


def test_per_source_fit_predict_save_load(tmp_path):
    rng = np.random.default_rng(1)
    runs = pd.concat([frame_from_law(HOFFMANN, "a", rng), frame_from_law(EPOCH, "b", rng)], ignore_index=True)
    runs.loc[0, ["final_loss", "diverged"]] = [11.0, True]  # a diverged run must not bend the fit
    model = Chinchilla().fit(runs)
    assert model.laws_["a"].alpha == pytest.approx(0.34, rel=1e-3) and model.laws_["b"].beta == pytest.approx(
        0.3658, rel=1e-3
    )
    ok = runs[~runs["diverged"]]
    assert np.abs(model.predict(ok) - ok["final_loss"]).max() < 1e-3
    curve = model.predict_curve(ok.head(3), np.array([0.5, 1.0]))
    assert curve.shape == (3, 2) and (curve[:, 0] > curve[:, 1]).all()
    loaded = predictors.load_predictor(model.save(tmp_path / "law"))
    assert np.array_equal(loaded.predict(ok), model.predict(ok))
    with pytest.raises(ConfigError, match="no Chinchilla law fitted for 'c'"):
        model.predict(ok.head(1).assign(source="c"))


def test_fit_on_best_and_bad_options():
    rng = np.random.default_rng(2)
    runs = frame_from_law(HOFFMANN, "a", rng)
    worse = runs.assign(run_id=runs["run_id"] + "w", final_loss=runs["final_loss"] + 0.3)
    model = Chinchilla(fit_on="best").fit(pd.concat([runs, worse], ignore_index=True))
    assert model.laws_["a"].E == pytest.approx(1.69, rel=1e-2) and model.laws_["a"].n_runs == len(runs)
    with pytest.raises(ConfigError, match="fit_on"):
        Chinchilla(fit_on="median")
    with pytest.raises(ConfigError, match="unknown predictor"):
        predictors.create("gpt5")


def test_prior_settles_what_one_model_size_cannot():
    rng = np.random.default_rng(3)
    d = 10 ** rng.uniform(9, 11, 100)
    n = np.full_like(d, 1.3e8)  # a single model size: the N term is not identifiable
    free = fit_chinchilla(n, d, EPOCH(n, d))
    anchored = fit_chinchilla(n, d, EPOCH(n, d), prior_weight=1e-4)
    assert anchored.alpha == pytest.approx(EPOCH.alpha, abs=0.02) and anchored.E == pytest.approx(EPOCH.E, rel=0.05)
    assert abs(free.alpha - EPOCH.alpha) > 0.1  # left free, the exponent lands anywhere
    for law in (free, anchored):  # both fit the data they saw
        assert np.abs(law(n, d) - EPOCH(n, d)).max() < 2e-3
    runs = pd.DataFrame(
        {
            "run_id": np.arange(len(d)).astype(str),
            "source": "one-size",
            "model.n_params": n,
            "data.tokens": d,
            "final_loss": EPOCH(n, d),
            "diverged": False,
        }
    )
    default = Chinchilla().fit(runs).laws_["one-size"]  # one size: the N term is Epoch's; E, B and beta are fitted
    assert (default.A, default.alpha) == pytest.approx(EPOCH_N_TERM) and np.abs(
        default(n, d) - EPOCH(n, d)
    ).max() < 2e-3
    two = np.where(np.arange(len(d)) % 2, 1.3e8, 1.6e8)  # two sizes: the weak prior picks the split
    runs = runs.assign(**{"model.n_params": two, "final_loss": EPOCH(two, d)})
    assert Chinchilla().fit(runs).laws_["one-size"].alpha == pytest.approx(
        fit_chinchilla(two, d, EPOCH(two, d), prior_weight=1e-4).alpha
    )
