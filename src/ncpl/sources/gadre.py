"""Gadre et al. over-training suite (`exp_data/models/*.json`): 104 fully specified open_lm models.

A path may be the models folder or one file. The final loss is the C4 validation loss (the one
the paper fits); the other seven validation losses are kept as the record's ``other_losses``. Batch size,
beta2 and grad clip come from the training command line, which is right where the
`hyperparameters` block is not (some 7B entries list global_bs 1).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ncpl.errors import DataError
from ncpl.schema import RunRecord
from ncpl.sources import Row, column
from ncpl.sources.gadre_grid import SEQ_LEN, VOCAB, shape_of
from ncpl.validation import validate

_VAL_SET = re.compile(r"(?:val_tok_mult|eval_data)/(?!val_tok_mult/)([^/]+)/")


def command_line(args: list[str]) -> dict[str, str]:
    """`--flag value` pairs of an open_lm command line (flags without a value map to "")."""
    flags: dict[str, str] = {}
    for i, arg in enumerate(args):
        if arg.startswith("--"):
            nxt = args[i + 1] if i + 1 < len(args) else ""
            flags[arg[2:]] = "" if nxt.startswith("--") else nxt
    return flags


def validation_losses(results: list[dict[str, Any]]) -> dict[str, float]:
    losses = {}
    for result in results:
        match = _VAL_SET.search(str(result["val_data"][0]))
        if not match:
            raise DataError(f"results.val_data: cannot tell the validation set of {result['val_data']!r}")
        losses[match.group(1)] = float(result["loss"])
    return losses


def record(data: dict[str, Any]) -> RunRecord:
    hyper = column(data, "hyperparameters")
    args = command_line(column(data, "open_lm_args"))
    losses = validation_losses(column(data, "results"))
    if "c4_val" not in losses:
        raise DataError(f"results: no c4_val loss among {sorted(losses)}")
    sequences = int(args["global-batch-size"])
    shape = shape_of(str(column(hyper, "model")))
    config = {
        "source": "gadre",
        "model": {
            "n_params": column(hyper, "params_no_embed"),
            "n_params_total": column(hyper, "params"),
            **shape,
            "seq_len": SEQ_LEN,
            "vocab_size": VOCAB,
        },
        "data": {"tokens": column(hyper, "tokens"), "dataset": column(data, "dataset_name")},
        "optimizer": {
            "name": "adamw",
            "lr": column(hyper, "lr"),
            "weight_decay": column(hyper, "wd"),
            "beta2": float(args["beta2"]),
            "grad_clip": float(args["grad-clip-norm"]),
            "z_loss": float(hyper.get("z_loss") or 0.0),
            "qk_norm": bool(hyper.get("qk_norm")),
        },
        "schedule": {
            "name": "cosine",
            "warmup_steps": column(hyper, "warmup"),
            "min_lr": column(hyper, "cd"),
            "total_steps": round(float(hyper["tokens"]) / (sequences * SEQ_LEN)),
        },
        "batch": {"sequences": sequences, "tokens": sequences * SEQ_LEN},
    }
    return validate(
        RunRecord,
        {
            "run_id": f"gadre/{column(data, 'name')}",
            "config": config,
            "final_loss": losses.pop("c4_val"),
            "loss_kind": "c4_val",
            "other_losses": losses,
            "meta": {"chinchilla_multiplier": float(column(hyper, "chinchilla_multiplier"))},
        },
    )


def rows(path: Path) -> Iterator[Row]:
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    for file in files:
        yield Row(str(file), 1, lambda file=file: record(json.loads(file.read_text())))
