"""The NCPL regressor on a tiny random backbone: serialization, encoders, training, save/load, resume, 2 processes."""

import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from matplotlib.image import imread
from tiny import tiny_training

from ncpl import predictors
from ncpl.columns import usable
from ncpl.errors import ConfigError, ModelDirError
from ncpl.predictors.hparam_law import LAW_FIELDS, residual_law
from ncpl.regressor import conformal
from ncpl.regressor.backbones import load_backbone
from ncpl.regressor.dataset import Targets
from ncpl.regressor.encoders import FourierEncoder, MLPEncoder
from ncpl.regressor.predictor import NCPL
from ncpl.regressor.serialize import NUM_TOKEN, Serializer, config_fields
from ncpl.regressor.train_config import TrainConfig
from ncpl.regressor.training_range import axis_distances, size_ranges
from ncpl.schedules import PATH_FIELDS, path_fields
from ncpl.sources import import_runs
from ncpl.splits import split_runs
from ncpl.store import read_runs, to_frame, write_runs

ROOT = Path(__file__).resolve().parents[1]
TINY = tiny_training(3, stage2={"epochs": 1, "lr": 1e-3, "mode": "lora", "lora_r": 4})


@pytest.fixture(scope="module")
def runs(shared):
    """A small real training set: Gemstones curves and final losses, and some StepLaw runs."""
    steplaw = to_frame(import_runs("steplaw", [shared / "steplaw/dense_lr_bs_loss.csv"]).records).sample(
        60, random_state=0
    )
    gems = to_frame(import_runs("gemstones", [shared / "gemstones/wandb_dfs/wandb_df_for_fitting_hot.jsonl"]).records)
    return pd.concat([steplaw, gems], ignore_index=True)


@pytest.fixture(scope="module")
def tokenizer():
    return load_backbone("tiny-decoder").tokenizer


def test_serialization_one_placeholder_per_number(runs, tokenizer):
    serializer = Serializer(tokenizer, is_decoder=True, serialization="verbose")
    row = runs.iloc[0].to_dict()
    numbers = [
        key for key, value in config_fields(row) if isinstance(value, (int, float)) and not isinstance(value, bool)
    ]
    encoded = serializer.encode(row)
    assert encoded.input_ids.count(serializer.num_id) == len(numbers) == len(encoded.num_positions) > 5
    assert [encoded.input_ids[p] for p in encoded.num_positions] == [serializer.num_id] * len(numbers)
    assert encoded.num_values == pytest.approx([float(row[k]) for k in numbers])
    text = serializer.text(row)
    compact = text.replace(" ", "")  # WordPiece decoding spaces out punctuation
    assert text.count(NUM_TOKEN) == len(numbers) and compact.endswith("finalloss:") and f"lr:{NUM_TOKEN}" in compact
    curve = serializer.encode(row, fraction=0.25)
    assert curve.num_values[-1] == 0.25 and curve.num_fields[-1] == "frac"
    assert curve.target_position == len(curve.input_ids) - 1  # decoder: the token before the number
    plain = Serializer(tokenizer, numbers_as_text=True, is_decoder=True, serialization="verbose").encode(row)
    assert not plain.num_positions and serializer.num_id not in plain.input_ids
    with pytest.raises(ValueError, match="numbers_as_text"):
        Serializer(tokenizer, numbers_as_text=True)


@pytest.mark.parametrize("is_decoder", [True, False])
def test_compact_serialization_one_position_per_field(shared, tokenizer, is_decoder):
    marin = to_frame(import_runs("marin", [shared / "marin/marin_sweep_runs.jsonl"]).records)
    compact = Serializer(tokenizer, is_decoder=is_decoder)
    verbose = Serializer(tokenizer, is_decoder=is_decoder, serialization="verbose")
    row = next(r for r in marin.to_dict("records") if any(isinstance(v, bool) for v in r.values()))
    fields = config_fields(row)
    encoded = compact.encode(row)
    specials = 0 if is_decoder else 2  # [CLS], [SEP]
    assert len(encoded.input_ids) == len(fields) + 1 + specials < len(verbose.encode(row).input_ids) / 3  # + the prompt
    words = [v for _, v in fields if isinstance(v, str)]
    assert len(encoded.num_positions) == len(fields) - len(words)  # booleans as numbers: a bare "true" names no field
    assert [encoded.input_ids[p] for p in encoded.num_positions] == [compact.num_id] * len(encoded.num_positions)
    assert max(encoded.num_positions) < encoded.target_position == len(encoded.input_ids) - 1 - (not is_decoder)
    assert encoded.word_positions and all(len(p) > 1 for p in encoded.word_pieces)  # "dclm mixture": one position
    text = compact.text(row).replace(" ", "")
    assert text.startswith(("" if is_decoder else "[CLS]") + "marin") and "dclmmixture" in text and "lr" not in text
    curve = compact.encode(row, fraction=0.5)
    assert curve.num_fields[-1] == "frac" and curve.num_positions[-1] == curve.target_position - 1
    other = {**row, "optimizer.lr": 0.123}
    assert (
        compact.encode(other).input_ids == encoded.input_ids and len(compact._layouts) == 2
    )  # one layout, numbers differ
    assert compact.encode(other).num_values[encoded.num_fields.index("optimizer.lr")] == 0.123


