"""Reading a sweep of candidate configs: Parquet, CSV, JSONL or a YAML list, in chunks, each row checked as a config.

Rows are numbered as `ncpl data import` numbers them (`where`), so an error names the file, the line and the field.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import yaml

from ncpl.errors import ConfigError, DataError, NcplError
from ncpl.flat import CONFIG_PREFIXES, RECORD_COLUMNS, SCHEDULE_LR, is_missing
from ncpl.predictors import NEEDED_COLUMNS
from ncpl.schema import RunConfig, config_from_flat, config_to_flat, known_fields
from ncpl.store import unreadable_parquet
from ncpl.validation import did_you_mean, validate

FORMATS = (".parquet", ".csv", ".jsonl", ".yaml", ".yml")


def read_chunks(path: Path, batch_size: int) -> Iterator[pd.DataFrame]:
    """Frames of at most `batch_size` rows, their index the row number in the file (from 0; `where` names it).

    Cells are not re-typed where the file says what they are: a CSV's own columns (no dot: ids, notes), run_id and
    schedule_lr (a JSON list, parsed by `check_rows`) are read as text (`007` stays `007`); a JSONL file's values keep
    their JSON types.
    """
    if not path.exists():
        raise DataError(f"{path}: sweep file not found")
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise DataError(f"{path}: unsupported sweep format {suffix!r}; use {', '.join(FORMATS)}")
    start = 0
    try:  # a damaged file fails when opened or at the damaged chunk: either way the error names the file
        if suffix in (".yaml", ".yml"):
            chunks = _yaml_chunks(path, batch_size)
        elif suffix == ".parquet":
            # pre_buffer (pyarrow's default) reads every row group's bytes ahead: the whole sweep in memory
            chunks = (
                batch.to_pandas()
                for batch in pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=batch_size)
            )
        elif suffix == ".csv":
            header = pd.read_csv(path, nrows=0).columns
            text = [c for c in header if c in ("run_id", SCHEDULE_LR) or ("." not in c and c not in RECORD_COLUMNS)]
            chunks = pd.read_csv(path, chunksize=batch_size, dtype=dict.fromkeys(text, str))
        else:
            chunks = pd.read_json(path, lines=True, chunksize=batch_size, dtype=False)
        chunks = iter(chunks)
        while True:
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            chunk.index = pd.RangeIndex(start, start + len(chunk))
            start += len(chunk)
            yield chunk
    except NcplError:
        raise
    except Exception as error:  # pyarrow, pandas and the json / csv parsers raise many types
        if suffix == ".parquet":
            raise unreadable_parquet(path, error) from None
        place, reason = where(path, start), f"{type(error).__name__}: {error}"
        if suffix == ".jsonl":  # pandas parses a chunk's lines together: name the first bad one
            place, reason = next(_json_errors(path, start), (place, reason))
        raise DataError(
            f"{place}: cannot read the sweep from here on as {suffix[1:].upper()} ({reason}); fix or re-export the file"
        ) from None


def sweep_rows(path: Path) -> int | None:
    """Rows of a Parquet sweep from its footer (for a progress bar); None for other formats."""
    if path.suffix.lower() != ".parquet" or not path.exists():
        return None
    try:
        return pq.ParquetFile(path).metadata.num_rows
    except Exception as error:  # pyarrow raises several types for a damaged file
        raise unreadable_parquet(path, error) from None


def _yaml_chunks(path: Path, batch_size: int) -> Iterator[pd.DataFrame]:
    data = yaml.safe_load(path.read_text())
    items = data.get("configs") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise DataError(f"{path}: expected a list of configs (or a mapping with a 'configs' list)")
    rows = []
    for number, item in enumerate(items):
        try:
            rows.append(config_to_flat(validate(RunConfig, item)))
        except ConfigError as error:
            raise DataError(f"{where(path, number)}: {error}") from None
    for start in range(0, len(rows), batch_size):
        yield pd.DataFrame(rows[start : start + batch_size])


def where(path: Path, row: int) -> str:
    """The place of row `row` (0-based) of a sweep, numbered as `ncpl data import` numbers rows: `FILE:LINE`, 1-based,
    where a CSV's line 1 is its header and blank lines count (a Parquet file's rows are numbered from 1 as if it were
    JSONL), and `FILE: config K` (1-based) for the list of a YAML file."""
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return f"{path}: config {row + 1}"
    if suffix == ".parquet":
        return f"{path}:{row + 1}"
    last = 1 if suffix == ".csv" else 0
    for number, (line, _) in enumerate(_data_lines(path)):
        if number == row:
            return f"{path}:{line}"
        last = line
    return f"{path}:{last + 1}"  # past the last row: the line after it


def _data_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of the rows of a CSV or JSONL file, one a line (a line break in a quoted CSV cell is not
    followed): the lines after a CSV's header that are not blank, as pandas skips blank lines."""
    with path.open(errors="replace") as file:
        lines = ((number, text) for number, text in enumerate(file, start=1) if text.strip())
        if path.suffix.lower() == ".csv":
            next(lines, None)
        yield from lines


