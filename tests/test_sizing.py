"""`ncpl train --dry-run`: sizing from the backbone's config on the meta device, checked against real objects."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from typer.testing import CliRunner

from ncpl.cli import app
from ncpl.regressor.backbones import load_backbone
from ncpl.regressor.dataset import build_examples
from ncpl.regressor.network import NCPLNetwork
from ncpl.regressor.serialize import Serializer
from ncpl.regressor.sizing import layer_activation_bytes, size
from ncpl.regressor.train_config import TrainConfig
from ncpl.splits import validation_split
from ncpl.store import read_runs, write_runs

ROOT = Path(__file__).resolve().parents[1]


def gpu_config(**changes) -> TrainConfig:
    """configs/gpu.yaml with the tiny Qwen3 standing in for Qwen3-1.7B."""
    return TrainConfig(
        **{**yaml.safe_load((ROOT / "configs/gpu.yaml").read_text()), "backbone": "tiny-qwen3", **changes}
    )


@pytest.fixture(scope="module")
def runs():
    """Real runs with loss curves (Gemstones) and without (Marin)."""
    marin = read_runs(ROOT / "data/marin.parquet").sample(40, random_state=0)
    gems = read_runs(ROOT / "data/gemstones.parquet")
    return pd.concat([marin, gems[gems["curve_loss"].notna()].head(6)], ignore_index=True)


def test_tiny_qwen3_is_seeded_without_touching_global_random_state():
    before = torch.random.get_rng_state()
    first = load_backbone("tiny-qwen3")
    assert torch.equal(torch.random.get_rng_state(), before)
    assert type(first.model).__name__ == "Qwen3Model" and first.is_decoder and first.hidden_size == 32
    torch.manual_seed(123)  # another global state: the same weights
    again = load_backbone("tiny-qwen3").model.state_dict()
    assert all(torch.equal(tensor, again[name]) for name, tensor in first.model.state_dict().items())


def test_counts_equal_the_instantiated_network_and_the_examples(runs):
    config = gpu_config(max_curve_points=5)
    sizing = size(config, runs, processes=8)
    backbone = load_backbone("tiny-qwen3")  # what NCPL.fit builds, with weights
    serializer = Serializer.for_config(config, backbone.tokenizer, is_decoder=True)
    backbone.model.resize_token_embeddings(len(backbone.tokenizer), mean_resizing=False)
    network = NCPLNetwork(backbone.model, backbone.hidden_size, True, config.encoder, **config.encoder_options())
    assert sizing.params == sum(p.numel() for p in network.parameters()) == sizing.trainable_params  # stage 2: full
    assert sizing.backbone_params == sum(p.numel() for p in network.backbone.parameters())
    assert sizing.layers == 2 and sizing.layer_params == sum(p.numel() for p in network.backbone.layers[0].parameters())

    class Zero:  # targets are not needed to count examples
        def to_target(self, frame, loss, tokens):
            return np.zeros(len(loss))

    train, _ = validation_split(runs, config.val_split, config.val_frac, config.seed)  # what ncpl train trains on
    examples = build_examples(train, serializer, Zero(), config.max_curve_points)
    assert sizing.examples == len(examples) > len(train)  # the curves add examples
    assert sizing.tokens == max(len(e.encoded.input_ids) for e in examples)
    assert sizing.steps_per_epoch == math.ceil(len(examples) / (60 * 8))
    lora = size(gpu_config(stage2={"epochs": 1, "lr": 1e-5, "mode": "lora", "lora_r": 4}), runs, processes=8)
    linears = [m for m in backbone.model.modules() if isinstance(m, torch.nn.Linear)]
    assert lora.trainable_params == sizing.encoder_params + sizing.head_params + sum(
        4 * (m.in_features + m.out_features) for m in linears
    )


def test_counts_follow_the_serialization_and_the_prefix_examples(runs):
    """The sizer builds the examples the model would: verbose text is longer, prefix training adds examples."""
    compact = size(gpu_config(max_curve_points=5), runs, processes=1)
    verbose = size(gpu_config(max_curve_points=5, serialization="verbose"), runs, processes=1)
    prefixed = size(gpu_config(max_curve_points=5, prefix_points=4), runs, processes=1)
    assert verbose.tokens > 2 * compact.tokens and verbose.examples == compact.examples
    assert prefixed.examples > compact.examples  # a second copy of each curve target, given a prefix


def test_memory_terms_shard_and_scale(runs):
    one, eight = (size(gpu_config(), runs, processes=n) for n in (1, 8))
    assert eight.memory()["optimizer"] == pytest.approx(one.memory()["optimizer"] / 8)
    assert eight.memory()["activations"] == one.memory()["activations"]  # each process holds its own batch
    double = size(gpu_config(batch_size=120), runs, processes=8)
    assert double.memory()["activations"] == pytest.approx(2 * eight.memory()["activations"])
    ddp = size(gpu_config(), runs, processes=8, sharded=False)
    assert ddp.memory()["optimizer"] == one.memory()["optimizer"] == 8 * one.params


def test_activation_formula_is_what_autograd_saves():
    """Bytes autograd saves in a bf16 forward of tiny-qwen3, per extra sequence of S tokens, against L*a + o."""
    model = load_backbone("tiny-qwen3", dtype=torch.bfloat16).model.train()
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seq = 16

    def saved_bytes(n: int) -> int:
        storages = {}

        def pack(tensor):
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in weights:
                storages[storage.data_ptr()] = storage.nbytes()
            return tensor

        embeds = torch.randn(n, seq, model.config.hidden_size, dtype=torch.bfloat16, requires_grad=True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            model(inputs_embeds=embeds, attention_mask=torch.ones(n, seq, dtype=torch.long))
        return sum(storages.values())

    small, large = 2, 4
    per_token = (saved_bytes(large) - saved_bytes(small)) / ((large - small) * seq)
    config, h = model.config, model.config.hidden_size
    expected = config.num_hidden_layers * layer_activation_bytes(config, 2, qk_norm=True) + 4 * h + 4 + 2 * h
    assert per_token == expected
    sizing = size(gpu_config(), read_runs(ROOT / "data/marin.parquet").head(20), processes=8)
    assert sizing.activation_bytes_per_token == expected


def test_dry_run_cli_local_folder_and_unreachable_hub(runs, tmp_path, monkeypatch):
    write_runs(runs, tmp_path / "runs.parquet")
    backbone = load_backbone("tiny-qwen3")
    backbone.model.config.save_pretrained(tmp_path / "qwen3")  # a local folder: the config and tokenizer, no weights
    backbone.tokenizer.save_pretrained(tmp_path / "qwen3")
    settings = yaml.safe_load((ROOT / "configs/gpu.yaml").read_text())
    for name, spec in (
        ("tiny", "tiny-qwen3"),
        ("folder", str(tmp_path / "qwen3")),
        ("hub", "no-such-org/no-such-model"),
    ):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({**settings, "backbone": spec}))

    def dry_run(name, *more):
        args = [
            "train",
            "--config",
            tmp_path / f"{name}.yaml",
            "--train",
            tmp_path / "runs.parquet",
            "-o",
            tmp_path / "model",
            "--dry-run",
            *more,
        ]
        result = CliRunner().invoke(app, [str(a) for a in args])
        return result.exit_code, " ".join(result.output.split())

    code, tiny = dry_run("tiny")
    sizing = size(gpu_config(), runs, processes=8)
    assert code == 0, tiny
    assert f"{sizing.params:,}" in tiny and "FSDP full shard over 8" in tiny  # configs/accelerate-fsdp.yaml: 8 GPUs
    assert f"optimizer steps per epoch │ {sizing.steps_per_epoch}" in tiny and "memory per GPU: total" in tiny
    code, folder = dry_run("folder", "--num-processes", "2")
    assert code == 0 and f"{sizing.params:,}" in folder and "FSDP full shard over 2" in folder, folder
    assert not (tmp_path / "model").exists()  # nothing trained, nothing written
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # fail at once instead of retrying
    code, hub = dry_run("hub")
    assert code == 2 and "backbone: cannot read the config and tokenizer of 'no-such-org/no-such-model'" in hub, hub