def test_lr_named_by_its_optimizer(tokenizer):
    """With `lr_by_optimizer` the lr's placeholder is the field `optimizer.lr@lion`, written `lion lr`: its name embedding
    (and its range) says which optimizer the lr is for; the token ids and the numbers stay the plain serialization's. A
    config without an optimizer keeps the plain field."""
    row = {"source": "marin", "optimizer.name": "lion", "optimizer.lr": 1e-3, "model.n_params": 1e8, "data.tokens": 1e9}
    plain, named = Serializer(tokenizer), Serializer(tokenizer, lr_by_optimizer=True)
    before, after = plain.encode(row), named.encode(row)
    assert after.input_ids == before.input_ids and after.num_values == before.num_values
    assert after.num_fields == [f"{f}@lion" if f == "optimizer.lr" else f for f in before.num_fields]
    assert named.name_ids("optimizer.lr@lion") == named._ids("lion lr") != named.name_ids("optimizer.lr")
    assert "optimizer.lr" in named.encode({k: v for k, v in row.items() if k != "optimizer.name"}).num_fields
    assert TrainConfig(lr_by_optimizer=True).lr_by_optimizer and not TrainConfig().lr_by_optimizer


def test_a_multistep_schedules_stage_lists_are_not_read(tokenizer):
    """A placeholder holds one number: the stage lists of a multistep schedule (the Multi-Power runs) are left out,
    whether they come as lists or as the arrays a parquet file gives back."""
    from ncpl.store import read_runs

    row = read_runs("data/multipower.parquet").query("`schedule.name` == 'multistep'").iloc[0].to_dict()
    assert isinstance(row["schedule.stage_steps"], np.ndarray)
    serializer = Serializer(tokenizer, is_decoder=True)
    as_lists = {**row, "schedule.stage_steps": [7000, 9000], "schedule.stage_lr_ratios": (1.0, 0.3)}
    for stages in (row, as_lists):
        keys = [key for key, _ in config_fields(stages)]
        assert "schedule.name" in keys and not {"schedule.stage_steps", "schedule.stage_lr_ratios"} & set(keys)
    assert serializer.encode(as_lists).input_ids == serializer.encode(row).input_ids
    assert "schedule.total_steps" in serializer.encode(row).num_fields


def test_schedule_path_tells_multistep_schedules_apart(tmp_path, tokenizer):
    """With `schedule_path` each target reads where the lr stands at its point: wsdcon_3 and wsdcon_18, one config to a
    network that reads only the schedule's name and scalars, differ after the step at 8000 of 16000 and agree before
    it; the path's numbers are never clamped to their range at the runs' ends (a curve point mid-run lies outside it)."""
    from ncpl.store import read_runs

    runs = read_runs("data/multipower.parquet")
    three, eighteen = (runs.set_index("run_id").loc[f"multipower/25M/{name}"] for name in ("wsdcon_3", "wsdcon_18"))
    three, eighteen = ({**row.to_dict(), "run_id": row.name} for row in (three, eighteen))
    assert dict(path_fields(three, 1.0)) == pytest.approx({"schedule.lr_now": 0.1, "schedule.lr_mean": 0.53}, abs=0.01)
    assert dict(path_fields(eighteen, 1.0)) == pytest.approx(
        {"schedule.lr_now": 0.6, "schedule.lr_mean": 0.75}, abs=0.01
    )
    assert path_fields(three, 0.4) == path_fields(eighteen, 0.4) and path_fields(three, None) == path_fields(three, 1.0)
    assert path_fields({**three, "schedule.stage_steps": None}, 0.5) == []  # a multistep schedule without its stages
    assert path_fields({**three, "schedule.total_steps": np.nan}, 1.0) == path_fields(three, 1.0)  # tokens count steps
    assert (
        path_fields({**three, "schedule.total_steps": np.nan, "extra.tokens_are_steps": np.nan}, 1.0) == []
    )  # NaN: no
    assert path_fields({**three, "schedule.total_steps": 10**9}, 1.0) == []  # no 8 GB array for an implausible config
    assert path_fields({**three, "schedule_lr": 3.0}, 1.0) == []  # a frame cell no schedule can be read from
    plain, reading = Serializer(tokenizer), Serializer(tokenizer, schedule_path=True)
    assert plain.encode(three, 0.75).num_values == plain.encode(eighteen, 0.75).num_values
    encoded = reading.encode(three, 0.75)
    assert encoded.num_fields[-3:] == ["schedule.lr_now", "schedule.lr_mean", "frac"]
    assert encoded.num_values[-3:-1] != reading.encode(eighteen, 0.75).num_values[-3:-1]

    # the curve law read at the tokens seen, the same for both runs: what differs between the curves is the network's
    config = TrainConfig(
        **{**tiny_training(1), "schedule_path": True, "calibrate_extrapolation": False, "curve_law": "tokens"}
    )
    fit = runs[runs["run_id"].str.rsplit("/").str[-1].isin(["cosine_24000", "constant_24000", "wsdcon_9"])]
    model = NCPL(config, work_dir=tmp_path / "work").fit(fit)
    assert all(not set(PATH_FIELDS) & set(ranges) for ranges in model.field_ranges_.values())
    curves = model.predict_curve(pd.DataFrame([three, eighteen]), np.array([0.25, 0.75]))
    assert curves[0, 0] == curves[1, 0] and curves[0, 1] != curves[1, 1]  # the same input before the step, not after


