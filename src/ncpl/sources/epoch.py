"""Epoch AI's replication of Chinchilla (`svg_extracted_data.csv`): (N, FLOP, loss) points digitised
from the Chinchilla paper's figure; D = FLOP / (6 N). Hoffmann et al. trained with AdamW."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ncpl.schema import RunRecord
from ncpl.sources import Row, column
from ncpl.sources._files import csv_rows
from ncpl.validation import validate


def record(row: dict[str, Any], line: int) -> RunRecord:
    n_params = float(column(row, "Model Size"))
    flops = float(column(row, "Training FLOP"))
    config = {
        "source": "epoch",
        "model": {"n_params": n_params},
        "data": {"tokens": flops / (6 * n_params)},
        "optimizer": {"name": "adamw"},
    }
    return validate(
        RunRecord,
        {
            "run_id": f"epoch/{line}",
            "config": config,
            "final_loss": column(row, "loss"),
            "loss_kind": "train",
            "meta": {"training_flop": flops},
        },
    )


def rows(path: Path) -> Iterator[Row]:
    for line, raw in csv_rows(path):
        yield Row(f"{path}:{line}", 1, lambda raw=raw, line=line: record(raw, line))
