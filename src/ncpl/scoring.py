"""Scoring a sweep of candidate configs in bounded memory, safe to kill and resume.

The input is streamed in chunks; each chunk is validated, predicted and written as its own part
file (atomically) in ``OUT.parts/``; the parts are merged into OUT at the end, written to a
temporary file and renamed. A killed job leaves only finished parts and no OUT: ``resume=True``
skips the parts already written (of the same sweep file and batch size: another is refused). Under
``accelerate launch`` process r of w scores the chunks
i = r (mod w) and the main process merges.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from ncpl.atomic import atomic_path
from ncpl.errors import ConfigError, DataError, NcplError
from ncpl.flat import CONFIG_PREFIXES, RECORD_COLUMNS
from ncpl.launch import require_joined
from ncpl.predictors import Predictor
from ncpl.schema import RunConfig, config_from_flat, config_to_flat, known_fields
from ncpl.store import unreadable_parquet
from ncpl.validation import did_you_mean, validate

FORMATS = (".parquet", ".csv", ".jsonl", ".yaml", ".yml")


def read_chunks(path: Path, batch_size: int) -> Iterator[pd.DataFrame]:
    """Frames of at most `batch_size` rows, their index the row number in the file (from 0; `where` names it)."""
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
            chunks = pd.read_csv(path, chunksize=batch_size)
        else:
            chunks = pd.read_json(path, lines=True, chunksize=batch_size)
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
        raise DataError(
            f"{where(path, start)}: cannot read the sweep from here on as {suffix[1:].upper()} "
            f"({type(error).__name__}: {error}); fix or re-export the file"
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
    where a CSV's line 1 is its header (a Parquet file's rows are numbered from 1 as if it were JSONL), and
    `FILE: config K` (1-based) for the list of a YAML file."""
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return f"{path}: config {row + 1}"
    return f"{path}:{row + (2 if suffix == '.csv' else 1)}"


def check_columns(columns: list[str], path: Path) -> None:
    """A dotted column must be a config field (`known_fields`, any ``extra.*``) or a record's (``meta.*``,
    ``other_loss.*``). Columns without a dot (ids, notes) are carried through."""
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
    check_columns(list(chunk.columns), path)
    columns = [c for c in chunk.columns if c == "source" or c.startswith(CONFIG_PREFIXES)]
    flat = []
    for number, row in zip(chunk.index, chunk[columns].to_dict("records")):
        try:
            flat.append(config_to_flat(config_from_flat(row)))
        except ConfigError as error:
            raise DataError(f"{where(path, number)}: {error}") from None
    return pd.DataFrame(flat, index=chunk.index)


def process_state():
    """accelerate's view of the processes scoring together, joined over gloo on CPUs as `Accelerator` joins them.

    `PartialState()` alone ignores ACCELERATE_USE_CPU: launched on CPUs, every process would think itself the only
    one, score every chunk and race the others to merge and delete the parts. A launch whose processes did not join
    is refused.
    """
    from accelerate import PartialState

    state = PartialState(cpu=os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes"))
    require_joined(state.num_processes, "each would score the whole sweep")
    return state


def score_file(
    model: Predictor,
    path: str | Path,
    output: str | Path,
    *,
    batch_size: int = 4096,
    resume: bool = False,
    rank: int = 0,
    world: int = 1,
    on_chunk=None,
) -> Path:
    """Score `path` into the part files of `output` (merge them with `merge_parts`); returns their folder.

    Rank `rank` of `world` processes takes every world-th chunk. Without `resume` the finished parts of
    an earlier run are cleared first; with several processes, clear once with `parts_folder` before any
    of them starts and pass resume=True, or a late rank would delete the parts of an early one.
    `on_chunk(rows)` is called after each chunk (progress).
    """
    path = Path(path)
    parts = parts_folder(Path(output), resume, path, batch_size)
    for index, chunk in enumerate(read_chunks(path, batch_size)):
        part = parts / f"part-{index:06d}.parquet"
        if index % world != rank or part.exists():
            if on_chunk:
                on_chunk(len(chunk))
            continue
        details = model.predict_details(check_rows(chunk, path)).set_index(chunk.index)
        scored = pd.concat([chunk, details], axis=1)
        with atomic_path(part) as tmp:
            scored.to_parquet(tmp, index=False)
        if on_chunk:
            on_chunk(len(chunk))
    return parts


def parts_folder(output: Path, resume: bool, sweep: Path, batch_size: int) -> Path:
    """The folder of finished part files beside `output`, emptied unless resuming. It names the job its parts are of
    (`job.json`: the sweep file and the batch size): a part is a chunk's index, so resuming with another sweep file or
    batch size would merge the wrong rows, and is refused. The file itself may change (a bad row fixed in place, then
    --resume: the chunks before it are kept)."""
    if not sweep.exists():
        raise DataError(f"{sweep}: sweep file not found")
    parts = output.with_name(output.name + ".parts")
    if not resume and parts.exists():
        shutil.rmtree(parts)
    parts.mkdir(parents=True, exist_ok=True)
    job = {"sweep": str(sweep.resolve()), "batch_size": batch_size}
    manifest = parts / "job.json"
    if not manifest.exists():
        with atomic_path(manifest) as tmp:
            tmp.write_text(json.dumps(job))
    elif (before := json.loads(manifest.read_text())) != job:
        changed = ", ".join(
            f"{key} {before.get(key)!r} -> {value!r}" for key, value in job.items() if before.get(key) != value
        )
        raise DataError(
            f"--resume: {parts} holds the parts of another job ({changed}); resume with the sweep file and "
            "--batch-size it was started with, or score again without --resume"
        )
    return parts


def merge_parts(parts: Path, output: Path) -> int:
    """Concatenate the part files into `output` atomically, streaming one part at a time; returns the row count."""
    files = sorted(parts.glob("part-*.parquet"))
    if not files:
        raise DataError(f"{parts}: nothing was scored (empty sweep?)")
    schema = pa.unify_schemas([pq.read_schema(f) for f in files], promote_options="permissive")
    rows = 0
    with atomic_path(output) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for file in files:
            table = pq.read_table(file)
            table = table.cast(schema) if table.schema != schema else table
            writer.write_table(table)
            rows += table.num_rows
    shutil.rmtree(parts)
    return rows
