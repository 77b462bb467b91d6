"""Importers: real log files of published pretraining runs -> `RunRecord`s.

Each format is one small module exposing ``rows(path)``: it yields `Row`s, each the raw rows of the
file that make one record (one line, or a group of checkpoints forming a curve) and a function that
builds the record. `import_runs` drives them: a row that is malformed stops the import with the
file, row and field named, or with ``skip_bad`` is skipped and counted; a row that is well formed but
holds no usable result (a missing loss, a superseded duplicate) raises `Skip` and is always counted
under its reason. Nothing is dropped silently.
"""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ncpl.errors import DataError
from ncpl.flat import is_missing
from ncpl.schema import RunRecord

SOURCES = {
    "steplaw": "steplaw",
    "steplaw-moe": "steplaw_moe",
    "marin": "marin",
    "gadre": "gadre",
    "gadre-grid": "gadre_grid",
    "gemstones": "gemstones",
    "misfitting": "misfitting",
    "epoch": "epoch",
    "multipower": "multipower",
    "table": "table",
}


class Skip(Exception):
    """A well-formed row without a usable result; the message is the reason shown in the summary."""


class ImportFailed(DataError):
    """A malformed row: the message names the file, the row and the field."""


@dataclass
class Row:
    where: str  # "file.csv:12" or "file.jsonl:3-52 (run X)"
    n_raw: int  # raw file rows this record is made from
    build: Callable[[], RunRecord]


@dataclass
class ImportResult:
    source: str
    records: list[RunRecord] = field(default_factory=list)
    rows_read: int = 0
    rows_kept: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> raw rows

    def summary(self) -> str:
        parts = [f"{self.source}: {self.rows_read} rows read, {self.rows_kept} kept as {len(self.records)} records"]
        parts += [f"{n} skipped: {reason}" for reason, n in self.skipped.most_common()]
        return "; ".join(parts)


def column(row: dict[str, Any], name: str) -> Any:
    """A raw column that must be present and non-empty."""
    value = row.get(name)
    if is_missing(value) or value == "":
        raise DataError(f"column {name!r} is missing or empty")
    return value


def import_runs(source: str, paths: list[str | Path], skip_bad: bool = False) -> ImportResult:
    if source not in SOURCES:
        raise ImportFailed(f"unknown source {source!r}; known: {', '.join(SOURCES)}")
    reader: Callable[[Path], Iterator[Row]] = importlib.import_module(f"ncpl.sources.{SOURCES[source]}").rows
    result = ImportResult(source)
    for path in map(Path, paths):
        if not path.exists():
            raise ImportFailed(f"{path}: file not found (source {source!r})")
        for row in _parsed(reader, path, source):
            result.rows_read += row.n_raw
            try:
                record = row.build()
            except Skip as reason:
                result.skipped[str(reason)] += row.n_raw
                continue
            except (ValueError, KeyError, TypeError) as error:  # DataError, a ConfigError of a field, pydantic's
                if not skip_bad:
                    raise ImportFailed(f"{row.where}: {error} (skip_bad=True skips and counts such rows)") from None
                result.skipped[f"malformed: {_first_line(error)}"] += row.n_raw
                continue
            result.records.append(record)
            result.rows_kept += row.n_raw
    duplicates = [k for k, n in Counter(r.run_id for r in result.records).items() if n > 1]
    if duplicates:
        raise ImportFailed(f"{source}: run_id not unique, e.g. {duplicates[:3]}")
    return result


def _parsed(reader: Callable[[Path], Iterator[Row]], path: Path, source: str) -> Iterator[Row]:
    """The rows `reader` yields from `path`; a file it cannot parse (pandas' parser and empty-file errors, invalid
    JSON, a bad encoding) stops the import naming the file. Errors of a row's `build` are not seen here."""
    try:
        yield from reader(path)
    except DataError:  # the reader's own: it names the file
        raise
    except ValueError as error:
        raise ImportFailed(
            f"{path}: cannot parse the file ({str(error).strip()}); give a complete, well-formed {source!r} file"
        ) from None


def _first_line(error: Exception) -> str:
    text = str(error).split(";")[0]
    return text if len(text) < 120 else text[:117] + "..."