def test_law_fields_are_read_by_the_network_and_by_the_trees(runs, tmp_path):
    """With `law_fields` the network reads the hparam law's lr and batch over the optimum as two more numbers, ranged
    like the rest, recomputed by the model's own law at every prediction (a frame's stale copies are overwritten), and
    a saved model predicts as it did; the hparam-residual trees read them too; a law without an optimum refuses them."""
    config = TrainConfig(**{**tiny_training(1), "law_fields": True, "calibrate_extrapolation": False})
    model = NCPL(config, work_dir=tmp_path / "work").fit(runs)
    assert set(LAW_FIELDS) <= set(model.field_ranges_["steplaw"])
    steplaw = runs[runs["source"] == "steplaw"].head(8)
    stale = steplaw.assign(**{field: 5.0 for field in LAW_FIELDS})
    assert np.array_equal(model.predict(stale), model.predict(steplaw))
    fractions = np.array([0.5, 1.0])
    assert np.array_equal(model.predict_curve(stale, fractions), model.predict_curve(steplaw, fractions))
    loaded = predictors.load_predictor(model.save(tmp_path / "model"))
    assert loaded.config.law_fields and np.allclose(loaded.predict(steplaw), model.predict(steplaw), atol=1e-6)
    trees = predictors.create("xgboost-hparam-residual", law_fields=True, n_estimators=20).fit(runs)
    assert set(LAW_FIELDS) <= set(trees.features_.numeric)
    assert np.array_equal(trees.predict(stale), trees.predict(steplaw))
    plain = predictors.create("xgboost-hparam-residual", n_estimators=20).fit(runs.assign(**{LAW_FIELDS[0]: 5.0}))
    assert LAW_FIELDS[0] not in plain.features_.numeric  # off: a frame's copy is not read
    with pytest.raises(ConfigError, match="law_fields"):
        predictors.create("xgboost-residual", law_fields=True)
    with pytest.raises(ValueError, match="law_fields"):
        TrainConfig(baseline="chinchilla", baseline_fit_on="best", law_fields=True)


def test_encoders_shapes_and_field_name_independence():
    torch.manual_seed(0)
    values = torch.tensor([3e-4, 1.2e9, 0.0, -0.5])
    names = torch.randn(4, 16)
    for encoder in (FourierEncoder(16, word_rms=0.05), MLPEncoder(16, word_rms=0.05)):
        out = encoder(values, torch.ones(4), names)
        assert out.shape == (4, 16) and torch.isfinite(out).all()
        assert out.detach().pow(2).mean(-1).sqrt().numpy() == pytest.approx(
            [0.05] * 4, rel=1e-3
        )  # the word-embedding scale
    same_value = torch.tensor([1e-3, 1e-3])
    for encoder in (FourierEncoder(16, word_rms=0.05), MLPEncoder(16, word_rms=0.05, names=True)):
        different = encoder(same_value, torch.ones(2), torch.randn(2, 16))
        assert not torch.allclose(different[0], different[1])  # the field's name changes the embedding
    # an unseen field (its name embedding never trained) with values far out of any training range: the embedding stays
    # at the word scale, still tells a decade apart and tells the field from another unseen one (measured over 3 seeds:
    # 0.16-0.35 and 0.8-1.2 of its norm; an MLP on raw values gives 0.0 and 0.0 here)
    fourier = FourierEncoder(16, word_rms=0.05)
    name, other_name = torch.randn(1, 16), torch.randn(1, 16)
    far = fourier(torch.tensor([7.0e12, 7.0e13, 7.0e12]), torch.ones(3), torch.cat([name, name, other_name])).detach()
    assert far.pow(2).mean(-1).sqrt().numpy() == pytest.approx([0.05] * 3, rel=1e-3)
    assert (far[1] - far[0]).norm() > 0.05 * far[0].norm() and (far[2] - far[0]).norm() > 0.3 * far[0].norm()


@pytest.fixture(scope="module")
def trained(runs, tmp_path_factory):
    work = tmp_path_factory.mktemp("tiny") / "work"
    return NCPL(TrainConfig(**TINY), work_dir=work).fit(runs), work


