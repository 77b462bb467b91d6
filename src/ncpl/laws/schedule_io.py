"""Schedule curves in and out: the CSV `ncpl extrapolate` reads (step, lr, loss) and the figure of its forecast."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ncpl.errors import ConfigError
from ncpl.laws.schedule import ScheduleCurve


def read_columns(path: str | Path, names: tuple[str, ...], every_row: tuple[str, ...], expected: str) -> dict:
    """The named columns of a CSV (or JSONL) curve file as float arrays, NaN where a cell is empty. A missing or
    unreadable file, a missing column, or a cell that is not a number (in `every_row`, an empty cell too) is refused
    naming the file, the column and the row; `expected` says what the file should hold."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: curve file not found; give {expected}")
    json_lines = path.suffix in (".jsonl", ".json")
    try:
        frame = pd.read_json(path, lines=True) if json_lines else pd.read_csv(path)
    except ValueError as error:  # pandas' parser and empty-file errors, a bad encoding
        raise ConfigError(
            f"{path}: cannot read as {'JSONL' if json_lines else 'CSV'} ({error}); give {expected}"
        ) from None
    if frame.empty:
        raise ConfigError(f"{path}: no rows; give {expected}")
    columns = {}
    for name in names:
        if name not in frame.columns:
            raise ConfigError(
                f"{path}: column {name!r} is missing (found {list(map(str, frame.columns))}); give {expected}"
            )
        values = pd.to_numeric(frame[name], errors="coerce")
        bad = values.isna() & (frame[name].notna() | (name in every_row))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            fix = f"every row needs a {name}" if name in every_row else "give a number or leave the cell empty"
            raise ConfigError(
                f"{path}: column {name!r}: {str(frame[name].iloc[row])!r} at row {row + 1} is not a number; {fix}"
            )
        columns[name] = values.to_numpy(float)
    return columns


def read_schedule_curve(path: str | Path) -> ScheduleCurve:
    """A CSV with columns step, lr (every step to the horizon) and loss (empty where not measured)."""
    values = read_columns(
        path,
        ("step", "lr", "loss"),
        ("step", "lr"),
        "a CSV with columns step, lr (every step) and loss (empty where not measured)",
    )
    steps = values["step"]
    if steps[0] != 0 or np.any(np.diff(steps) != 1):
        row = 0 if steps[0] != 0 else int(np.flatnonzero(np.diff(steps) != 1)[0]) + 1
        raise ConfigError(
            f"{path}: column 'step': {steps[row]:g} at row {row + 1}; give one row per step from 0 to "
            "the horizon (the lr of every step), loss empty where not measured"
        )
    measured = np.isfinite(values["loss"])
    return ScheduleCurve(values["lr"], steps[measured], values["loss"][measured], name=str(path))


def plot_schedule_forecast(
    curve: ScheduleCurve,
    steps: np.ndarray,
    forecast: np.ndarray,
    path: str | Path,
    fit_on: list[ScheduleCurve] = (),
    title: str = "",
) -> Path:
    """Measured losses (this curve and the runs fitted with it), the law's curve, the lr on a second axis."""
    from matplotlib.figure import Figure

    from ncpl.plots import save_figure

    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    for i, other in enumerate(fit_on):
        ax.scatter(
            other.steps,
            other.loss,
            s=4,
            color=f"C{(i + 2) % 10}",
            alpha=0.5,
            label=f"fitted too: {Path(other.name).name}",
        )
    ax.scatter(curve.steps, curve.loss, s=8, color="C0", label="measured", zorder=3)
    ax.plot(steps, forecast, color="C1", lw=1.5, label="law")
    losses = np.concatenate([curve.loss, forecast[len(forecast) // 20 :]])
    ax.set_ylim(losses.min() - 0.05, losses.max() + 0.05)
    ax.set(xlabel="step", ylabel="loss", title=title)
    lr_axis = ax.twinx()
    lr_axis.plot(np.arange(len(curve.lrs)), curve.lrs, color="0.6", lw=1, ls=":")
    lr_axis.set_ylabel("lr (dotted)")
    ax.legend(fontsize=7)
    return save_figure(fig, path)
