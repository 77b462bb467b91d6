"""Multi-Power Law curves (Luo et al., ICLR 2025, arXiv 2503.12811; github thu-yao-01-luo/MultiPowerLaw, MIT).

`csv_<size>/<schedule>.csv` holds columns step, lr, loss: the training loss every 128 steps from the
end of warmup. A path may be the folder holding the csv_<size> folders, one csv_<size> folder or one
file. The schedule is rebuilt from the file name by the repository's own rules (src/data_loader.py:
2160 warmup steps to a peak of 3e-4; cosine to 3e-5; wsd_20000_24000 exponential and wsdld linear decay
to 3e-5 over steps 20000-24000; wsdcon_<k> 3e-4 to step 8000, then k x 1e-5 to 16000) and checked
against the file's lr column.

Not in the files, nor found in what could be read of the paper and repository: the model shape, the
optimizer, the batch and so the tokens per step. So ``model.n_params`` is the nominal size the
repository names the runs by (25M, 100M; whether embeddings count is not said), the optimizer is the
schema's default, and tokens count optimizer steps (``extra.tokens_are_steps``): ``data.tokens`` is
the last logged step, the curve's tokens are its steps. The losses compare only with each other.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ncpl.errors import DataError
from ncpl.schedules import lr_at_steps
from ncpl.schema import RunRecord, ScheduleSpec
from ncpl.sources import Row
from ncpl.validation import validate

WARMUP, PEAK_LR, END_LR = 2160, 3e-4, 3e-5
_SIZE = re.compile(r"^csv_(\d+)$")


def schedule_of(name: str) -> dict[str, Any]:
    """The schedule a file name stands for, as the repository's data loader builds it."""
    parts = name.split("_")
    family = parts[0]
    if family in ("cosine", "constant") and len(parts) == 2:
        spec = {"name": family, "total_steps": int(parts[1])}
        return spec | ({"min_lr": END_LR} if family == "cosine" else {})
    if family in ("wsd", "wsdld") and len(parts) == 3:
        start, total = int(parts[1]), int(parts[2])
        return {
            "name": "wsd",
            "total_steps": total,
            "cooldown_steps": total - start,
            "min_lr": END_LR,
            "decay": "exponential" if family == "wsd" else "linear",
        }
    if family == "wsdcon" and len(parts) == 2:
        return {
            "name": "multistep",
            "total_steps": 16000,
            "stage_steps": [8000],
            "stage_lr_ratios": [int(parts[1]) * 1e-5 / PEAK_LR],
        }
    raise DataError(
        f"file name {name!r}: not one of the repository's schedules (cosine_T, constant_T, wsd_S_T, "
        "wsdld_S_T, wsdcon_K)"
    )


def record(path: Path) -> RunRecord:
    size = _SIZE.match(path.parent.name)
    if not size:
        raise DataError(f"{path}: expected the file inside a csv_<size> folder (csv_25, csv_100)")
    frame = pd.read_csv(path)
    missing = {"step", "lr", "loss"} - set(frame.columns)
    if missing:
        raise DataError(f"columns {sorted(missing)} missing; the file needs step, lr, loss")
    schedule = {"warmup_steps": WARMUP, **schedule_of(path.stem)}
    steps = frame["step"].to_numpy(int)
    lrs = lr_at_steps(ScheduleSpec(**schedule), PEAK_LR, max(schedule["total_steps"], int(steps.max()) + 1))
    file_lrs = frame["lr"].to_numpy(float)
    bad = np.flatnonzero(~np.isfinite(file_lrs))
    if bad.size:
        raise DataError(f"lr: {file_lrs[bad[0]]} at line {bad[0] + 2}; every line needs the schedule's lr at its step")
    worst = float(np.max(np.abs(lrs[steps] - file_lrs)))
    if worst > 1e-9:
        raise DataError(f"lr: the file's lr differs from the rebuilt {path.stem} schedule by {worst:.3g}")
    label = f"{size.group(1)}M"
    config = {
        "source": "multipower",
        "model": {"n_params": float(size.group(1)) * 1e6},
        "data": {"tokens": int(steps[-1])},
        "optimizer": {"lr": PEAK_LR},
        "schedule": schedule,
        "extra": {"tokens_are_steps": True, "size_label": label},
    }
    return validate(
        RunRecord,
        {
            "run_id": f"multipower/{label}/{path.stem}",
            "config": config,
            "final_loss": float(frame["loss"].iloc[-1]),
            "loss_kind": "train",
            "curve": {"tokens": steps.tolist(), "loss": frame["loss"].tolist()},
            "meta": {"schedule_file": path.stem},
        },
    )


def rows(path: Path) -> Iterator[Row]:
    if path.is_file():
        files = [path]
    elif _SIZE.match(path.name):
        files = sorted(path.glob("*.csv"))
    else:
        files = sorted(path.glob("csv_*/*.csv"))
    if not files:
        raise DataError(f"{path}: no csv_<size>/<schedule>.csv files found")
    for file in files:
        yield Row(str(file), sum(1 for _ in file.open()) - 1, lambda file=file: record(file))
