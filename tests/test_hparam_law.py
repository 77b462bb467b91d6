import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from ncpl import predictors
from ncpl.columns import usable
from ncpl.errors import ConfigError
from ncpl.predictors.chinchilla import Chinchilla, ChinchillaLaw
from ncpl.predictors.hparam_law import LAW_FIELDS, HparamLaw
from ncpl.sources import import_runs
from ncpl.store import to_frame

EPOCH = ChinchillaLaw(E=1.8172, A=482.01, alpha=0.3478, B=2085.43, beta=0.3658)
LR_N, LR_D = -0.6, 0.3  # ln lr* = offset + LR_N ln(N / 1e8) + LR_D ln(D / 1e10)


def grid_runs(source, sizes, optimizers, n_tokens=(2e9, 6e9, 2e10)):
    """An lr x batch grid at each (N, D) from a known law: Chinchilla plus a bowl around a moving optimum,
    steeper above the optimal lr than below it, as real sweeps are."""
    rows = []
    for n in sizes:
        for d in n_tokens:
            for optimizer, offset in optimizers.items():
                lr_star = np.exp(offset + LR_N * np.log(n / 1e8) + LR_D * np.log(d / 1e10))
                bs_star = np.exp(13.0 + 0.5 * np.log(d / 1e10))
                for lr in lr_star * np.exp(np.linspace(-1.5, 1.5, 9)):
                    for bs in bs_star * np.exp(np.linspace(-1.2, 1.2, 5)):
                        u, v = np.log(lr / lr_star), np.log(bs / bs_star)
                        rows.append(
                            {
                                "run_id": f"{source}{len(rows)}",
                                "source": source,
                                "model.n_params": n,
                                "data.tokens": d,
                                "optimizer.name": optimizer,
                                "optimizer.lr": lr,
                                "batch.tokens": bs,
                                "diverged": False,
                                "final_loss": float(EPOCH(n, d))
                                + (0.01 if u < 0 else 0.04) * u**2
                                + 0.01 * v**2
                                + 0.005 * u * v,
                            }
                        )
    return pd.DataFrame(rows)


def test_recovers_the_optimum_and_carries_it_to_a_larger_model(tmp_path):
    train = pd.concat(
        [grid_runs("a", [5e7, 1e8, 2e8], {"adamw": -6.0}), grid_runs("b", [1e8], {"adamw": -6.5, "muon": -4.0})],
        ignore_index=True,
    )
    law = HparamLaw().fit(train)
    assert law.lr_n_ == pytest.approx(LR_N, abs=0.03)  # shared: source b alone has one model size
    assert law.bowls_["b"].lr_offsets["muon"] - law.bowls_["b"].lr_offsets["adamw"] == pytest.approx(2.5, abs=0.05)
    assert law.bowls_["a"].lr_d == pytest.approx(LR_D, abs=0.03)
    larger = pd.concat(
        [grid_runs("a", [8e8], {"adamw": -6.0}), grid_runs("b", [8e8], {"muon": -4.0})], ignore_index=True
    )
    error = np.abs(law.predict(larger) - larger["final_loss"].to_numpy())
    chinchilla = np.abs(Chinchilla(fit_on="best").fit(train).predict(larger) - larger["final_loss"].to_numpy())
    assert error.mean() < 0.004 < chinchilla.mean()
    # its fields: the larger model's lr and batch over the optimum it carried there (the grid's, to 0.05 decades)
    lr_star = np.exp(
        np.where(larger["source"] == "a", -6.0, -4.0) + LR_N * np.log(8.0) + LR_D * np.log(larger["data.tokens"] / 1e10)
    )
    bs_star = np.exp(13.0 + 0.5 * np.log(larger["data.tokens"] / 1e10))
    fields = law.distances(larger)
    assert list(fields.columns) == list(LAW_FIELDS) and fields.index.equals(larger.index)
    assert np.abs(np.log10(fields[LAW_FIELDS[0]] * lr_star / larger["optimizer.lr"])).max() < 0.05
    assert np.abs(np.log10(fields[LAW_FIELDS[1]] * bs_star / larger["batch.tokens"])).max() < 0.05
    loaded = predictors.load_predictor(law.save(tmp_path / "law"))
    assert np.array_equal(loaded.predict(larger), law.predict(larger))


