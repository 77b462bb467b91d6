"""Reading raw files row by row, keeping the line number for error messages."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from ncpl.errors import DataError


def csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) pairs; line 1 is the header."""
    frame = pd.read_csv(path)
    for index, row in enumerate(frame.to_dict("records")):
        yield index + 2, row


def read_json(path: Path) -> Any:
    """A JSON file's value; a file that is not valid JSON is a DataError naming it (a side file of an import, say)."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not valid JSON ({error}); fix or re-download the file") from None


def jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | DataError]]:
    """(line number, row) pairs; a line that is not a JSON object comes back as the error."""
    with path.open() as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                yield number, DataError(f"not valid JSON: {error}")
                continue
            yield number, row if isinstance(row, dict) else DataError("expected a JSON object per line")


def raise_if_error(row: Any) -> dict[str, Any]:
    if isinstance(row, Exception):
        raise row
    return row
