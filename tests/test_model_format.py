"""Model directories carry a format version: a newer one loads with a warning and without the keys this version does
not know; one written before versions existed (no ``format_version``) loads as before. Fast: no ../shared/data.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel, ConfigDict

from ncpl import predictors
from ncpl.errors import ModelDirError
from ncpl.predictors import FORMAT_VERSION
from ncpl.store import read_runs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Chinchilla fitted on the bundled Gemstones runs (data/gemstones.parquet), saved; its predictions on them."""
    runs = read_runs(ROOT / "data" / "gemstones.parquet")
    model = predictors.create("chinchilla").fit(runs)
    directory = model.save(tmp_path_factory.mktemp("format") / "chinchilla")
    return directory, runs, model.predict(runs)


def rewrite(directory, tmp_path, edit):
    """A copy of the model directory whose predictor.json went through ``edit(meta)``."""
    meta = json.loads((directory / "predictor.json").read_text())
    edit(meta)
    (tmp_path / "predictor.json").write_text(json.dumps(meta))
    return tmp_path


def test_save_writes_the_format_version(saved):
    directory, runs, pred = saved
    meta = json.loads((directory / "predictor.json").read_text())
    assert meta["format_version"] == FORMAT_VERSION >= 1 and meta["predictor"] == "chinchilla"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the current format loads without a warning
        assert np.array_equal(predictors.load_predictor(directory).predict(runs), pred)


def test_directory_without_a_version_still_loads(saved, tmp_path):
    directory, runs, pred = saved
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = predictors.load_predictor(rewrite(directory, tmp_path, lambda meta: meta.pop("format_version")))
    assert np.array_equal(loaded.predict(runs), pred)


def test_newer_format_warns_and_drops_unknown_keys(saved, tmp_path):
    directory, runs, pred = saved

    def newer(meta):
        meta["format_version"] = FORMAT_VERSION + 1
        meta["trained_with"] = {"ncpl": "9.0"}  # beside the state
        meta["state"]["calibration"] = [1.0, 2.0]  # in the state, ignored by this version's reader
        for law in meta["state"]["laws"].values():
            law["irreducible_floor"] = 0.1  # inside a law: this version's ChinchillaLaw refuses the argument

    with pytest.warns(
        UserWarning, match=f"model format {FORMAT_VERSION + 1}, this ncpl reads formats up to {FORMAT_VERSION}"
    ) as caught:
        loaded = predictors.load_predictor(rewrite(directory, tmp_path, newer))
    assert "dropped the keys it does not know: trained_with, irreducible_floor" in str(caught[0].message)
    assert np.array_equal(loaded.predict(runs), pred)


def test_newer_format_with_nothing_to_drop_still_warns(saved, tmp_path):
    directory, runs, pred = saved
    with pytest.warns(UserWarning, match="what that format added is ignored; upgrade ncpl"):
        loaded = predictors.load_predictor(
            rewrite(directory, tmp_path, lambda meta: meta.update(format_version=FORMAT_VERSION + 5))
        )
    assert np.array_equal(loaded.predict(runs), pred)


@pytest.mark.parametrize("version", ["2", -1, 1.5, None])
def test_a_version_that_is_not_a_whole_number_is_corruption(saved, tmp_path, version):
    directory, _, _ = saved
    with pytest.raises(ModelDirError, match="corrupted predictor file .*format_version"):
        predictors.load_predictor(rewrite(directory, tmp_path, lambda meta: meta.update(format_version=version)))


def test_a_missing_field_is_still_corruption_not_an_unknown_key(saved, tmp_path):
    directory, _, _ = saved

    def damaged(meta):
        meta["format_version"] = FORMAT_VERSION + 1
        for law in meta["state"]["laws"].values():
            del law["alpha"]

    with pytest.raises(ModelDirError, match="corrupted predictor file"):
        predictors.load_predictor(rewrite(directory, tmp_path, damaged))


class Settings(BaseModel):
    """A settings object as NCPL saves its TrainConfig: pydantic, unknown fields forbidden."""

    model_config = ConfigDict(extra="forbid")
    width: int


class Probe(predictors.Predictor):
    """A predictor whose state holds a pydantic settings object (a test double, not a real predictor)."""

    name = "probe"

    def __init__(self, settings=None):
        self.settings = settings

    def fit(self, runs):
        return self

    def _predict(self, configs):
        return np.full(len(configs), float(self.settings.width))

    def get_state(self):
        return {"settings": self.settings.model_dump()}

    def set_state(self, state):
        self.settings = Settings.model_validate(state["settings"])


def test_unknown_field_of_a_pydantic_settings_object_is_dropped(tmp_path, monkeypatch):
    monkeypatch.setitem(predictors.REGISTRY, "probe", f"{Probe.__module__}:Probe")
    directory = Probe(Settings(width=3)).save(tmp_path / "probe")
    meta = json.loads((directory / "predictor.json").read_text())
    meta["format_version"] = FORMAT_VERSION + 1
    meta["state"]["settings"]["depth"] = 4
    (directory / "predictor.json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="dropped the keys it does not know: depth"):
        assert predictors.load_predictor(directory).settings == Settings(width=3)
    meta["state"]["settings"]["width"] = "three"  # a wrong value is not an unknown key
    (directory / "predictor.json").write_text(json.dumps(meta))
    with pytest.raises(ModelDirError, match="corrupted predictor file"):
        predictors.load_predictor(directory)
