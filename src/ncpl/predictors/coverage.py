"""Where a predictor's training runs lie, and how far a config lies beyond them.

A fitted predictor keeps `coverage_` (`training_coverage` of its training runs: per source the log10 range of N, D,
lr and batch, and the config fields set); `outside` places configs against it, `unseen_fields` names the fields no
training run set. The CLI warns from both.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ncpl.columns import effective_params, tokens
from ncpl.flat import CONFIG_PREFIXES

# The axes along which a prediction is placed against the training runs of its source, in decades (log10).
COVERAGE_AXES = {"n_params": "N (non-embedding, active)", "tokens": "D (tokens)", "lr": "lr", "batch": "batch (tokens)"}
OUTSIDE = "outside_"  # prefix of the per-axis columns; `outside` is their largest absolute value
# Distances below this many decades (1.2%) count as inside: a count written with units (134M for 134217728) is not
# an extrapolation.
OUTSIDE_TOLERANCE = 0.005


def _axes(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    def column(name: str) -> np.ndarray:
        return (
            pd.to_numeric(frame[name], errors="coerce").to_numpy(float)
            if name in frame
            else np.full(len(frame), np.nan)
        )

    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "n_params": np.log10(effective_params(frame)),
            "tokens": np.log10(tokens(frame)),
            "lr": np.log10(column("optimizer.lr")),
            "batch": np.log10(column("batch.tokens")),
        }


def training_coverage(runs: pd.DataFrame) -> dict[str, Any]:
    """What a predictor saw in training: per source the min / max of each axis (log10), and the config fields set."""
    fields = sorted(
        c for c in runs.columns if (c == "source" or c.startswith(CONFIG_PREFIXES)) and runs[c].notna().any()
    )
    ranges: dict[str, dict[str, list[float] | None]] = {}
    axes = _axes(runs)
    sources = runs["source"].astype(str).to_numpy()
    for source in np.unique(sources):
        ranges[source] = {}
        for axis, values in axes.items():
            seen = values[(sources == source) & np.isfinite(values)]
            ranges[source][axis] = [float(seen.min()), float(seen.max())] if len(seen) else None
    return {"ranges": ranges, "fields": fields}


def merge_coverage(coverages: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """The coverage of several predictors used together (an ensemble): the union of their ranges and fields;
    None when one of them is unknown."""
    if not coverages or any(c is None for c in coverages):
        return None
    ranges: dict[str, dict[str, list[float] | None]] = {}
    for coverage in coverages:
        for source, axes in coverage["ranges"].items():
            for axis, bounds in axes.items():
                known = ranges.setdefault(source, {}).get(axis)
                ranges[source][axis] = (
                    bounds
                    if known is None
                    else known
                    if bounds is None
                    else [min(known[0], bounds[0]), max(known[1], bounds[1])]
                )
    return {"ranges": ranges, "fields": sorted({f for c in coverages for f in c["fields"]})}


def outside(coverage: dict[str, Any] | None, frame: pd.DataFrame) -> pd.DataFrame:
    """Per config, how many decades each axis (``outside_n_params``, ``outside_tokens``, ``outside_lr``,
    ``outside_batch``) lies beyond the training runs of its source: positive above their max, negative below their
    min, 0 inside (or within `OUTSIDE_TOLERANCE`); ``outside`` the largest absolute value. NaN where unknown (a
    model saved before, a source or an axis without training runs, a config without the value)."""
    sources = frame["source"].astype(str).to_numpy() if "source" in frame else np.full(len(frame), "")
    ranges = (coverage or {}).get("ranges", {})
    out = {}
    for axis, values in _axes(frame).items():
        bounds = np.array([(ranges.get(s, {}).get(axis) or [np.nan, np.nan]) for s in sources], float).reshape(-1, 2)
        beyond = np.where(
            values > bounds[:, 1],
            values - bounds[:, 1],
            np.where(values < bounds[:, 0], values - bounds[:, 0], 0.0),
        )
        out[f"{OUTSIDE}{axis}"] = np.where(np.abs(beyond) < OUTSIDE_TOLERANCE, 0.0, beyond)
        out[f"{OUTSIDE}{axis}"][~np.isfinite(values) | np.isnan(bounds).any(axis=1)] = np.nan
    table = pd.DataFrame(out)
    table.insert(0, "outside", table.abs().max(axis=1, skipna=True).where(table.notna().any(axis=1)))
    return table


def unseen_fields(coverage: dict[str, Any] | None, frame: pd.DataFrame) -> list[str]:
    """Config fields set in `frame` that no training run had; [] when the training fields are unknown."""
    if not coverage:
        return []
    seen = set(coverage["fields"])
    return [c for c in frame.columns if c.startswith(CONFIG_PREFIXES) and c not in seen and frame[c].notna().any()]
