"""The cluster path on a CPU: configs/gpu.yaml's training of a tiny Qwen3 under `accelerate launch`.

Two processes with batch b each must train the network one process trains with batch 2b: accelerate's
seedable sampler draws the same permutation in both, each global step sees the same 2b examples, and DDP
averages the two per-process mean gradients. That average is the one-process mean only when both halves
weigh their examples alike: the loss terms are means over masked subsets (converged runs, final-loss
examples), so the runs here all converged and give final-loss examples only (max_curve_points 0), and
the training set is a multiple of 2b (else even_batches pads the last step with repeated examples).

FSDP itself does not run on a CPU, although torch 2.13's fully_shard does over gloo: accelerate 1.15 joins the
processes it starts for `distributed_type: FSDP` into a process group only on GPU-like devices (its
AcceleratorState picks MULTI_CPU only when told ACCELERATE_USE_CPU, and FSDP only for MULTI_GPU and kin), so each
would train alone on all the data; the trainer refuses that. scripts/fsdp_on_cpu.py marks accelerate's state FSDP
by hand: both stages then train under fully_shard, and the saved model predicts what one process's does.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from processes import TWO_CPU_PROCESSES

from ncpl import predictors
from ncpl.columns import usable
from ncpl.store import read_runs, write_runs

ROOT = Path(__file__).resolve().parents[1]
FSDP_ON_CPU = (
    *("-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517"),
    str(ROOT / "scripts/fsdp_on_cpu.py"),
)
PER_PROCESS = 4  # batch per process of the 2-process run; the 1-process run takes 2 x this
# nats: two processes sum their gradients in another order than one process does, and the rounding grows over the
# training steps (0.00001 seen, with the divergence head's loss at weight 1); a prediction error is ~0.01
ATOL = 5e-5


def gpu_config(batch_size: int) -> dict:
    """configs/gpu.yaml with what a CPU test changes: the backbone, the sizes, float32, no tracker, 1 epoch a stage, and
    the Chinchilla residual law (fitted in seconds; hparam-law's fit, the same in every process, takes far longer)."""
    config = yaml.safe_load((ROOT / "configs/gpu.yaml").read_text())
    return {
        **config,
        "backbone": "tiny-qwen3",
        "batch_size": batch_size,
        "eval_batch_size": 16,
        "max_curve_points": 0,
        "mixed_precision": "no",
        "log_with": [],
        "baseline": "chinchilla",
        "stage1": {**config["stage1"], "epochs": 1, "lr": 3e-3},
        "stage2": {**config["stage2"], "epochs": 1, "lr": 1e-3},
    }


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """48 training runs (6 steps of 8) and 16 validation runs, real converged Marin runs."""
    folder = tmp_path_factory.mktemp("distributed")
    marin = read_runs(ROOT / "data/marin.parquet")
    runs = marin[usable(marin)].sample(64, random_state=0)
    write_runs(runs.iloc[:48], folder / "train.parquet")
    write_runs(runs.iloc[48:], folder / "val.parquet")
    for name, batch in (("one", 2 * PER_PROCESS), ("two", PER_PROCESS)):
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(gpu_config(batch)))
    lora = gpu_config(PER_PROCESS)
    lora["stage2"] = {**lora["stage2"], "mode": "lora", "lora_r": 4, "lora_alpha": 8}
    (folder / "two-lora.yaml").write_text(yaml.safe_dump(lora))
    return folder


def train(
    folder: Path,
    config: str,
    output: str,
    launcher: list[str] | None = None,
    program: tuple[str, ...] = ("-m", "ncpl.cli"),
    **env: str,
) -> subprocess.CompletedProcess:
    """`PROGRAM train` (the ncpl CLI by default) in a subprocess of one thread a process, under `accelerate launch
    LAUNCHER` if given."""
    command = [
        sys.executable,
        *(["-m", "accelerate.commands.launch", *launcher] if launcher else []),
        *program,
        "train",
        "--train",
        str(folder / "train.parquet"),
        "--val",
        str(folder / "val.parquet"),
        "--config",
        str(folder / config),
        "-o",
        str(folder / output),
    ]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1", **env},
    )


def trained(folder: Path, output: str, config: str) -> Path:
    """The one-process model (another test may have trained it already)."""
    if not (folder / output / "predictor.json").exists():
        single = train(folder, config, output)
        assert single.returncode == 0, single.stdout[-3000:] + single.stderr[-3000:]
    return folder / output


def predict(folder: Path, output: str) -> np.ndarray:
    runs = read_runs(folder / "train.parquet", folder / "val.parquet")
    return predictors.load_predictor(folder / output).predict(runs)


