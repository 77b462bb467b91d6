"""`ncpl score` holds one chunk, not the sweep: peak RSS must not grow with the sweep's size.

Scoring a million configs with the tiny backbone takes about an hour on 2 shared cores, so that
run is benchmarks/score_memory.py. Here the sweep is made large in bytes instead of rows: every row
carries 100 kB of incompressible notes (kept through scoring), so 2,000 rows are 200 MB. Holding
the sweep (or the scored output) whole would add at least that; streaming in chunks of 100 rows
adds about 10 MB per copy of a chunk, the same for 200 rows as for 2,000.
"""

import pyarrow.parquet as pq
import score_memory

PAD = 100_000


def test_score_memory_does_not_grow_with_the_sweep(tiny_model, write_sweep, tmp_path):
    peaks = {}
    for n in (200, 2000):
        sweep = write_sweep(tmp_path / f"sweep-{n}.parquet", n, chunk=100, pad_bytes=PAD)
        output = tmp_path / f"out-{n}.parquet"
        run = score_memory.score_peak(tiny_model, sweep, output, batch_size=100, timeout=600)
        assert run["code"] == 0, run["output"][-3000:]
        assert pq.ParquetFile(output).metadata.num_rows == n
        peaks[n] = run["peak_rss_mb"]
        sweep.unlink()
        output.unlink()
    payload_mb = 2000 * PAD / 2**20
    print(f"peak RSS of ncpl score: {peaks} MB, payload of the large sweep {payload_mb:.0f} MB")
    assert peaks[2000] - peaks[200] < 0.4 * payload_mb, (peaks, payload_mb)  # holding the sweep would add > payload_mb
