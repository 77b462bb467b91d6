"""StepLaw dense runs (`dense_lr_bs_loss.csv`): one row per run, final smoothed training loss.

The file leaves out what the paper fixes: AdamW, a cosine-style decay to the minimum lr written in
`exp_name` (``mlr1.00e-05``), sequences of 2048 tokens; the warmup is in neither (left unset). Runs whose loss blew up are kept and
flagged as diverged: converged runs end below 3.3, the file has none between 3.5 and 4.1, and the
blown-up ones sit between 4.2 and 11.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ncpl.flat import present
from ncpl.schema import RunRecord
from ncpl.sources import Row, column
from ncpl.sources._files import csv_rows
from ncpl.validation import validate

SEQ_LEN = 2048
DIVERGED_LOSS = 4.0  # the gap in the file's loss distribution (see above)
_MIN_LR = re.compile(r"_mlr([0-9.eE+-]+?)(?:_|$)")


def min_lr(exp_name: str) -> float | None:
    match = _MIN_LR.search(exp_name)
    return float(match.group(1)) if match else None


def base_config(row: dict[str, Any], source: str) -> dict[str, Any]:
    """The fields StepLaw's dense and MoE files share."""
    sequences = int(column(row, "bs"))
    return {
        "source": source,
        "model": {
            "n_params": column(row, "N"),
            "d_model": column(row, "h"),
            "n_layers": column(row, "numl"),
            "n_heads": column(row, "numh"),
            "d_ff": column(row, "ffnh"),
            "seq_len": int(row.get("seq_len") or SEQ_LEN),
        },
        "data": {"tokens": column(row, "D")},
        "optimizer": {"name": "adamw", "lr": column(row, "lr")},
        "schedule": {
            "name": "cosine",
            "total_steps": column(row, "ti"),
            "min_lr": min_lr(str(column(row, "exp_name"))),
        },
        "batch": {"sequences": sequences, "tokens": sequences * int(row.get("seq_len") or SEQ_LEN)},
        "extra": {},
    }


def record(row: dict[str, Any], config: dict[str, Any]) -> RunRecord:
    loss = float(column(row, "smooth loss"))
    return validate(
        RunRecord,
        {
            "run_id": str(column(row, "exp_name")),
            "config": config,
            "final_loss": loss,
            "loss_kind": "train_smoothed",
            "diverged": loss >= DIVERGED_LOSS,
            "other_losses": present({"train_unsmoothed": row.get("loss")}),
        },
    )


def rows(path: Path) -> Iterator[Row]:
    for line, raw in csv_rows(path):
        yield Row(f"{path}:{line}", 1, lambda raw=raw: record(raw, base_config(raw, "steplaw")))
