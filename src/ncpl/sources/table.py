"""A table of runs with flat dotted columns (CSV, JSONL or Parquet): the canonical form this
project writes, a user's own runs, or a W&B export renamed to these columns."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from ncpl.errors import DataError
from ncpl.schema import RunRecord
from ncpl.sources import Row


def read_table(path: Path) -> pd.DataFrame:
    readers = {
        ".csv": pd.read_csv,
        ".parquet": pd.read_parquet,
        ".jsonl": lambda p: pd.read_json(p, lines=True),
        ".json": lambda p: pd.read_json(p, lines=True),
    }
    if path.suffix not in readers:
        raise DataError(f"{path}: unsupported table format {path.suffix!r}; use .csv, .jsonl or .parquet")
    return readers[path.suffix](path)


def _as_list(value: Any) -> Any:
    """CSV cells hold curves as JSON text."""
    return json.loads(value) if isinstance(value, str) else value


def record(row: dict[str, Any]) -> RunRecord:
    for key in ("curve_tokens", "curve_loss"):
        if key in row:
            row[key] = _as_list(row[key])
    return RunRecord.from_flat(row)


def rows(path: Path) -> Iterator[Row]:
    frame = read_table(path)
    header = 2 if path.suffix == ".csv" else 1
    for index, row in enumerate(frame.to_dict("records")):
        yield Row(f"{path}:{index + header}", 1, lambda row=row: record(row))
