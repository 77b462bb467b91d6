"""The files of an NCPL model directory beside `predictor.json`: each member's weights (`model.safetensors`,
`model.member-K.safetensors`), the backbone's config and tokenizer (`backbone/`), and the metrics of the fit with
their figures. Reading them back never unpickles, never downloads, and names the file that is missing or damaged."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from ncpl.atomic import atomic_path
from ncpl.errors import ModelDirError

WEIGHTS = "model.safetensors"
BACKBONE_DIR = "backbone"


def member_file(stem: str, k: int) -> str:
    """`model.safetensors` for the first member, `model.member-1.safetensors` for the second, ..."""
    name, suffix = stem.rsplit(".", 1)
    return stem if k == 0 else f"{name}.member-{k}.{suffix}"


def write_networks(directory: Path, networks: list[torch.nn.Module], tokenizer: Any) -> None:
    from safetensors.torch import save_file

    backbone_dir = directory / BACKBONE_DIR
    backbone_dir.mkdir(parents=True, exist_ok=True)
    networks[0].backbone.config.save_pretrained(backbone_dir)
    tokenizer.save_pretrained(backbone_dir)
    for k, network in enumerate(networks):
        state = {key: value.detach().contiguous().cpu() for key, value in network.state_dict().items()}
        with atomic_path(directory / member_file(WEIGHTS, k)) as tmp:
            save_file(state, str(tmp))


def write_training_logs(directory: Path, train_logs: list[list[dict[str, Any]]]) -> None:
    """Each member's metrics per epoch (`train_log.jsonl`, `train_log.member-K.jsonl`) and their figure."""
    import json

    from ncpl.plots import training_curves

    for k, log in enumerate(train_logs):
        path = directory / member_file("train_log.jsonl", k)
        with atomic_path(path) as tmp:
            tmp.write_text("".join(json.dumps(line) + "\n" for line in log))
        figure = member_file("training_curves.png", k)
        try:
            training_curves(path, directory / figure)
        except Exception as error:  # a figure must never cost the model  # noqa: BLE001
            warnings.warn(f"{figure} not drawn: {type(error).__name__}: {error}", stacklevel=3)


def read_backbone(directory: Path, members: int) -> tuple[Any, Any, list[Path]]:
    """(tokenizer, backbone config, weight files) of a model directory, each checked to be there."""
    from transformers import AutoConfig, AutoTokenizer

    weights = [directory / member_file(WEIGHTS, k) for k in range(members)]
    for path in weights:
        if not path.exists():
            raise ModelDirError(
                f"{path}: weights file missing; the model directory is incomplete (re-run `ncpl train`)"
            )
    backbone_dir = directory / BACKBONE_DIR
    if not (backbone_dir / "config.json").exists():
        raise ModelDirError(
            f"{backbone_dir / 'config.json'}: backbone config missing; the model directory is incomplete "
            "(re-run `ncpl train`)"
        )
    try:  # local files only: a damaged folder must not turn into a download attempt
        tokenizer = AutoTokenizer.from_pretrained(backbone_dir, local_files_only=True)
        backbone_config = AutoConfig.from_pretrained(backbone_dir, local_files_only=True)
    except (OSError, ValueError) as error:
        raise ModelDirError(
            f"{backbone_dir}: cannot read the backbone's config or tokenizer ({type(error).__name__}: {error}); "
            "the model directory is incomplete or damaged, re-run `ncpl train`"
        ) from None
    return tokenizer, backbone_config, weights


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, RuntimeError, OSError) as error:
        raise ModelDirError(
            f"{path}: cannot read the weights ({error}); the file is corrupted, re-run `ncpl train`"
        ) from None
