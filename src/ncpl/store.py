"""Runs on disk: one Parquet file, one flat column per field named by its dotted path.

Written through a Hugging Face `datasets.Dataset`, so pandas, DuckDB and tree models read the file as
is. Writes are atomic (a temporary file renamed into place).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from ncpl.atomic import atomic_path
from ncpl.errors import DataError
from ncpl.schema import RunRecord

FIRST_COLUMNS = ["run_id", "source", "loss_kind", "final_loss", "diverged", "curve_tokens", "curve_loss"]


def to_frame(records: Iterable[RunRecord]) -> pd.DataFrame:
    frame = pd.DataFrame([record.to_flat() for record in records])
    if frame.empty:
        return pd.DataFrame(columns=FIRST_COLUMNS)
    frame = frame.dropna(axis=1, how="all").reindex(columns=_column_order(frame.columns))
    for name in frame.columns[frame.dtypes.eq(object)]:
        kinds = {type(v) for v in frame[name].dropna()}
        if len(kinds - {list}) > 1 and str in kinds:  # a field that is a number in one source, text in another
            frame[name] = frame[name].map(lambda v: None if v is None else str(v))
    return frame


def _column_order(columns: Iterable[str]) -> list[str]:
    rest = sorted(c for c in columns if c not in FIRST_COLUMNS)
    return [c for c in FIRST_COLUMNS if c in columns] + rest


def write_runs(records: Iterable[RunRecord] | pd.DataFrame, path: str | Path) -> Path:
    from datasets import Dataset, disable_progress_bars  # heavy import, only where files are written

    disable_progress_bars()

    frame = records if isinstance(records, pd.DataFrame) else to_frame(records)
    path = Path(path)
    with atomic_path(path) as tmp:
        Dataset.from_pandas(frame, preserve_index=False).to_parquet(str(tmp))
    return path


RUN_COLUMNS = {"run_id", "source", "final_loss", "model.n_params", "data.tokens"}


def read_runs(*paths: str | Path) -> pd.DataFrame:
    """One frame of the runs in the given Parquet files (columns are the union)."""
    frames = []
    for path in map(Path, paths):
        if not path.exists():
            raise DataError(f"{path}: runs file not found (make one with `ncpl data import`)")
        try:
            frame = pd.read_parquet(path)
        except Exception as error:  # pyarrow raises several types for a damaged file
            raise unreadable_parquet(path, error) from None
        missing = RUN_COLUMNS - set(frame.columns)
        if missing:
            raise DataError(f"{path}: not a runs file, columns {sorted(missing)} are missing")
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return frame.reindex(columns=_column_order(frame.columns))


def unreadable_parquet(path: Path, error: Exception) -> DataError:
    """The error for a file pyarrow cannot read (truncated, damaged, or not Parquet at all)."""
    return DataError(
        f"{path}: not a readable Parquet file ({type(error).__name__}: {error}); "
        "it is truncated, damaged or in another format: re-export it (e.g. `ncpl data import`)"
    )


def to_records(frame: pd.DataFrame) -> list[RunRecord]:
    return [RunRecord.from_flat(row) for row in frame.to_dict("records")]
