"""A measured prefix of a run's curve as input: serialized as (fraction, residual) placeholders, trained on random
prefixes (`prefix_points`), read by NCPL's predict_curve(observed=...); other predictors shift to it."""

from pathlib import Path

import numpy as np
import pytest
from tiny import tiny_training

from ncpl import predictors
from ncpl.errors import ConfigError
from ncpl.predictors.hparam_law import residual_law
from ncpl.regressor.backbones import load_backbone
from ncpl.regressor.dataset import Targets, build_examples, curve_indices, seen_points
from ncpl.regressor.predictor import NCPL
from ncpl.regressor.serialize import FRACTION_FIELD, SEEN_FIELDS, Serializer
from ncpl.regressor.train_config import TrainConfig
from ncpl.store import read_runs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gemstones():
    runs = read_runs(ROOT / "data" / "gemstones.parquet")
    has_curve = runs["curve_loss"].map(lambda c: c is not None and len(c) > 1)
    return runs[~runs["diverged"] & has_curve].sample(16, random_state=0).reset_index(drop=True)


def test_seen_points_are_evenly_spaced_and_end_at_the_latest():
    at, residual = np.linspace(0.1, 0.5, 9), np.arange(9.0)
    assert np.allclose(seen_points(at, residual, 3), [(0.1, 0.0), (0.3, 4.0), (0.5, 8.0)])
    assert np.allclose(seen_points(at[:2], residual[:2], 4), [(0.1, 0.0), (0.15, 1.0)])
    assert seen_points(at[:0], residual[:0], 4) == [] and seen_points(at, residual, 0) == []


def test_seen_points_go_before_the_target_prompt_in_both_serializations(gemstones):
    tokenizer = load_backbone("tiny-decoder").tokenizer
    row = gemstones.iloc[0].to_dict()
    for serialization in ("compact", "verbose"):
        serializer = Serializer(tokenizer, serialization=serialization)
        plain = serializer.encode(row, 0.5)
        seen = serializer.encode(row, 0.5, [(0.1, -0.3), (0.2, 0.7)])
        assert seen.num_fields == plain.num_fields[:-1] + [*SEEN_FIELDS, *SEEN_FIELDS, FRACTION_FIELD]
        assert seen.num_values[-5:] == [0.1, -0.3, 0.2, 0.7, 0.5]
        assert len(seen.input_ids) > len(plain.input_ids) and seen.target_position == len(seen.input_ids) - 1


def test_every_target_comes_again_with_a_prefix_before_it(gemstones):
    tokenizer = load_backbone("tiny-decoder").tokenizer
    serializer = Serializer(tokenizer)
    targets = Targets(residual_law("chinchilla", "best").fit(gemstones), 0.05)
    plain = build_examples(gemstones, serializer, targets, max_curve_points=4)
    seen = build_examples(gemstones, serializer, targets, 4, prefix_points=3, rng=np.random.default_rng(0))
    again = build_examples(gemstones, serializer, targets, 4, prefix_points=3, rng=np.random.default_rng(0))
    extra = [e for e in seen if SEEN_FIELDS[0] in e.encoded.num_fields]
    # a run's targets: the final loss and its curve points after the first (whose prefix would be empty)
    curves = [c for c in gemstones["curve_loss"] if c is not None and len(c)]
    per_run = [1 + sum(j > 0 for j in curve_indices(len(c), 4)) for c in curves]
    assert len(curves) == 16 and len(seen) == len(plain) + len(extra) and len(extra) == sum(per_run)
    assert [e.encoded.num_values for e in seen] == [e.encoded.num_values for e in again]  # seeded
    for example in extra:
        fields, values = example.encoded.num_fields, example.encoded.num_values
        at = [v for f, v in zip(fields, values) if f == SEEN_FIELDS[0]]
        asked = values[-1] if fields[-1] == FRACTION_FIELD else 1.0
        assert 1 <= len(at) <= 3 and np.all(np.diff(at) > 0) and at[-1] < asked
        assert not example.is_final and np.isfinite(example.target)
    with pytest.raises(ValueError, match="rng"):
        build_examples(gemstones, serializer, targets, 4, prefix_points=3)


def test_the_change_target_is_the_residual_less_the_level_the_prefix_ended_at(gemstones):
    serializer = Serializer(load_backbone("tiny-decoder").tokenizer)
    targets = Targets(residual_law("chinchilla", "best").fit(gemstones), 0.05)
    built = {
        target: build_examples(gemstones, serializer, targets, 4, 3, np.random.default_rng(0), prefix_target=target)
        for target in ("residual", "change")
    }
    assert [e.encoded.num_values for e in built["residual"]] == [e.encoded.num_values for e in built["change"]]
    single = 0
    for residual, change in zip(built["residual"], built["change"]):
        fields, values = residual.encoded.num_fields, residual.encoded.num_values
        seen = [v for f, v in zip(fields, values) if f == SEEN_FIELDS[1]]
        if not seen:
            assert change.target == residual.target  # the config alone: no level to start from
        elif len(seen) == 1:  # a prefix of one checkpoint: its level is that checkpoint's residual
            single += 1
            assert change.target == pytest.approx(residual.target - seen[0])
        else:
            assert change.target != residual.target
    assert single > 0


