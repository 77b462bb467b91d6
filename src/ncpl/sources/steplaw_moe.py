"""StepLaw MoE runs (`moe_lr_bs_loss.csv`): the dense fields plus experts, top-k and active parameters."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ncpl.flat import present
from ncpl.schema import RunRecord
from ncpl.sources import Row, column
from ncpl.sources._files import csv_rows
from ncpl.sources.steplaw import base_config, record

_EXTRA = ("moeh", "sed", "numld", "moe_layer_enum_type", "mfa_version", "moe_name", "Nattn", "M", "kvcache")


def moe_record(row: dict[str, Any]) -> RunRecord:
    config = base_config(row, "steplaw-moe")
    config["model"].update(
        arch="moe", n_experts=column(row, "nume"), top_k=column(row, "topk"), n_params_active=column(row, "Na")
    )
    config["extra"].update(present({key: row.get(key) for key in _EXTRA}))
    return record(row, config)


def rows(path: Path) -> Iterator[Row]:
    for line, raw in csv_rows(path):
        yield Row(f"{path}:{line}", 1, lambda raw=raw: moe_record(raw))
