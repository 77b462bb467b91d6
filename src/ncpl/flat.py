"""The flat view of a run: one column per field, named by its dotted path (``model.n_params``).

Parquet files, CSV sweeps and tabular models read runs this way; `ncpl.schema` validates the nested form.
Here: which columns are config fields, which cells hold no value, and how a flat row nests into sections.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

CONFIG_PREFIXES = ("model.", "data.", "optimizer.", "schedule.", "batch.", "extra.")
RECORD_COLUMNS = ("run_id", "final_loss", "loss_kind", "diverged", "curve_tokens", "curve_loss")
SCHEDULE_LR = "schedule_lr"  # flat column of the explicit per-step lr (schedule.lr)


def is_missing(value: Any) -> bool:
    """A cell that holds no value: None, a NaN (Python or numpy) or pandas' NA."""
    if value is None or value is pd.NA:  # NA != NA is NA, neither true nor false
        return True
    try:
        return bool(value != value)  # NaN is the one value unequal to itself
    except (TypeError, ValueError):
        return False


def present(row: dict[str, Any]) -> dict[str, Any]:
    """The entries of `row` that hold a value."""
    return {key: value for key, value in row.items() if not is_missing(value)}


def to_python(value: Any) -> Any:
    """A cell as plain Python: a list for an array read back from Parquet, a float or int for a numpy scalar."""
    if getattr(value, "ndim", 0) > 0:
        return value.tolist()
    item = getattr(value, "item", None)
    return item() if callable(item) and not isinstance(value, (str, bytes)) else value


def unflatten(row: dict[str, Any]) -> dict[str, Any]:
    """A flat config row as nested sections (``{"model": {"n_params": ...}}``); a run's outcome columns are left out."""
    nested: dict[str, Any] = {}
    for key, value in row.items():
        if key in RECORD_COLUMNS:
            continue
        if key == SCHEDULE_LR:
            nested.setdefault("schedule", {})["lr"] = [float(v) for v in value]
            continue
        head, _, rest = key.partition(".")
        if not rest:
            nested[head] = value
        else:
            nested.setdefault(head, {})[rest] = to_python(value)
    return nested
