"""Peak memory and time of `ncpl score` on large sweeps (10k, 100k, 1M configs) with a tiny backbone.

    python benchmarks/score_memory.py [--sizes 10000,100000,1000000] [--batch-size 4096]

The sweep is one real Marin config (the first row of data/marin.parquet) with lr and batch varied,
written with pyarrow in chunks of 100k rows (so generating it never holds the sweep in memory).
The model is NCPL on the `tiny-decoder` backbone trained for one epoch on 200 Marin runs: scoring
cost per config is the serialization, validation and a forward pass, and memory should not grow
with the sweep. Each size runs in a fresh `ncpl score` process (one torch thread); its peak RSS
is the child's own `ru_maxrss` (os.wait4). Results accumulate in
benchmarks/results/score_memory.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ncpl.atomic import write_text
from ncpl.report import markdown_table

ROOT = Path(__file__).resolve().parents[1]
CONFIG_PREFIXES = ("model.", "data.", "optimizer.", "schedule.", "batch.")


def base_config(path: Path = ROOT / "data" / "marin.parquet") -> dict:
    """The first run's config fields (no outcomes, no empty fields), as plain Python values."""
    row = pq.read_table(path).slice(0, 1).to_pylist()[0]
    return {
        k: v
        for k, v in row.items()
        if (k == "source" or k.startswith(CONFIG_PREFIXES)) and v is not None and not (isinstance(v, float) and v != v)
    }


def write_sweep(path: Path, n: int, *, chunk: int = 100_000, seed: int = 0, pad_bytes: int = 0) -> Path:
    """n configs: the base config with optimizer.lr log-uniform in [1e-4, 3e-2] and batch.sequences in 32..512.

    `pad_bytes` > 0 adds a `notes` column of that many random (incompressible) characters per row,
    carried through scoring untouched: a cheap way to make a sweep large in bytes with few rows.
    """
    base = base_config()
    rng = np.random.default_rng(seed)
    writer = None
    try:
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            columns = {"run_id": pa.array([f"sweep-{i}" for i in range(start, start + m)])}
            for key, value in base.items():
                columns[key] = pa.array([value] * m) if isinstance(value, (str, bool)) else pa.array(np.full(m, value))
            sequences = (2 ** rng.integers(5, 10, m)).astype(np.int64)
            columns["optimizer.lr"] = pa.array(10 ** rng.uniform(-4, np.log10(3e-2), m))
            columns["batch.sequences"] = pa.array(sequences)
            columns["batch.tokens"] = pa.array((sequences * base["model.seq_len"]).astype(float))
            if pad_bytes:
                raw = rng.integers(0, 16, size=(m, pad_bytes), dtype=np.uint8)
                text = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)[raw]
                columns["notes"] = pa.array([bytes(line).decode() for line in text])
            table = pa.table(columns)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    return path


def train_tiny_model(directory: Path, work: Path | None = None) -> Path:
    """NCPL on tiny-decoder, one epoch on 200 Marin runs (about 15 s)."""
    from ncpl.regressor.predictor import NCPL
    from ncpl.regressor.train_config import TrainConfig
    from ncpl.store import read_runs

    runs = read_runs(ROOT / "data" / "marin.parquet").sample(200, random_state=0)
    config = TrainConfig(
        backbone="tiny-decoder",
        batch_size=16,
        eval_batch_size=256,
        max_curve_points=0,
        seed=0,
        stage1={"epochs": 1, "lr": 3e-3},
        stage2={"epochs": 0, "lr": 1e-3},
    )
    NCPL(config, work_dir=work or Path(tempfile.mkdtemp(prefix="ncpl-tiny-"))).fit(runs).save(directory)
    return directory


def score_peak(
    model: Path,
    sweep: Path,
    output: Path,
    batch_size: int = 4096,
    extra: list[str] | None = None,
    timeout: float | None = None,
) -> dict:
    """`ncpl score MODEL SWEEP -o OUTPUT` in a fresh process: exit code, output, seconds, peak RSS (MB)."""
    command = [
        str(Path(sys.executable).with_name("ncpl")),
        "score",
        str(model),
        str(sweep),
        "-o",
        str(output),
        "--batch-size",
        str(batch_size),
        *(extra or []),
    ]
    started = time.perf_counter()
    deadline = None if timeout is None else started + timeout
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}
        )
        while True:  # reaped by os.wait4, which alone reports the child's own peak RSS
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if deadline is not None and time.perf_counter() > deadline:
                process.kill()
                os.wait4(process.pid, 0)
                process.returncode = -9
                raise subprocess.TimeoutExpired(command, timeout)
            time.sleep(0.05)
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        log.seek(0)
        text = log.read()
    peak_rss_mb = usage.ru_maxrss / 1024  # Linux: kilobytes
    return {"code": process.returncode, "output": text, "seconds": seconds, "peak_rss_mb": peak_rss_mb}


def machine() -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from accuracy import machine as describe

    return describe()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="10000,100000,1000000", help="comma list of sweep sizes; empty: only rewrite the report"
    )
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench" / "score-memory")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    model = args.work / "model"
    if not (model / "predictor.json").exists():
        train_tiny_model(model, args.work / "train-work")
    results_path = ROOT / "benchmarks" / "results" / "score_memory.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for n in map(int, filter(None, args.sizes.split(","))):
        sweep = write_sweep(args.work / f"sweep-{n}.parquet", n)
        output = args.work / f"scored-{n}.parquet"
        print(f"scoring {n} configs ...", flush=True)
        run = score_peak(model, sweep, output, args.batch_size)
        if run["code"] != 0:
            raise SystemExit(f"ncpl score failed on {n} rows:\n{run['output'][-3000:]}")
        rows = pq.ParquetFile(output).metadata.num_rows
        assert rows == n, (rows, n)
        results[str(n)] = {
            "rows": n,
            "seconds": round(run["seconds"], 1),
            "configs_per_s": round(n / run["seconds"], 1),
            "peak_rss_mb": round(run["peak_rss_mb"], 1),
            "batch_size": args.batch_size,
            "sweep_mb": round(sweep.stat().st_size / 2**20, 1),
            "date": str(datetime.date.today()),
            "machine": machine(),
        }
        print(results[str(n)], flush=True)
        sweep.unlink()
        output.unlink()
        write_text(results_path, json.dumps(results, indent=1))
    header = ["rows", "seconds", "configs_per_s", "peak_rss_mb", "sweep_mb", "batch_size", "date"]
    rows = markdown_table(sorted(results.values(), key=lambda r: r["rows"]), header)
    machines = sorted({r["machine"] for r in results.values()})
    body = (
        f"`ncpl score` with NCPL on the tiny-decoder backbone, one torch thread, measured on {'; '.join(machines)} "
        f"by `python benchmarks/score_memory.py`. Peak RSS is the scoring process's own maximum resident set; "
        f"the sweep is one real Marin config with lr and batch varied.\n\n" + rows + "\n"
    )
    write_text(ROOT / "benchmarks" / "results" / "score_memory.md", body)
    print(body)


if __name__ == "__main__":
    main()
