"""Scoring a sweep of candidate configs in bounded memory, safe to kill and resume.

The input is streamed in chunks (`ncpl.sweeps`); each chunk is validated, predicted and written as its own part
file (atomically) in ``OUT.parts/``; the parts are merged into OUT at the end, written to a
temporary file and renamed. A killed job leaves only finished parts and no OUT: ``resume=True``
skips the parts already written (of the same sweep file, batch size and model: another is refused). Under
``accelerate launch`` process r of w scores the chunks
i = r (mod w) and the main process merges.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ncpl.atomic import atomic_path
from ncpl.errors import DataError
from ncpl.launch import require_joined
from ncpl.predictors import META_FILE, Predictor
from ncpl.sweeps import check_rows, read_chunks


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
    model_id: dict[str, Any] | None = None,
) -> Path:
    """Score `path` into the part files of `output` (merge them with `merge_parts`); returns their folder.

    Rank `rank` of `world` processes takes every world-th chunk. Without `resume` the finished parts of
    an earlier run are cleared first; with several processes, clear once with `parts_folder` before any
    of them starts and pass resume=True, or a late rank would delete the parts of an early one.
    `on_chunk(rows)` is called after each chunk (progress). `model_id` (`model_identity`) names the model in the
    job, so that a resume with another model is refused.
    """
    path = Path(path)
    parts = parts_folder(Path(output), resume, path, batch_size, model_id)
    for index, chunk in enumerate(read_chunks(path, batch_size)):
        if chunk.empty:  # a CSV header, or JSONL lines of {}
            raise DataError(f"{path}: no configs to score")
        part = parts / f"part-{index:06d}.parquet"
        if index % world != rank or part.exists():
            if on_chunk:
                on_chunk(len(chunk))
            continue
        details = model.predict_details(check_rows(chunk, path)).set_index(chunk.index)
        added = [column for column in details.columns if column in chunk.columns]
        if added:
            raise DataError(
                f"{path}: has the columns {', '.join(added)} that scoring adds (a scored file?); drop them, or score "
                "the original sweep"
            )
        scored = pd.concat([chunk, details], axis=1)
        with atomic_path(part) as tmp:
            scored.to_parquet(tmp, index=False)
        if on_chunk:
            on_chunk(len(chunk))
    return parts


def model_identity(directory: str | Path, dtype: str | None) -> dict[str, Any]:
    """What identifies the model a job scores with: its directory, a hash of its saved state (every predictor.json in
    it: an ensemble's members' too; NCPL's holds what its fit calibrated on its networks) and the dtype its networks
    run in (None for a model without networks)."""
    directory = Path(directory)
    digest = hashlib.sha256()
    for meta in sorted(directory.rglob(META_FILE)):
        digest.update(f"{meta.relative_to(directory)}\n".encode() + meta.read_bytes())
    return {"model": str(directory.resolve()), "model_sha256": digest.hexdigest()[:16], "dtype": dtype}


def parts_folder(
    output: Path, resume: bool, sweep: Path, batch_size: int, model_id: dict[str, Any] | None = None
) -> Path:
    """The folder of finished part files beside `output`, emptied unless resuming. It names the job its parts are of
    (`job.json`: the sweep file, the batch size and `model_id`): a part is a chunk's index, so resuming with another
    sweep file or batch size would merge the wrong rows, and with another model or dtype two models' predictions;
    either is refused. The file itself may change (a bad row fixed in place, then --resume: the chunks before it are
    kept)."""
    if not sweep.exists():
        raise DataError(f"{sweep}: sweep file not found")
    parts = output.with_name(output.name + ".parts")
    if not resume and parts.exists():
        shutil.rmtree(parts)
    parts.mkdir(parents=True, exist_ok=True)
    job = {"sweep": str(sweep.resolve()), "batch_size": batch_size, **(model_id or {})}
    manifest = parts / "job.json"
    if not manifest.exists():
        with atomic_path(manifest) as tmp:
            tmp.write_text(json.dumps(job))
        return parts
    before = json.loads(manifest.read_text())  # a key an earlier version did not record is not a difference
    changed = [
        f"{key} {before[key]!r} -> {value!r}" for key, value in job.items() if key in before and before[key] != value
    ]
    if changed:
        raise DataError(
            f"--resume: {parts} holds the parts of another job ({', '.join(changed)}); resume with the sweep file, --batch-size, "
            f"model directory and dtype that {manifest.name} records, or score again without --resume"
        )
    return parts


def merge_parts(parts: Path, output: Path) -> int:
    """Concatenate the part files into `output` atomically, streaming one part at a time; returns the row count.

    Each part holds its chunk's columns as read: a column of one type in one chunk and another in the next (empty,
    then text; numbers, then `1M`) is written as text, a column a chunk lacks (a JSONL key) is null there."""
    files = sorted(parts.glob("part-*.parquet"))
    if not files:
        raise DataError(f"{parts}: nothing was scored (empty sweep?)")
    schema = _merged_schema([pq.read_schema(f) for f in files])
    rows = 0
    with atomic_path(output) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for file in files:
            table = pq.read_table(file)
            columns = [
                table[f.name].cast(f.type) if f.name in table.column_names else pa.nulls(len(table), f.type)
                for f in schema
            ]
            writer.write_table(pa.Table.from_arrays(columns, schema=schema))
            rows += table.num_rows
    shutil.rmtree(parts)
    return rows


def _merged_schema(schemas: list[pa.Schema]) -> pa.Schema:
    """The columns of every part in order of appearance, each of the type its parts' types promote to, else text."""
    types: dict[str, list[pa.DataType]] = {}
    for schema in schemas:
        for field in schema:
            types.setdefault(field.name, []).append(field.type)
    fields = []
    for name, kinds in types.items():
        try:
            one = pa.unify_schemas([pa.schema([(name, kind)]) for kind in kinds], promote_options="permissive")
            fields.append(one.field(0))
        except (pa.ArrowTypeError, pa.ArrowInvalid):  # no type holds both (a float and a string)
            fields.append(pa.field(name, pa.large_string()))
    return pa.schema(fields, metadata=schemas[0].metadata)