def test_two_processes_train_the_one_process_network(files):
    launched = train(files, "two.yaml", "two", TWO_CPU_PROCESSES, ACCELERATE_USE_CPU="true")
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    assert (
        launched.stdout.count("training NCPL") == 2 and launched.stdout.count("stage 2 epoch 1/1: val MAE") == 2
    )  # 2 processes ran, 1 reports each network's epochs: the model's and its extrapolation calibrator's
    for name, config in (("one", "one.yaml"), ("one-small-batch", "two.yaml")):
        trained(files, name, config)
    two, one, other_steps = (predict(files, name) for name in ("two", "one", "one-small-batch"))
    untrained = predictors.load_predictor(files / "one").targets_.baseline.predict(
        read_runs(files / "train.parquet", files / "val.parquet")
    )
    assert np.abs(one - untrained).max() > 1e-3  # training moved the predictions (the head starts at zero)
    np.testing.assert_allclose(two, one, rtol=0, atol=ATOL)
    assert np.abs(other_steps - one).max() > 10 * ATOL  # one process with batch b takes other steps: the test can tell


def test_fsdp_on_cpu_is_refused_not_run_twice(files):
    """configs/accelerate-fsdp.yaml as launched on a cluster, on 2 CPU processes: refused with the fix."""
    launcher = [
        "--config_file",
        str(ROOT / "configs/accelerate-fsdp.yaml"),
        "--num_processes",
        "2",
        "--mixed_precision",
        "no",
    ]
    launched = train(files, "two.yaml", "fsdp", launcher)
    assert launched.returncode != 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    assert launched.stdout.count("launched 2 processes (WORLD_SIZE) but accelerate joined 1") == 2
    assert "accelerate launch --cpu" not in launched.stdout and "ACCELERATE_USE_CPU" in launched.stdout
    assert not (files / "fsdp/predictor.json").exists()


def test_fsdp2_forced_on_cpu_trains_and_saves_the_one_process_network(files):
    """scripts/fsdp_on_cpu.py: fully_shard over gloo, as on a GPU cluster. The saved model holds the whole weights
    (every process gathers them after training), and predicts what one process with the global batch does."""
    launched = train(files, "two.yaml", "fsdp2", program=FSDP_ON_CPU, ACCELERATE_USE_CPU="true")
    assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
    trained(files, "one", "one.yaml")
    np.testing.assert_allclose(predict(files, "fsdp2"), predict(files, "one"), rtol=0, atol=ATOL)


def test_lora_under_fsdp2_is_refused_before_training(files):
    """peft's adapters on weights fully_shard has sharded fail in stage 2 (Tensor + DTensor); refused up front."""
    launched = train(files, "two-lora.yaml", "fsdp2-lora", program=FSDP_ON_CPU, ACCELERATE_USE_CPU="true")
    assert (
        launched.returncode != 0
        and "stage2.mode: 'lora' does not train under FSDP2" in launched.stdout + launched.stderr
    )
    assert not (files / "fsdp2-lora" / "predictor.json").exists()
    assert "stage 1 epoch" not in launched.stdout + launched.stderr  # refused before any training


def test_fsdp_units_of_the_cluster_config_are_the_decoder_layers():
    """configs/accelerate-fsdp.yaml's TRANSFORMER_BASED_WRAP finds the layers through NCPLNetwork (no process group
    needed)."""
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy

    from ncpl.regressor.backbones import load_backbone
    from ncpl.regressor.network import NCPLNetwork

    fsdp = yaml.safe_load((ROOT / "configs/accelerate-fsdp.yaml").read_text())["fsdp_config"]
    backbone = load_backbone("tiny-qwen3")
    network = NCPLNetwork(backbone.model, backbone.hidden_size, backbone.is_decoder)
    plugin = FullyShardedDataParallelPlugin(
        fsdp_version=fsdp["fsdp_version"], auto_wrap_policy=fsdp["fsdp_auto_wrap_policy"].lower()
    )
    plugin.set_auto_wrap_policy(network)
    wraps = fsdp2_prepare_auto_wrap_policy(plugin, network)
    assert [name for name, module in network.named_modules() if wraps(module)] == [
        "backbone.layers.0",
        "backbone.layers.1",
    ]


def test_no_scalar_parameters_for_fully_shard_and_scalar_gains_still_load():
    """fully_shard refuses 0-d parameters ("fully_shard doesn't support scalar parameters"): the encoders' gain is
    1-d, and a state dict saved with the old scalar gain loads into it."""
    from ncpl.regressor.backbones import load_backbone
    from ncpl.regressor.network import NCPLNetwork

    backbone = load_backbone("tiny-qwen3")
    for encoder in ("fourier", "mlp"):
        network = NCPLNetwork(backbone.model, backbone.hidden_size, backbone.is_decoder, encoder)
        assert all(p.dim() > 0 for p in network.parameters())
        state = {key: value.clone() for key, value in network.state_dict().items()}
        state["encoder.gain"] = torch.tensor(2.5)  # as saved before
        network.load_state_dict(state, strict=True)
        assert network.encoder.gain.tolist() == [2.5]