def test_tiny_training_loss_falls_and_save_load_is_exact(runs, trained, tmp_path, shared, monkeypatch):
    model, work = trained
    log = [json.loads(line) for line in (work / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 4 and log[-1]["train_huber"] < log[0]["train_huber"]
    full = model.predict_details(runs)
    own = ["pred_loss", "pred_loss_lo", "pred_loss_hi", "p_diverge"]
    assert list(full.columns) == own + ["outside", "outside_n_params", "outside_tokens", "outside_lr", "outside_batch"]
    assert (full["outside"].fillna(0) == 0).all()  # its own training runs lie inside (NaN: a run without lr or batch)
    details = full[own]
    assert np.isfinite(details.to_numpy()).all() and (details["pred_loss_lo"] <= details["pred_loss_hi"]).all()
    curve = model.predict_curve(runs.head(3), np.array([0.2, 0.6, 1.0]))
    assert curve.shape == (3, 3) and np.isfinite(curve).all()
    fractions = np.linspace(0.05, 1.0, 20)
    gems = runs[runs["source"] == "gemstones"]  # constant and wsd: the lr never rises, so neither may the curve
    assert np.all(np.diff(model.predict_curve(gems, fractions), axis=1) <= 0)
    network = model._predict_curve  # raw curves that rise in places, whatever this tiny network learned
    monkeypatch.setattr(model, "_predict_curve", lambda configs, f: network(configs, f) + 0.05 * np.sin(7 * f))
    assert (np.diff(model._predict_curve(gems, fractions[:-1]), axis=1) > 0).any()
    assert np.all(np.diff(model.predict_curve(gems, fractions[:-1]), axis=1) <= 0)
    rewarmed = gems.head(1).assign(**{"schedule.name": "explicit", "schedule_lr": [[1.0, 0.1, 1.0]]})
    np.testing.assert_allclose(
        model.predict_curve(rewarmed, fractions[:-1]), model._predict_curve(rewarmed, fractions[:-1])
    )
    monkeypatch.undo()
    model.save(tmp_path / "model")
    assert {p.name for p in (tmp_path / "model").iterdir()} >= {
        "predictor.json",
        "model.safetensors",
        "backbone",
        "training_curves.png",
    }
    height, width, _ = imread(tmp_path / "model/training_curves.png").shape
    assert height >= 300 and width >= 600  # drawn from the fit's train_log.jsonl
    assert not list((tmp_path / "model").rglob("*.bin")) and not list((tmp_path / "model").rglob("*.pt"))
    loaded = predictors.load_predictor(tmp_path / "model")
    assert type(loaded.targets_.baseline).__name__ == "HparamLaw" and loaded.targets_.baseline.bowls_.keys() == {
        "steplaw",
        "gemstones",
    }
    assert np.array_equal(loaded.predict(runs), model.predict(runs))
    assert model.get_params() == {"config": TrainConfig(**TINY), "work_dir": work, "inference_dtype": "auto"}
    assert loaded.config == model.config  # fitting changed no setting; the config travels (work_dir is not saved)
    pd.testing.assert_frame_equal(
        loaded.predict_details(runs), full
    )  # the conformal margin and the range travel with it
    assert loaded.field_ranges_ == model.field_ranges_ and set(model.field_ranges_) == {"steplaw", "gemstones"}
    # p_diverge from the trees (the default); a directory saved before `divergence` existed gives its head's
    assert model.config.divergence == "trees" and loaded.divergence_ is not None
    meta = json.loads((tmp_path / "model/predictor.json").read_text())
    del meta["state"]["divergence"], meta["state"]["train_config"]["divergence"]
    (tmp_path / "model/predictor.json").write_text(json.dumps(meta))
    older = predictors.load_predictor(tmp_path / "model")
    assert older.config.divergence == "network" and older.divergence_ is None
    loaded.divergence_ = None
    pd.testing.assert_frame_equal(older.predict_details(runs), loaded.predict_details(runs))
    assert not np.allclose(older.predict_details(runs)["p_diverge"], full["p_diverge"])
    val = split_runs(runs, id_frac=model.config.val_frac, seed=model.config.seed).id
    val = val[usable(val)]
    train = split_runs(runs, id_frac=model.config.val_frac, seed=model.config.seed).train
    train = train[usable(train)]
    residual = train["final_loss"].to_numpy() - model.targets_.baseline.predict(train)
    assert model.targets_.scale == pytest.approx(
        1.4826 * np.median(np.abs(residual - np.median(residual)))
    )  # robust, not the std
    np.testing.assert_allclose(  # the law saw the validation runs too, as the trees' law does
        model.targets_.baseline.predict(runs), residual_law("hparam-law").fit(runs).predict(runs)
    )
    assert set(model.interval_margins_) == {"*", *val["source"]}
    # the interval's widening beyond the training range, from a second network trained without the largest sizes
    assert (work / "extrapolation" / "train_log.jsonl").exists()
    slopes = model.interval_slopes_  # each source's held-out step is in N (the tiny sample has two sizes of each)
    assert set(slopes) == {"N"} and set(slopes["N"]) == {"*", "steplaw", "gemstones"} and min(slopes["N"].values()) >= 0
    assert model.interval_margins_["steplaw"] != model.interval_margins_["gemstones"]
    # The conformal guarantee on runs neither the network nor the margins saw: StepLaw runs outside the training sample
    # (and inside its range, d = 0) are exchangeable with each other, so margins calibrated on 20 of them hold at least
    # 80% of 40 others on average over random splits (and at most 80% + 2/21: the margin is the order statistic one
    # above split conformal's). Checking the runs the margins were calibrated on, as before, could not fail.
    everything = to_frame(import_runs("steplaw", [shared / "steplaw/dense_lr_bs_loss.csv"]).records)
    fresh = everything[~everything["run_id"].isin(runs["run_id"]) & usable(everything)]
    fresh = fresh[axis_distances(fresh, model.train_ranges_).sum(axis=1) <= 1e-9].sample(60, random_state=1)
    calibrated, rng, covered = (model.interval_margins_, model.interval_slopes_), np.random.default_rng(0), []
    for _ in range(40):
        order = rng.permutation(len(fresh))
        model.interval_margins_, model.interval_slopes_ = model._calibrate_interval(fresh.iloc[order[:20]])
        assert not model.interval_slopes_  # no run beyond the training range: the margin alone
        test = fresh.iloc[order[20:]]
        got = model.predict_details(test)
        covered.append(
            (
                (got["pred_loss_lo"].to_numpy() <= test["final_loss"].to_numpy())
                & (test["final_loss"].to_numpy() <= got["pred_loss_hi"].to_numpy())
            ).mean()
        )
    model.interval_margins_, model.interval_slopes_ = calibrated
    assert 0.8 - 0.04 <= np.mean(covered) <= 0.8 + 2 / 21 + 0.04, np.mean(covered)
    (tmp_path / "model/model.safetensors").write_bytes(b"not a weights file")
    with pytest.raises(ModelDirError, match="corrupted"):
        predictors.load_predictor(tmp_path / "model")


def test_numbers_beyond_the_training_range_are_read_at_its_edge(runs, trained):
    model, _ = trained
    row = runs[runs["source"] == "steplaw"].head(1)
    low, high = model.field_ranges_["steplaw"]["model.d_model"]
    at_edge, beyond = row.assign(**{"model.d_model": high}), row.assign(**{"model.d_model": 4 * high})
    outputs = lambda frame: model._outputs([model._example(r) for r in frame.to_dict("records")])  # noqa: E731
    assert low < high and np.array_equal(outputs(beyond), outputs(at_edge))
    clamped = model.config
    model.config = clamped.model_copy(update={"clamp_numbers": False})
    try:
        assert not np.allclose(outputs(beyond), outputs(at_edge))
    finally:
        model.config = clamped


def test_decoder_shared_prefix_cache_equals_the_full_pass(runs, trained):
    from ncpl.regressor.dataset import MODEL_INPUTS
    from ncpl.regressor.network import shared_prefix

    model, _ = trained
    network = model.networks_[0]
    steplaw = runs[runs["source"] == "steplaw"].head(24).to_dict("records")
    examples = [model._example(row) for row in steplaw] + [model._example(steplaw[0], 0.3)]  # a curve point: longer
    batch = model._collator()(examples)
    inputs = {key: batch[key] for key in MODEL_INPUTS}
    with torch.inference_mode():
        embeds = network.embed(
            *(
                inputs[k]
                for k in ("input_ids", "num_mask", "num_values", "num_scales", "name_ids", "name_mask", "word_mask")
            )
        )
        assert shared_prefix(embeds, inputs["attention_mask"]) >= 4  # steplaw dense adamw cosine
        cached = network(**inputs)
        network.share_prefix = False
        full = network(**inputs)
        network.share_prefix = True
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-5)


def test_resume_after_interruption_matches_uninterrupted(runs, tmp_path, monkeypatch):
    from ncpl.regressor.trainer import Trainer

    # the defaults (hparam-law, Fourier periods from 1 decade) are in `trained`; these are the older ones
    config = TrainConfig(
        **{
            **TINY,
            "baseline": "chinchilla",
            "fourier_min_period": 0.25,
            "serialization": "verbose",
            "stage2": {"epochs": 0, "lr": 1e-3},
        }
    )
    reference = NCPL(config, work_dir=tmp_path / "straight").fit(runs).predict(runs)

    original = Trainer._log

    def interrupt_after_epoch_2(self, metrics):
        original(self, metrics)
        if metrics["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_log", interrupt_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        NCPL(config, work_dir=tmp_path / "broken").fit(runs)
    monkeypatch.setattr(Trainer, "_log", original)
    model = NCPL(config, work_dir=tmp_path / "broken").fit(runs)
    resumed = model.predict(runs)
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "broken/train_log.jsonl").read_text().splitlines()]
    assert epochs == [
        1,
        2,
        3,
    ]  # killed after logging epoch 2, before its checkpoint: the line was dropped, epoch 2 ran again
    assert np.allclose(resumed, reference, atol=1e-5)
    meta = json.loads((model.save(tmp_path / "old") / "predictor.json").read_text())
    for option in ("baseline", "fourier_min_period", "serialization"):  # as written before the options existed
        del meta["state"]["train_config"][option]
    (tmp_path / "old/predictor.json").write_text(json.dumps(meta))
    assert np.array_equal(predictors.load_predictor(tmp_path / "old").predict(runs), resumed)
    progress_path = tmp_path / "broken/checkpoint/progress.json"
    progress = json.loads(progress_path.read_text())
    del progress["config"]["prefix_target"]  # as written before the setting existed: it trained as its default does
    progress_path.write_text(json.dumps(progress))
    again = NCPL(config.model_copy(update={"calibrate_extrapolation": False}), work_dir=tmp_path / "broken").fit(runs)
    assert np.allclose(again.predict(runs), resumed, atol=1e-5)  # a calibration setting is not the network's training
    assert len((tmp_path / "broken/train_log.jsonl").read_text().splitlines()) == 3  # resumed at the end: no epoch ran
    changed = TrainConfig(**{**config.model_dump(), "seed": 1})
    with pytest.raises(ValueError, match="different training config"):
        NCPL(changed, work_dir=tmp_path / "broken").fit(runs)
    with pytest.raises(ValueError, match="trained on other runs"):  # same config, fewer runs: never resumed
        NCPL(config, work_dir=tmp_path / "broken").fit(runs.iloc[:-2])


