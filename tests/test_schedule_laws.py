"""Schedule-aware laws on the real Multi-Power curves, and `ncpl extrapolate` with a step, lr, loss curve."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ncpl.cli import app
from ncpl.errors import ConfigError
from ncpl.laws.schedule import AnnealingLaw, CurveShape, MultiPowerLaw, ScheduleCurve, fit_law
from ncpl.laws.schedule_io import read_schedule_curve
from ncpl.schedules import config_lrs
from ncpl.store import read_runs, to_records

runner = CliRunner()
# the Multi-Power repository's published 25M fit (src/config.py): L0, A, alpha, B, C, beta, gamma
PUBLISHED_25M = [3.04045406, 0.52468604, 0.50786857, 363.78751622, 2.06560812, 0.58279013, 0.64142257]


@pytest.fixture(scope="module")
def curves():
    out = {}
    for record in to_records(read_runs("data/multipower.parquet")):
        if record.run_id.startswith("multipower/25M/"):
            steps = np.array(record.curve.tokens, int)
            lrs = config_lrs(record.config, max(record.config.schedule.total_steps, steps[-1] + 1))
            out[record.meta["schedule_file"]] = ScheduleCurve(lrs, steps, np.array(record.curve.loss), record.run_id)
    return out


def published_law(max_bins):
    law = MultiPowerLaw(max_bins=max_bins)
    law.lr_scale_, law.step_scale_ = 3e-4, 1.0  # the repository's units: raw lr, steps
    l0, a, alpha, b, c, beta, gamma = PUBLISHED_25M
    law.params_ = np.array(
        [l0, np.log(a * 3e-4**-alpha), alpha, np.log(b * 3e-4), np.log(c * 3e-4 ** (1 - gamma)), beta, gamma]
    )
    return law


def test_multipower_form_reproduces_the_published_error(curves):
    """Our form with the repository's fitted constants gives its published test MAE (0.00376 at 25M)."""
    tests = ["constant_72000", "cosine_72000", "wsd_20000_24000", "wsdld_20000_24000", "wsdcon_3", "wsdcon_18"]
    exact, binned = published_law(10**9), published_law(400)
    maes = [np.abs(binned.predict(curves[n], curves[n].steps) - curves[n].loss).mean() for n in tests]
    assert np.mean(maes) == pytest.approx(0.00376, abs=5e-5)
    for name in tests:  # binning the sum over lr changes: < 3e-5 nats on average, < 1e-3 just after warmup
        steps = curves[name].steps[::8]
        gap = np.abs(binned.predict(curves[name], steps) - exact.predict(curves[name], steps))
        assert gap.mean() < 3e-5 and gap.max() < 1e-3, name


def test_laws_fit_three_schedules_and_predict_another(curves):
    """Fitted to the protocol's three schedules (every third point), both laws predict the wsd cooldown's drop."""
    train = [curves["constant_24000"], curves["cosine_24000"], curves["wsdcon_9"]]
    target = curves["wsdld_20000_24000"]
    for law, every in ((AnnealingLaw(), 1), (MultiPowerLaw(max_bins=20), 8)):
        law.fit([ScheduleCurve(c.lrs, c.steps[::every], c.loss[::every], c.name) for c in train])
        error = np.abs(law.predict(target, target.steps) - target.loss)
        assert error.mean() < 0.01 and error[-1] < 0.015, (law.name, error.mean(), error[-1])
        whole = law.predict(target)  # every step; non-increasing once the lr stops rising
        assert len(whole) == len(target.lrs) - 1 and np.all(np.diff(whole[2200:]) <= 1e-9)


def test_bad_schedule_curves_are_named(tmp_path):
    with pytest.raises(ConfigError, match="lr: nan at step 1"):
        ScheduleCurve([0.0, np.nan, 1.0], [1], [3.0])
    with pytest.raises(ConfigError, match="measured steps run 1 .. 5, the lr is known for steps 0 .. 2"):
        ScheduleCurve([0.0, 1.0, 1.0], [1, 5], [3.0, 2.9])
    path = tmp_path / "gap.csv"
    path.write_text("step,lr,loss\n0,0.0,\n2,1e-3,3.0\n")
    with pytest.raises(ConfigError, match="column 'step': 2 at row 2"):
        read_schedule_curve(path)
    path.write_text("step,lr,loss\n0,0.0,\n1,1e-3,3.2x\n")  # a typo is not an unmeasured step
    with pytest.raises(ConfigError, match="column 'loss': '3.2x' at row 2 is not a number; give a number or leave"):
        read_schedule_curve(path)
    path.write_text("step,lr,loss\n")
    with pytest.raises(ConfigError, match="gap.csv: no rows; give a CSV with columns step, lr"):
        read_schedule_curve(path)
    path.write_bytes(b"step,lr,loss\n0,\xff\xfe,\n")
    with pytest.raises(ConfigError, match="gap.csv: cannot read as CSV"):
        read_schedule_curve(path)
    with pytest.raises(ConfigError, match="has 4 parameters"):
        AnnealingLaw().fit([ScheduleCurve([0.0, 1.0, 1.0], [1, 2], [3.0, 2.9])])
    with pytest.raises(ConfigError, match="a loss at step 0; .* leave the loss of step 0, the initialisation, empty"):
        ScheduleCurve([0.0, 1.0, 1.0], [0, 2], [3.0, 2.9])


