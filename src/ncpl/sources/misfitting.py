"""(Mis)Fitting open_lm runs (`scaling_results.csv`): C4 eval-loss checkpoints grouped into curves.

One curve is one (model, total_steps, peak_lr, sweep): ``train_tokens`` in this file is the tokens
seen at the checkpoint (it equals ``D``), not the run's budget, so it cannot key a run. Shapes come
from `model_configs/<model>.json` beside the file; batches are 512 sequences of 2048 tokens.
The schedule is not in the file: cosine over ``total_steps`` after 50 warmup steps, to 0.1 x the peak
lr, as the repository's sweep sets it (hadasah/scaling_laws @ 1f3708c, open_lm/constants/slurm_constants.py:
NUM_WARMUP_STEPS 50, END_LR_RATIO 0.1; open_lm's default cosine scheduler).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from ncpl.errors import DataError
from ncpl.schema import RunRecord
from ncpl.sources import Row, column
from ncpl.sources._curves import curve_points
from ncpl.sources.gadre_grid import swiglu_hidden
from ncpl.validation import validate

SEQUENCES, SEQ_LEN = 512, 2048
WARMUP_STEPS, MIN_LR_RATIO = 50, 0.1
RUN_KEY = ["model", "total_steps", "peak_lr", "sweep"]


def load_shapes(path: Path) -> dict[str, dict[str, Any]]:
    return {file.stem: json.loads(file.read_text()) for file in sorted((path.parent / "model_configs").glob("*.json"))}


def record(group: pd.DataFrame, shapes: dict[str, dict[str, Any]]) -> RunRecord:
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
    run_id = f"misfitting/{model}/steps{total_steps}/lr{first['peak_lr']:g}/{first['sweep']}"
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
    missing = [key for key in RUN_KEY + ["D", "loss"] if key not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing columns {missing}")
    shapes = load_shapes(path)
    frame["_line"] = frame.index + 2
    for key, group in frame.groupby(RUN_KEY, sort=False):
        where = f"{path}:{group['_line'].min()}-{group['_line'].max()} (run {'/'.join(map(str, key))})"
        yield Row(where, len(group), lambda group=group: record(group, shapes))
