"""Fixtures of the fault suite: a tiny NCPL model (tiny-decoder backbone) and sweep files built from a real config."""

import sys
from pathlib import Path

import pytest
from faultkit import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import score_memory  # noqa: E402  (the sweep generator and the peak-RSS runner are shared with the benchmark)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """NCPL on tiny-decoder, one epoch on 200 real Marin runs."""
    base = tmp_path_factory.mktemp("tiny-model")
    return score_memory.train_tiny_model(base / "model", base / "work")


@pytest.fixture(scope="session")
def write_sweep():
    return score_memory.write_sweep
