"""Turning checkpoint rows into one curve record."""

from __future__ import annotations

from typing import Any

from ncpl.errors import DataError


def curve_points(rows: list[dict[str, Any]], tokens_key: str, loss_key: str) -> dict[str, list[float]]:
    """Points sorted by tokens; a duplicated token count keeps the later row of the file."""
    points: dict[float, float] = {}
    for row in rows:
        tokens, loss = float(row[tokens_key]), float(row[loss_key])
        if not loss == loss:
            raise DataError(f"{loss_key}: NaN at {tokens_key}={tokens:g}")
        points[tokens] = loss
    ordered = sorted(points)
    return {"tokens": ordered, "loss": [points[t] for t in ordered]}