def write_curve(path, curve, horizon, measured_until):
    frame = pd.DataFrame({"step": np.arange(horizon), "lr": curve.lrs[:horizon]})
    seen = curve.steps <= measured_until
    frame["loss"] = pd.Series(dict(zip(curve.steps[seen], curve.loss[seen])))
    frame.to_csv(path, index=False)


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def test_cli_schedule_curve(curves, tmp_path):
    target, other = tmp_path / "wsd.csv", tmp_path / "cosine.csv"
    write_curve(target, curves["wsdld_20000_24000"], 24000, 12000)
    write_curve(other, curves["cosine_24000"], 24000, 24000)
    code, out = invoke(
        "extrapolate", target, "--fit-on", other, "--law", "annealing", "--json", "--plot", tmp_path / "f.png"
    )
    assert code == 0, out
    result = json.loads(out)
    measured = curves["wsdld_20000_24000"].steps[curves["wsdld_20000_24000"].steps <= 12000]
    assert result["step"][0] == 1 and result["step"][-1] == 23999 and len(result["step"]) == 23999 - len(measured)
    final = curves["wsdld_20000_24000"].loss[-1]  # measured at step 23904
    assert abs(result["loss"][result["step"].index(23904)] - final) < 0.02
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, out = invoke("extrapolate", target, "--law", "power")
    assert code == 0 and "predicted loss" in out, out


def test_cli_schedule_errors(curves, tmp_path):
    target = tmp_path / "wsd.csv"
    write_curve(target, curves["wsdld_20000_24000"], 24000, 12000)
    code, out = invoke("extrapolate", target, "--until", "1e10")
    assert code == 2 and "--until" in out and "last lr row" in out
    code, out = invoke("extrapolate", target, "--fit-on", target, "--law", "temporal")
    assert code == 2 and "--fit-on" in out and "multipower or annealing" in out
    code, out = invoke("extrapolate", target, "--law", "cubic")
    assert code == 2 and "--law: got 'cubic'" in out
    code, out = invoke("extrapolate", target, "--fit-on", tmp_path / "none.csv")
    assert code == 2 and "none.csv: curve file not found" in out
    code, out = invoke("extrapolate", target, "--plot", tmp_path / "f.xyz")
    assert code == 2 and "--plot:" in out and "cannot write a figure as 'xyz'" in out and ".png" in out, out


def test_drop_constants_carry_over_to_a_prefix_fit(curves):
    """A prefix before any decay cannot tell the loss drop; kept from a fit on other schedules, it predicts the end."""
    donor = published_law(400)
    target = curves["wsdld_20000_24000"]
    seen = target.steps <= 0.2 * target.steps[-1]
    law = MultiPowerLaw(max_bins=60, drop_from=donor).fit(
        [ScheduleCurve(target.lrs, target.steps[seen], target.loss[seen], target.name)]
    )
    assert law.params_[3] == donor.params_[3] and law.params_[5:].tolist() == donor.params_[5:].tolist()
    assert law.params_[4] == pytest.approx(donor.params_[4] + np.log(law.step_scale_ / donor.step_scale_))
    error = law.predict(target, target.steps[~seen]) - target.loss[~seen]
    assert abs(error[-1]) < 0.02 and np.abs(error).mean() < 0.02, (error[-1], np.abs(error).mean())


def test_keep_alpha_fits_only_the_level(curves):
    """With keep_alpha the prefix fit keeps the donor's curvature too and moves only L0 and A."""
    donor = published_law(400)
    target = curves["wsdld_20000_24000"]
    seen = target.steps <= 0.2 * target.steps[-1]
    prefix = ScheduleCurve(target.lrs, target.steps[seen], target.loss[seen], target.name)
    law = MultiPowerLaw(max_bins=60, drop_from=donor, keep_alpha=True).fit([prefix])
    assert law.params_[2] == donor.params_[2] and law.params_[3] == donor.params_[3]
    free = MultiPowerLaw(max_bins=60, drop_from=donor).fit([prefix])
    assert free.params_[2] != donor.params_[2]  # without it, alpha is fitted
    error = law.predict(target, target.steps[~seen]) - target.loss[~seen]
    assert np.abs(error).mean() < 0.03, np.abs(error).mean()
    with pytest.raises(ConfigError, match="keep_alpha=True needs drop_from"):
        MultiPowerLaw(keep_alpha=True)
    with pytest.raises(ConfigError, match="keep_alpha=True needs drop_from"):
        fit_law("multipower", prefix, keep_alpha=True)


def test_curve_shape_carries_the_final_loss_back_along_unseen_schedules():
    runs = read_runs("data/multipower.parquet")
    fit_on = runs["run_id"].str.rsplit("/", n=1).str[-1].isin(["cosine_24000", "constant_24000", "wsdcon_9"])
    shape = CurveShape().fit(runs[fit_on])
    held = runs[~fit_on]
    assert np.all(shape.offset(held, held["data.tokens"].to_numpy(float)) == 0)  # the final loss is the law's
    misses, flat = [], []
    for _, run in held.iterrows():
        tokens, loss = np.asarray(run["curve_tokens"], float), np.asarray(run["curve_loss"], float)
        before = np.flatnonzero(tokens < run["data.tokens"])[::8]
        offset = shape.offset(pd.DataFrame([run] * len(before)), tokens[before])
        misses.append(np.abs(offset - (loss[before] - run["final_loss"])).mean())
        flat.append(np.abs(loss[before] - run["final_loss"]).mean())
    # given the final loss, on the six schedules per size that the fit never saw (every 8th checkpoint)
    assert np.mean(misses) < 0.015 and max(misses) < 0.03 and np.mean(misses) < 0.1 * np.mean(flat)
    again = CurveShape.from_state(json.loads(json.dumps(shape.get_state())))
    np.testing.assert_array_equal(
        again.offset(held, held["data.tokens"] / 2), shape.offset(held, held["data.tokens"] / 2)
    )
    assert np.isnan(shape.offset(held.assign(source="steplaw"), held["data.tokens"] / 2)).all()  # no shape fitted
