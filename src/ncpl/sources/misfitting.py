"""(Mis)Fitting open_lm runs (`scaling_results.csv`): C4 eval-loss checkpoints grouped into curves.

One curve is one run of a (model, total_steps, peak_lr, sweep): ``train_tokens`` in this file is the tokens
seen at the checkpoint (it equals ``D``), not the run's budget, so it cannot key a run; and a key can hold several
runs one after the other in the file (reruns, or the same budget checkpointed 2 or 6 times), so a run ends where
``current_steps`` stops growing. Such runs get ``/run1``, ``/run2``, ... in their id, in file order; a run whose
losses all lie in one run with more checkpoints, or repeat an earlier run's, is a copy and skipped (counted). Shapes come
from `model_configs/<model>.json` beside the file; batches are 512 sequences of 2048 tokens.
The schedule is not in the file: cosine over ``total_steps`` after 50 warmup steps, to 0.1 x the peak
lr, as the repository's sweep sets it (hadasah/scaling_laws @ 1f3708c, open_lm/constants/slurm_constants.py:
NUM_WARMUP_STEPS 50, END_LR_RATIO 0.1; open_lm's default cosine scheduler).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ncpl.errors import DataError
from ncpl.schema import RunRecord
from ncpl.sources import Row, Skip, column
from ncpl.sources._curves import curve_points
from ncpl.sources._files import read_json
from ncpl.sources.gadre_grid import swiglu_hidden
from ncpl.validation import validate

SEQUENCES, SEQ_LEN = 512, 2048
WARMUP_STEPS, MIN_LR_RATIO = 50, 0.1
RUN_KEY = ["model", "total_steps", "peak_lr", "sweep"]


def load_shapes(path: Path) -> dict[str, dict[str, Any]]:
    return {file.stem: read_json(file) for file in sorted((path.parent / "model_configs").glob("*.json"))}


def record(group: pd.DataFrame, shapes: dict[str, dict[str, Any]], number: int | None = None) -> RunRecord:
    rows = group.to_dict("records")
    first = rows[0]
    model = str(column(first, "model"))
    shape = shapes.get(model, {})
    total_steps = int(column(first, "total_steps"))
    curve = curve_points(rows, "D", "loss")
    config = {
        "source": "misfitting",
        "model": {
            "n_params": column(first, "N_no_emb"),
            "n_params_total": column(first, "N"),
            **(
                {
                    "d_model": shape["hidden_dim"],
                    "n_layers": shape["n_layers"],
                    "n_heads": shape["n_heads"],
                    "d_ff": swiglu_hidden(shape["hidden_dim"]),
                    "vocab_size": shape["vocab_size"],
                }
                if shape
                else {}
            ),
            "seq_len": SEQ_LEN,
        },
        "data": {"tokens": total_steps * SEQUENCES * SEQ_LEN},
        "optimizer": {"name": "adamw", "lr": column(first, "peak_lr")},
        "schedule": {
            "name": "cosine",
            "total_steps": total_steps,
            "warmup_steps": WARMUP_STEPS,
            "min_lr_ratio": MIN_LR_RATIO,
        },
        "batch": {"sequences": SEQUENCES, "tokens": SEQUENCES * SEQ_LEN},
    }
    run_id = f"misfitting/{model}/steps{total_steps}/lr{first['peak_lr']:g}/{first['sweep']}" + (
        f"/run{number}" if number else ""
    )
    return validate(
        RunRecord,
        {
            "run_id": run_id,
            "config": config,
            "final_loss": curve["loss"][-1],
            "loss_kind": "c4_eval",
            "curve": curve,
            "meta": {"sweep": str(column(first, "sweep")), "model_name": model},
        },
    )


def rows(path: Path) -> Iterator[Row]:
    frame = pd.read_csv(path)
    missing = [key for key in RUN_KEY + ["D", "loss", "current_steps"] if key not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing columns {missing}")
    shapes = load_shapes(path)
    frame["_line"] = frame.index + 2
    runs = []  # (key, number within the key or None, the run's rows)
    for key, group in frame.groupby(RUN_KEY, sort=False):
        steps = group["current_steps"].to_numpy()
        run = np.r_[0, np.cumsum(steps[1:] <= steps[:-1])]  # a new run where the steps stop growing
        runs += [(key, number + 1 if run[-1] else None, part) for number, part in group.groupby(run, sort=False)]
    owners: dict[float, set[int]] = {}  # loss -> the runs that measured it
    for i, (_, _, part) in enumerate(runs):
        for loss in part["loss"]:
            owners.setdefault(loss, set()).add(i)
    for i, (key, number, part) in enumerate(runs):
        where = f"{path}:{part['_line'].min()}-{part['_line'].max()} (run {'/'.join(map(str, key))})"
        holders = set.intersection(*(owners[loss] for loss in part["loss"])) - {i}  # runs with all its losses
        reason = copy_of(i, holders, runs)
        yield Row(where, len(part), _skipped(reason) if reason else lambda p=part, n=number: record(p, shapes, n))


def copy_of(i: int, holders: set[int], runs: list) -> str | None:
    """Why run `i`, whose losses (to the last bit) all lie in each of the runs `holders`, is not a run of its own;
    None if it is. In misfitting_17m's 2024_11_10 sweep, steps750/lr0.004's three 2-checkpoint runs are the last two
    checkpoints of the 6-checkpoint steps750 runs at lr 0.004, 0.008 and 0.002, and steps200/lr0.002's two runs are
    steps200/lr0.004's under another lr."""
    key, _, part = runs[i]
    if any(len(runs[j][2]) > len(part) for j in holders):
        return "a copy of checkpoints of a longer run"
    if any(runs[j][0] != key for j in holders):
        return "the same losses as a run of another steps or lr: which is true is unknown"
    if any(j < i for j in holders):
        return "a repeat of an earlier run"
    return None


def _skipped(reason: str):
    """A build that skips its rows, counted under `reason`."""

    def build() -> RunRecord:
        raise Skip(reason)

    return build