def _json_errors(path: Path, start: int) -> Iterator[tuple[str, str]]:
    """(place, reason) of each line of a JSONL file from row `start` on that is not a JSON object."""
    for line, text in itertools.islice(_data_lines(path), start, None):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            yield f"{path}:{line}", f"not valid JSON: {error.msg} at column {error.colno}"
            continue
        if not isinstance(value, dict):
            yield f"{path}:{line}", f"expected a JSON object per line, got {text.strip()[:40]!r}"


def check_columns(columns: list[str], path: Path) -> None:
    """The columns every config needs must be there; a dotted column must be a config field (`known_fields`, any
    ``extra.*``) or a record's (``meta.*``, ``other_loss.*``). Columns without a dot (ids, notes) are carried
    through."""
    missing = [column for column in NEEDED_COLUMNS if column not in columns]
    if missing:
        raise DataError(f"{path}: no column {', '.join(missing)}; every config needs {', '.join(NEEDED_COLUMNS)}")
    known = known_fields()
    for column in map(str, columns):
        if column in known or column in RECORD_COLUMNS or column.startswith(("extra.", "meta.", "other_loss.")):
            continue
        if "." in column:
            raise DataError(
                f"{path}: column {column!r}: unknown config field{did_you_mean(column, known)}; "
                "put a field of your own in an 'extra.' column (extra.NAME)"
            )


def check_rows(chunk: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Every row must be a valid config; the error names the row (`where`) and the field. Returns the flat configs
    as validated: counts with units (130M, 2.6B) as numbers, optimizer names normalised."""
    nested = [
        c for c in chunk.columns if chunk[c].dtype == object and chunk[c].map(lambda v: isinstance(v, dict)).any()
    ]
    if nested:
        raise DataError(
            f"{path}: {', '.join(nested)}: a nested object; a sweep's rows are flat (model.n_params, data.tokens, "
            "...: the columns of `ncpl data import`), or give the nested configs as a YAML list"
        )
    check_columns(list(chunk.columns), path)
    columns = [c for c in chunk.columns if c in ("source", SCHEDULE_LR) or c.startswith(CONFIG_PREFIXES)]
    flat = []
    for number, row in zip(chunk.index, chunk[columns].to_dict("records")):
        blank = [c for c in NEEDED_COLUMNS if is_missing(row[c])]
        if blank:
            raise DataError(
                f"{where(path, number)}: {', '.join(blank)}: empty; every config needs {', '.join(NEEDED_COLUMNS)}"
            )
        if isinstance(row.get(SCHEDULE_LR), str):  # a CSV cell
            try:
                row[SCHEDULE_LR] = json.loads(row[SCHEDULE_LR])
            except json.JSONDecodeError as error:
                raise DataError(
                    f"{where(path, number)}: {SCHEDULE_LR}: not a JSON list ({error.msg}); write the lr of every "
                    "step as [0.0003, 0.0003, ...]"
                ) from None
        try:
            flat.append(config_to_flat(config_from_flat(row)))
        except ConfigError as error:
            raise DataError(f"{where(path, number)}: {error}") from None
    return pd.DataFrame(flat, index=chunk.index)
