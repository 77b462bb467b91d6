"""Inference precision: what the CPU reports, which dtype `auto` picks, and reduced-precision copies that predict."""

import numpy as np
import pandas as pd
import pytest
import torch

from ncpl.errors import ConfigError
from ncpl.regressor.precision import (
    BF16_MIN_SPEEDUP,
    CPUFeatures,
    _cpuinfo_flags,
    bf16_matmul_speedup,
    cpu_features,
    for_inference,
    resolve,
    set_inference_dtype,
)
from ncpl.regressor.predictor import NCPL
from ncpl.regressor.train_config import TrainConfig
from ncpl.sources import import_runs
from ncpl.store import to_frame

AVX2 = CPUFeatures("AVX2", avx512_bf16=False, amx=False, vnni=False)
SAPPHIRE_RAPIDS = CPUFeatures("AVX512", avx512_bf16=True, amx=True, vnni=True)
XEON_BF16_WITHOUT_AMX = CPUFeatures("AVX512", avx512_bf16=True, amx=False, vnni=True)


def test_cpu_features_agree_with_proc_cpuinfo():
    features, flags = cpu_features(), _cpuinfo_flags()
    if flags:  # Linux
        assert features.avx512_bf16 == ("avx512_bf16" in flags) and features.amx == ("amx_tile" in flags)
    assert features.flags().startswith(torch.backends.cpu.get_cpu_capability())
    assert AVX2.flags() == "AVX2, no avx512_bf16, no amx, no vnni"


def test_auto_picks_bf16_only_where_the_cpu_has_bf16_units_that_beat_fp32():
    assert resolve("auto", "cpu", AVX2) == "fp32"
    assert resolve("auto", "cpu", AVX2, bf16_speedup=4.0) == "fp32"  # emulated bf16 is never picked
    assert resolve("auto", "cpu", SAPPHIRE_RAPIDS, bf16_speedup=4.3) == "bf16"
    assert resolve("auto", "cpu", XEON_BF16_WITHOUT_AMX, bf16_speedup=0.5) == "fp32"  # the units, but slower
    measured = bf16_matmul_speedup()
    assert measured > 0 and bf16_matmul_speedup() is measured  # measured once a process
    assert resolve("auto", "cpu") == ("bf16" if cpu_features().bf16_units and measured >= BF16_MIN_SPEEDUP else "fp32")
    assert resolve("int8", "cpu", AVX2) == "int8" and resolve("bf16", "cpu", AVX2) == "bf16"  # on request
    assert resolve("int8", "cuda", SAPPHIRE_RAPIDS) == "fp32"  # a GPU runs the network as loaded
    with pytest.raises(ValueError, match="inference_dtype: 'fp8'"):
        resolve("fp8")
    with pytest.raises(ConfigError, match="inference_dtype"):
        NCPL(inference_dtype="half")


@pytest.fixture(scope="module")
def model(shared):
    """An untrained tiny NCPL with a random head (a trained one's zero-initialised head would predict the law alone)."""
    runs = to_frame(import_runs("steplaw", [shared / "steplaw/dense_lr_bs_loss.csv"]).records)
    runs = runs.sample(40, random_state=0)
    config = TrainConfig(
        backbone="tiny-encoder", members=1, stage1={"epochs": 0, "lr": 1e-3}, stage2={"epochs": 0, "lr": 1e-3}
    )
    model = NCPL(config, inference_dtype="fp32").fit(runs)  # fp32 is the reference: `auto` may be bf16
    torch.nn.init.normal_(model.networks_[0].head.weight, std=0.5, generator=torch.Generator().manual_seed(0))
    return model, runs


@pytest.mark.parametrize("dtype", ["bf16", "int8"])
def test_reduced_precision_predicts_close_to_fp32_and_leaves_the_model_alone(model, dtype):
    model, runs = model
    fp32 = model.predict_details(runs)
    before = {k: v.clone() for k, v in model.networks_[0].state_dict().items()}
    set_inference_dtype(model, dtype)
    try:
        low = model.predict_details(runs)
        assert list(low.columns) == list(fp32.columns)
        assert 0 < np.abs(low["pred_loss"] - fp32["pred_loss"]).max() < 0.05  # it ran in another precision, and close
        assert len(model._low_precision[dtype]) == 1  # made once
    finally:
        model.inference_dtype = "fp32"
    after = model.networks_[0].state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the fp32 networks are untouched
    pd.testing.assert_frame_equal(model.predict_details(runs), fp32)
    low_network = for_inference(model.networks_[0], dtype)
    assert low_network is not model.networks_[0]
    if dtype == "bf16":
        assert next(low_network.backbone.parameters()).dtype == torch.bfloat16
        assert low_network.head.weight.dtype == torch.float32


def test_auto_mixed_precision_is_refused_where_launched_cpu_processes_could_disagree(monkeypatch):
    from ncpl.regressor.trainer import _mixed_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="mixed_precision: auto .* set mixed_precision to bf16 or no"):
        _mixed_precision("auto")
    assert _mixed_precision("no") == "no" and _mixed_precision("bf16") == "bf16"  # explicit settings are kept
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert _mixed_precision("auto") == ("bf16" if resolve("auto") == "bf16" else "no")  # one process: measured