def test_two_cpu_processes_with_accelerate(runs, tmp_path):
    from processes import launch_two_cpu_processes

    write_runs(runs, tmp_path / "runs.parquet")
    config = {**TINY, "stage1": {"epochs": 1, "lr": 3e-3}, "stage2": {"epochs": 1, "lr": 1e-3, "mode": "full"}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    result = launch_two_cpu_processes(
        "-m",
        "ncpl.cli",
        "train",
        "--train",
        str(tmp_path / "runs.parquet"),
        "--config",
        str(tmp_path / "tiny.yaml"),
        "-o",
        str(tmp_path / "model"),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("training NCPL") == 2  # both processes ran
    log = [json.loads(line) for line in (tmp_path / "model/train_log.jsonl").read_text().splitlines()]
    assert [entry["stage"] for entry in log] == [1, 2]  # one log line an epoch: only the main process writes
    assert (tmp_path / "model/training_curves.png").stat().st_size > 10_000
    assert np.isfinite(predictors.load_predictor(tmp_path / "model").predict(runs)).all()


def test_tune_honours_the_divergence_cap(runs, trained):
    from ncpl.errors import ConfigError
    from ncpl.schema import RunRecord
    from ncpl.tuning import Dimension, tune

    model, _ = trained
    base = RunRecord.from_flat(runs.iloc[0].to_dict()).config
    space = [Dimension("optimizer.lr", 1e-4, 3e-2)]
    free = tune(model, base, space, n=32, rounds=1, top=5)
    cap = float(free["p_diverge"].median())
    capped = tune(model, base, space, n=32, rounds=1, top=5, max_p_diverge=cap)
    assert (capped["p_diverge"] <= cap).all() and {"pred_loss_lo", "pred_loss_hi"} <= set(capped.columns)
    with pytest.raises(ConfigError, match="max_p_diverge"):
        tune(model, base, space, n=32, rounds=1, max_p_diverge=-1.0)


def test_members_average_and_member_zero_is_the_single_model(runs, tmp_path):
    single_config = TrainConfig(**{**TINY, "stage2": {"epochs": 0, "lr": 1e-3}})
    single = NCPL(single_config, work_dir=tmp_path / "single").fit(runs)
    model = NCPL(single_config.model_copy(update={"members": 2}), work_dir=tmp_path / "pair").fit(runs)
    assert [p.name for p in sorted((tmp_path / "pair").iterdir())] == ["extrapolation", "member-0", "member-1"]
    first, second = (NCPL(model.config) for _ in range(2))
    for view, network in zip((first, second), model.networks_):  # the pair's fitted state with one of its networks
        vars(view).update({k: v for k, v in vars(model).items() if k.endswith("_")}, networks_=[network])
    np.testing.assert_allclose(
        first.predict(runs), single.predict(runs), atol=1e-6
    )  # member 0 trains as the single model does
    assert np.abs(second.predict(runs) - first.predict(runs)).max() > 1e-4  # member 1 has its own seed (same: 0)
    np.testing.assert_allclose(model.predict(runs), (first.predict(runs) + second.predict(runs)) / 2, atol=1e-9)
    model.save(tmp_path / "model")
    assert {"model.member-1.safetensors", "training_curves.member-1.png", "train_log.member-1.jsonl"} <= {
        p.name for p in (tmp_path / "model").iterdir()
    }
    loaded = predictors.load_predictor(tmp_path / "model")
    pd.testing.assert_frame_equal(loaded.predict_details(runs), model.predict_details(runs))
    (tmp_path / "model/model.member-1.safetensors").unlink()
    with pytest.raises(ModelDirError, match="model.member-1.safetensors: weights file missing"):
        predictors.load_predictor(tmp_path / "model")


def test_a_fit_without_work_dir_leaves_no_checkpoints_behind(runs, tmp_path, monkeypatch):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    model = NCPL(TrainConfig(**tiny_training(2), calibrate_extrapolation=False)).fit(runs)
    assert not list(scratch.iterdir())
    model.save(tmp_path / "model")  # the metrics of the fit outlive its checkpoints
    log = [json.loads(line) for line in (tmp_path / "model/train_log.jsonl").read_text().splitlines()]
    assert [(entry["stage"], entry["epoch"]) for entry in log] == [(1, 1), (1, 2)]


def test_validation_runs_that_all_failed_are_refused_before_training(runs):
    val = runs.head(3).assign(diverged=True)  # nothing left to choose a checkpoint by or calibrate on
    with pytest.raises(ConfigError, match="val: none of the 3 validation runs converged; raise val_frac"):
        NCPL(TrainConfig(**tiny_training(1))).fit(runs.iloc[3:], val=val)


def test_largest_validation_split_widens_the_interval_beyond_the_training_sizes(shared, tmp_path):
    from ncpl.splits import validation_split

    steplaw = to_frame(import_runs("steplaw", [shared / "steplaw/dense_lr_bs_loss.csv"]).records)
    steplaw = steplaw[~steplaw["diverged"]]
    runs = pd.concat(
        [steplaw[steplaw["model.d_model"] == width].sample(40, random_state=0) for width in (960, 1024)],
        ignore_index=True,
    )
    config = TrainConfig(**{**TINY, "val_split": "largest", "val_frac": 0.2, "stage2": {"epochs": 0, "lr": 1e-3}})
    model = NCPL(config, work_dir=tmp_path / "work").fit(runs)
    train, val = validation_split(runs, "largest", 0.2, config.seed)
    assert (train["model.d_model"] == 960).all() and (val["model.d_model"] == 1024).sum() == 40
    assert model.train_ranges_["steplaw"][1] == pytest.approx(np.log10(train["model.n_params"].max()))
    step = axis_distances(val, model.train_ranges_).sum(axis=1)
    beyond = step > 0
    assert beyond.sum() == 40 and np.allclose(step[beyond], np.log10(268304384 / 214663680))
    assert model.interval_slopes_["N"]["steplaw"] >= 0 and model.interval_slopes_ == {
        "N": {"steplaw": model.interval_slopes_["N"]["steplaw"], "*": model.interval_slopes_["N"]["steplaw"]}
    }  # the step to h1024 is in N
    got = model.predict_details(val)
    loss = val["final_loss"].to_numpy()
    inside = (got["pred_loss_lo"].to_numpy() <= loss) & (loss <= got["pred_loss_hi"].to_numpy())
    assert inside[beyond].mean() >= 0.8 and inside[~beyond].mean() >= 0.8  # conformal on each part it calibrated on
    larger = val.assign(**{"model.n_params": val["model.n_params"] * 10})  # a decade further out: a wider margin
    width = lambda d: (d["pred_loss_hi"] - d["pred_loss_lo"]).to_numpy()  # noqa: E731
    further = axis_distances(larger, model.train_ranges_).sum(axis=1)
    margins = model.interval_margins_["steplaw"] + model.interval_slopes_["N"]["steplaw"] * further
    assert np.all(margins >= model.interval_margins_["steplaw"]) and np.all(further > step)
    assert np.all(width(model.predict_details(larger)) >= 2 * margins - 1e-9)
    model.save(tmp_path / "model")
    loaded = predictors.load_predictor(tmp_path / "model")
    assert loaded.interval_slopes_ == model.interval_slopes_ and loaded.train_ranges_ == model.train_ranges_
    pd.testing.assert_frame_equal(loaded.predict_details(val), got)


@pytest.mark.parametrize("steps", [1, 2])
def test_extrapolation_steps_hold_out_nested_sizes_and_pool_their_scores(monkeypatch, tmp_path, steps):
    """Each step's calibrating network trains without one more of each source's largest size groups and scores every
    run it did not see; k comes from the scores of all steps (the networks themselves are stood in for)."""
    runs = read_runs(ROOT / "data" / "gemstones.parquet")
    trained_on, seen, returned = [], [], []

    def fit(self, train, val, accelerator):
        trained_on.append(set(train["run_id"]))
        self.train_ranges_ = size_ranges(train)

    def conformity(self, held_out):
        distances = axis_distances(held_out, self.train_ranges_)
        seen.append(dict(zip(held_out["run_id"], distances[:, 0])))
        returned.append(
            (np.full(len(held_out), 0.01 * len(seen)), held_out["source"].astype(str).to_numpy(), distances)
        )
        return returned[-1]

    monkeypatch.setattr(NCPL, "_fit_seeded", fit)
    monkeypatch.setattr(NCPL, "_conformity", conformity)
    slopes = NCPL(TrainConfig(**tiny_training(1), extrapolation_steps=steps))._extrapolation_slopes(
        runs, tmp_path, None
    )
    everything = set(runs.loc[usable(runs), "run_id"])
    assert len(trained_on) == steps and all(seen[j].keys() == everything - trained_on[j] for j in range(steps))
    assert set(slopes) == {"N"} and slopes["N"]["gemstones"] > 0
    if steps == 2:  # the second network saw fewer sizes, scores the first one's runs too, and from further away
        assert trained_on[1] < trained_on[0] and seen[0].keys() < seen[1].keys()
        assert all(seen[1][run] > distance for run, distance in seen[0].items())
    assert slopes == conformal.slopes_beyond(*(np.concatenate(parts) for parts in zip(*returned)))


def stand_in_calibrators(monkeypatch, on_fit) -> None:
    """Calibrating networks stood in for: each fit calls `on_fit(model, train)` and keeps the training runs' ranges;
    every held-out run scores 0.01."""

    def fit(self, train, val, accelerator):
        on_fit(self, train)
        self.train_ranges_ = size_ranges(train)

    def conformity(self, held_out):
        distances = axis_distances(held_out, self.train_ranges_)
        return np.full(len(held_out), 0.01), held_out["source"].astype(str).to_numpy(), distances

    monkeypatch.setattr(NCPL, "_fit_seeded", fit)
    monkeypatch.setattr(NCPL, "_conformity", conformity)


def test_extrapolation_steps_stop_when_no_size_is_left_to_step_from(monkeypatch, tmp_path):
    """Asked for more steps than a source has sizes, the calibrating networks stop at the last nested hold-out:
    no network trains on the same runs as the one before it (its scores would be counted twice)."""
    runs = read_runs(ROOT / "data" / "gemstones.parquet")
    trained_on = []
    stand_in_calibrators(monkeypatch, lambda model, train: trained_on.append(frozenset(train["run_id"])))
    NCPL(TrainConfig(**tiny_training(1), extrapolation_steps=99))._extrapolation_slopes(runs, tmp_path, None)
    assert 1 < len(trained_on) < runs["model.n_params"].nunique()
    assert all(later < earlier for earlier, later in zip(trained_on, trained_on[1:]))  # strictly nested, never equal
    assert all(trained_on)


@pytest.mark.parametrize(("members", "extrapolation_members"), [(3, 1), (3, 3), (1, 2)])
def test_calibrating_model_trains_extrapolation_members_networks(monkeypatch, tmp_path, members, extrapolation_members):
    """The calibrating model averages `extrapolation_members` networks, whatever the model it calibrates averages."""
    runs = read_runs(ROOT / "data" / "gemstones.parquet")
    calibrators = []
    stand_in_calibrators(monkeypatch, lambda model, train: calibrators.append(model.config))
    config = TrainConfig(**{**tiny_training(1), "members": members, "extrapolation_members": extrapolation_members})
    NCPL(config)._extrapolation_slopes(runs, tmp_path, None)
    assert [c.members for c in calibrators] == [extrapolation_members]
    assert calibrators[0].seed == config.seed and not calibrators[0].calibrate_extrapolation


def test_curve_law_schedule_moves_the_curve_targets_only_and_is_saved(runs, tmp_path):
    config = TrainConfig(**tiny_training(1), curve_law="schedule", calibrate_extrapolation=False)
    model = NCPL(config).fit(runs)
    shaped, plain = model.targets_, Targets(model.targets_.baseline, model.targets_.scale)
    assert set(shaped.shape.params_) == {"gemstones"}  # the StepLaw runs have no curves
    loss, tokens = runs["final_loss"].to_numpy(float), runs["data.tokens"].to_numpy(float)
    np.testing.assert_array_equal(shaped.to_target(runs, loss, tokens), plain.to_target(runs, loss, tokens))
    moved = shaped.to_target(runs, loss, tokens / 4) - plain.to_target(runs, loss, tokens / 4)
    gems = (runs["source"] == "gemstones").to_numpy()
    assert np.all(moved[~gems] == 0) and np.nanmax(np.abs(moved[gems])) > 0.1
    model.save(tmp_path / "model")
    loaded = predictors.load_predictor(tmp_path / "model")
    fractions = np.array([0.25, 0.5, 1.0])
    np.testing.assert_allclose(
        loaded.predict_curve(runs[gems].head(4), fractions), model.predict_curve(runs[gems].head(4), fractions)
    )
    saved = json.loads((tmp_path / "model/predictor.json").read_text())  # as written before curve_law existed
    del saved["state"]["curve_shape"], saved["state"]["train_config"]["curve_law"]
    (tmp_path / "model/predictor.json").write_text(json.dumps(saved))
    older = predictors.load_predictor(tmp_path / "model")
    assert older.config.curve_law == "tokens" and older.targets_.shape is None
