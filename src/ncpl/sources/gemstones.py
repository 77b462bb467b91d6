"""Gemstones (`wandb_dfs/*.jsonl`): training-loss checkpoints of width x depth Gemma-style models.

A file with a constant-lr ("hot") schedule holds curves: its rows are grouped by ``run_name`` into
one record per run, the final loss being the last checkpoint. The cooldown files hold one branch
run per row: ``cool_end`` is the loss after a linear cooldown (schedule ``wsd``), ``cool_begin`` the
hot loss where that cooldown starts. The variant (file name) is kept as ``meta.variant``; the lr
ablation runs (a lower lr) are tagged ``extra.lr_ablation``. lr and warmup live in the paper, not in the files:
schedules carry their family (and the cooldown's linear shape) only; the cooldown's length is not in the files.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ncpl.schema import RunRecord
from ncpl.sources import Row, Skip, column
from ncpl.sources._curves import curve_points
from ncpl.sources._files import jsonl_rows, raise_if_error
from ncpl.validation import validate

TOKENS_PER_STEP = 4_194_304
_PREFIX = "wandb_df_for_fitting_"


def variant_of(path: Path) -> str:
    return path.stem.removeprefix(_PREFIX)


def config(row: dict[str, Any], variant: str, tokens: float, schedule: dict[str, Any]) -> dict[str, Any]:
    return {
        "source": "gemstones",
        "model": {
            "n_params": column(row, "params_active_precise"),
            "d_model": column(row, "width"),
            "n_layers": column(row, "depth"),
        },
        "data": {"tokens": tokens},
        "optimizer": {"name": "adamw"},
        "schedule": schedule,
        "batch": {"tokens": TOKENS_PER_STEP},
        "extra": {"lr_ablation": "lr_ablation" in variant},
    }


def curve_record(group: list[dict[str, Any]], variant: str) -> RunRecord:
    group = [raise_if_error(row) for row in group]
    curve = curve_points(group, "tokens", "final_loss")
    run = str(column(group[0], "run_name"))
    return validate(
        RunRecord,
        {
            "run_id": f"gemstones/{variant}/{run}",
            "config": config(group[-1], variant, curve["tokens"][-1], {"name": "constant"}),
            "final_loss": curve["loss"][-1],
            "loss_kind": "train",
            "curve": curve,
            "meta": {"variant": variant},
        },
    )


def branch_record(row: dict[str, Any], variant: str) -> RunRecord:
    schedule = {"name": "wsd", "decay": "linear"} if variant.endswith("end") else {"name": "constant"}
    run = str(column(row, "run_name"))
    return validate(
        RunRecord,
        {
            "run_id": f"gemstones/{variant}/{run}/step{column(row, 'step')}",
            "config": config(row, variant, column(row, "tokens"), schedule),
            "final_loss": column(row, "final_loss"),
            "loss_kind": "train",
            "meta": {"variant": variant},
        },
    )


def _not_a_run() -> RunRecord:
    raise Skip("no run_name: a point interpolated for law fitting (the *_chinchilla files), not a run")


def rows(path: Path) -> Iterator[Row]:
    variant = variant_of(path)
    if re.search(r"cool_(begin|end)", variant):
        for line, raw in jsonl_rows(path):
            yield Row(f"{path}:{line}", 1, lambda raw=raw: branch_record(raise_if_error(raw), variant))
        return
    groups: dict[str, list[tuple[int, Any]]] = defaultdict(list)
    for line, raw in jsonl_rows(path):
        if isinstance(raw, dict) and "run_name" not in raw:
            yield Row(f"{path}:{line}", 1, _not_a_run)
            continue
        groups[raw["run_name"] if isinstance(raw, dict) else f"<line {line}>"].append((line, raw))
    for run, items in groups.items():
        lines = [line for line, _ in items]
        yield Row(
            f"{path}:{min(lines)}-{max(lines)} (run {run})",
            len(items),
            lambda items=items: curve_record([raw for _, raw in items], variant),
        )