def test_configs_without_lr_or_known_optimizer_and_unknown_source():
    train = grid_runs("a", [5e7, 1e8], {"adamw": -6.0, "lion": -8.0})
    law = HparamLaw().fit(train)
    row = train.head(1)
    no_lr = law.predict(row.assign(**{"optimizer.lr": np.nan, "batch.tokens": np.nan}))
    assert no_lr[0] == pytest.approx(law.frontier_.predict(row)[0] + law.bowls_["a"].shift)  # at the optimum
    # an optimizer the source never ran is centred between the ones it did: its best lr is the geometric mean of theirs
    lrs = np.geomspace(1e-6, 1e-1, 2001)
    best = {
        name: lrs[
            np.argmin(
                law.predict(row.loc[row.index.repeat(len(lrs))].assign(**{"optimizer.name": name, "optimizer.lr": lrs}))
            )
        ]
        for name in ("adamw", "lion", "sophia")
    }
    assert np.log(best["lion"] / best["adamw"]) == pytest.approx(-2.0, abs=0.2)  # the grid's offsets: -8 vs -6
    assert np.log(best["sophia"]) == pytest.approx((np.log(best["adamw"]) + np.log(best["lion"])) / 2, abs=0.02)
    curve = law.predict_curve(row, np.array([0.25, 1.0]))
    assert curve.shape == (1, 2) and curve[0, 0] > curve[0, 1]
    with pytest.raises(ConfigError, match="law fitted for 'z'"):
        law.predict(row.assign(source="z"))
    with pytest.raises(ConfigError, match="law fitted for 'z'"):
        law.distances(row.assign(source="z"))
    fields = law.distances(row.assign(**{"optimizer.lr": np.nan}))  # no lr: nothing to say of it; the batch still
    assert np.isnan(fields[LAW_FIELDS[0]].iloc[0]) and np.isfinite(fields[LAW_FIELDS[1]].iloc[0])


def test_ranks_a_larger_real_steplaw_model_better_than_chinchilla(shared):
    runs = to_frame(import_runs("steplaw", [shared / "steplaw/dense_lr_bs_loss.csv"]).records)
    runs = runs[usable(runs)]
    train, test = runs[runs["model.d_model"].isin([960, 1024])], runs[runs["model.d_model"] == 1280]
    truth = test["final_loss"].to_numpy()
    law, chinchilla = HparamLaw().fit(train).predict(test), Chinchilla(fit_on="best").fit(train).predict(test)
    assert spearmanr(law, truth).statistic > spearmanr(chinchilla, truth).statistic + 0.1
    assert np.abs(law - truth).mean() < 0.5 * np.abs(chinchilla - truth).mean()


def test_the_joint_fits_jacobian_is_the_derivative_of_its_residuals():
    """At random parameters, on both sides of every optimum, with configs lacking an lr or a batch size."""
    from ncpl.predictors.hparam_law import _Inputs, _JointFit

    a = grid_runs("a", [5e7, 1e8], {"adamw": -6.0, "lion": -8.0})
    b = grid_runs("b", [1e8], {"adamw": -6.5}, n_tokens=(4e9,))
    a.loc[a.index[::7], "optimizer.lr"] = np.nan
    b.loc[b.index[::5], "batch.tokens"] = np.nan
    problem = _JointFit({name: (_Inputs.of(g), g["final_loss"].to_numpy()) for name, g in (("a", a), ("b", b))})
    theta = problem.start() + np.random.default_rng(0).normal(0, 0.3, len(problem.start()))
    steps = np.eye(len(theta)) * 1e-6
    numeric = np.stack([(problem.residuals(theta + h) - problem.residuals(theta - h)) / 2e-6 for h in steps], axis=1)
    assert problem.jacobian(theta) == pytest.approx(numeric, abs=1e-6)
