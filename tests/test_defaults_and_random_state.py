"""One source of truth for the CPU default, and no global random state touched by the library."""

from pathlib import Path

import torch

from ncpl.regressor.backbones import load_backbone
from ncpl.regressor.predictor import NCPL
from ncpl.regressor.train_config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def test_train_config_defaults_are_configs_cpu_yaml():
    """An installed wheel (no configs/ folder) and a checkout build the same model."""
    assert TrainConfig() == TrainConfig.from_yaml(ROOT / "configs" / "cpu.yaml")
    assert NCPL().config == TrainConfig()


def test_loading_a_seeded_backbone_leaves_the_global_random_state_alone():
    for spec in ("tiny-decoder", "tiny-encoder", "tiny-qwen3"):
        torch.manual_seed(123)
        before = torch.get_rng_state()
        first = load_backbone(spec).model
        assert torch.equal(torch.get_rng_state(), before), spec
        second = load_backbone(spec).model  # and the backbone is still seeded: the same weights every load
        assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values())), spec
