"""Marin optimizer sweep (`marin_sweep_runs.jsonl` + `marin_model_shapes.json` beside it).

One JSON line per run with the optimizer's full configuration. Common keys are mapped onto the
schema; optimizer-specific ones (muon_to_adam_lr, shampoo_beta, ...) are kept as optimizer extras.
Losses are Paloma C4-en eval losses. Runs with no loss are skipped and counted; "NaN" losses and
losses >= 6 (the sweep code's own bad-run rule) are kept as diverged. Schedule: the run's lr_schedule
(Levanter's default cosine where unnamed), warmup steps and min lr ratio; Levanter's ``decay`` (the
fraction of steps spent decaying) stays an optimizer extra, so `ncpl.schedules` decays over all steps
after warmup for these runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ncpl.errors import DataError
from ncpl.flat import present
from ncpl.schema import RunRecord
from ncpl.sources import Row, Skip, column
from ncpl.sources._files import jsonl_rows, raise_if_error, read_json
from ncpl.validation import validate

DIVERGED_LOSS = 6.0
SHAPES_FILE = "marin_model_shapes.json"
_COMMON = {  # marin key -> (section, field)
    "learning_rate": ("optimizer", "lr"),
    "beta1": ("optimizer", "beta1"),
    "beta2": ("optimizer", "beta2"),
    "epsilon": ("optimizer", "eps"),
    "weight_decay": ("optimizer", "weight_decay"),
    "max_grad_norm": ("optimizer", "grad_clip"),
    "warmup": ("schedule", "warmup_steps"),
    "min_lr_ratio": ("schedule", "min_lr_ratio"),
    "lr_schedule": ("schedule", "name"),
    "train_batch_size": ("batch", "sequences"),
}


def load_shapes(path: Path) -> dict[str, dict[str, Any]]:
    shapes_path = path.parent / SHAPES_FILE
    if not shapes_path.exists():
        raise DataError(f"{shapes_path}: Marin model shapes not found; it must lie beside {path.name}")
    return read_json(shapes_path)["models"]


def parse_loss(value: Any) -> tuple[float | None, bool]:
    """(final loss, diverged) from the verbatim W&B value."""
    if value is None:
        raise Skip("loss missing (run not found in W&B)")
    if isinstance(value, str):
        if value.strip().lower() != "nan":
            raise DataError(f"loss: got {value!r}, expected a number, null or 'NaN'")
        return None, True
    loss = float(value)
    if not math.isfinite(loss):
        return None, True
    return loss, loss >= DIVERGED_LOSS


def record(row: dict[str, Any], shapes: dict[str, dict[str, Any]]) -> RunRecord:
    if row.get("superseded_version"):
        raise Skip("superseded version of a result file (a newer one holds the canonical runs)")
    loss, diverged = parse_loss(row.get("loss"))
    size = column(row, "model_size")
    if size not in shapes:
        raise DataError(f"model_size: got {size!r}, expected one of {sorted(shapes)}")
    shape = shapes[size]
    hyper = dict(column(row, "hyperparameters"))
    config: dict[str, Any] = {
        "source": "marin",
        "model": {
            "n_params": column(row, "non_embedding_params"),
            "d_model": shape["hidden_dim"],
            "n_layers": shape["num_layers"],
            "n_heads": shape["num_heads"],
            "d_ff": shape["intermediate_dim"],
            "seq_len": column(row, "seq_len"),
            "vocab_size": 128256,  # meta-llama/Meta-Llama-3.1-8B tokenizer (marin_model_shapes.json)
        },
        "data": {"tokens": column(row, "derived_tokens_trained"), "dataset": "dclm_mixture"},
        "optimizer": {"name": column(row, "optimizer")},
        # Levanter's default schedule is cosine; muon and scion runs name theirs (lr_schedule).
        "schedule": {"name": "cosine", "total_steps": column(row, "derived_num_train_steps")},
        "batch": {},
    }
    meta = present(
        {key: row.get(key) for key in ("model_size", "chinchilla_multiple", "run_type", "ablated_param", "wandb_id")}
    )
    for key, value in hyper.items():
        section, name = _COMMON.get(key, ("optimizer", key))
        config[section][name] = value
    if "sequences" in config["batch"]:
        config["batch"]["tokens"] = config["batch"]["sequences"] * config["model"]["seq_len"]
    run_id = f"marin/{row['optimizer']}/{size}/x{row.get('chinchilla_multiple')}/{column(row, 'result_key')}"
    return validate(
        RunRecord,
        {
            "run_id": run_id,
            "config": config,
            "final_loss": loss,
            "loss_kind": "paloma_c4_en",
            "diverged": diverged,
            "meta": meta,
        },
    )


def rows(path: Path) -> Iterator[Row]:
    shapes = load_shapes(path)
    for line, raw in jsonl_rows(path):
        yield Row(f"{path}:{line}", 1, lambda raw=raw: record(raise_if_error(raw), shapes))