@pytest.mark.parametrize("prefix_target", ["residual", "change"])
def test_ncpl_trained_on_prefixes_reads_them_and_others_shift_to_them(gemstones, tmp_path, prefix_target):
    config = TrainConfig(
        **tiny_training(2, max_curve_points=4),
        prefix_points=3,
        prefix_target=prefix_target,
        calibrate_extrapolation=False,
    )
    model = NCPL(config, work_dir=tmp_path / "work").fit(gemstones)
    assert model.reads_prefix and not NCPL(TrainConfig(**tiny_training(1))).reads_prefix
    run = gemstones.iloc[[0]]
    fractions = np.array([0.6, 0.8, 1.0])
    low, high = [(np.array([0.1, 0.2, 0.3]), np.array(level)) for level in ([3.0, 2.9, 2.8], [4.0, 3.9, 3.8])]
    config_only = model.predict_curve(run, fractions)
    given_low, given_high = (model.predict_curve(run, fractions, [seen])[0] for seen in (low, high))
    # the network reads the prefix (the tiny one, two epochs in, only a little; a prefix ignored would change nothing)
    assert np.abs(given_low - given_high).max() > 1e-6 and np.abs(given_low - config_only[0]).max() > 1e-6
    loaded = predictors.load_predictor(model.save(tmp_path / "model"))
    assert loaded.reads_prefix and np.allclose(loaded.predict_curve(run, fractions, [low])[0], given_low, atol=1e-4)

    chinchilla = predictors.create("chinchilla").fit(gemstones)
    shifted = chinchilla.predict_curve(run, fractions, [high])[0]
    at_seen = chinchilla.predict_curve(run, high[0])[0]
    assert shifted == pytest.approx(chinchilla.predict_curve(run, fractions)[0] + np.mean(high[1] - at_seen))
    assert np.allclose(chinchilla.predict_curve(run, fractions, [None]), chinchilla.predict_curve(run, fractions))


@pytest.mark.parametrize(
    "observed, message",
    [
        ([], "1 configs"),
        ([(np.array([0.1, 0.2]), np.array([3.0]))], "2 fractions but 1 losses"),
        ([(np.array([0.2, 0.1]), np.array([3.0, 2.9]))], "increase within"),
        ([(np.array([0.1, 1.5]), np.array([3.0, 2.9]))], "increase within"),
        ([(np.array([0.1]), np.array([np.nan]))], "finite and positive"),
    ],
)
def test_bad_observed_prefixes_are_named(gemstones, observed, message):
    chinchilla = predictors.create("chinchilla").fit(gemstones)
    with pytest.raises(ConfigError, match=rf"observed.*{message}"):
        chinchilla.predict_curve(gemstones.iloc[[0]], np.array([0.5]), observed)


def test_cli_predict_conditions_the_curve_on_an_observed_prefix(tmp_path):
    import json

    from typer.testing import CliRunner

    from ncpl import schema
    from ncpl.cli import app

    marin = read_runs(ROOT / "data" / "marin.parquet")
    model = predictors.create("chinchilla").fit(marin)
    model.save(tmp_path / "law")
    candidate = ROOT / "examples" / "candidate.yaml"
    (tmp_path / "seen.csv").write_text("tokens,loss\n2e9,3.9\n4e9,3.7\n8e9,3.55\n")
    result = CliRunner().invoke(
        app,
        ["predict", str(tmp_path / "law"), "--candidate", str(candidate), "--observed", str(tmp_path / "seen.csv")]
        + ["--json"],
    )
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)["curve"]
    frame = predictors.as_frame(schema.read_config(candidate))
    seen = (np.array([2e9, 4e9, 8e9]) / frame["data.tokens"].iloc[0], np.array([3.9, 3.7, 3.55]))
    assert got["loss"] == pytest.approx(model.predict_curve(frame, np.array(got["fraction"]), [seen])[0].tolist())
    assert got["loss"] != pytest.approx(model.predict_curve(frame, np.array(got["fraction"]))[0].tolist())
    (tmp_path / "long.csv").write_text("tokens,loss\n2e9,3.9\n9e10,3.1\n")
    result = CliRunner().invoke(
        app, ["predict", str(tmp_path / "law"), "--candidate", str(candidate), "--observed", str(tmp_path / "long.csv")]
    )
    assert result.exit_code != 0 and "--observed" in result.output and "data.tokens" in result.output
