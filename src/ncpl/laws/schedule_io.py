"""Schedule curves in and out: the CSV `ncpl extrapolate` reads (step, lr, loss) and the figure of its forecast."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ncpl.errors import ConfigError
from ncpl.laws.schedule import ScheduleCurve


def read_schedule_curve(path: str | Path) -> ScheduleCurve:
    """A CSV with columns step, lr (every step to the horizon) and loss (empty where not measured)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: curve file not found; give a CSV with columns step, lr, loss")
    frame = pd.read_csv(path)
    for name in ("step", "lr", "loss"):
        if name not in frame.columns:
            raise ConfigError(
                f"{path}: column {name!r} is missing (found {list(map(str, frame.columns))}); a schedule "
                "curve needs step, lr (every step) and loss (empty where not measured)"
            )
    values = {name: pd.to_numeric(frame[name], errors="coerce") for name in ("step", "lr", "loss")}
    for name in ("step", "lr"):
        if values[name].isna().any():
            row = int(np.flatnonzero(values[name].isna())[0])
            raise ConfigError(
                f"{path}: column {name!r}: {str(frame[name].iloc[row])!r} at row {row + 1} is not a "
                f"number; every row needs a {name}"
            )
    steps = values["step"].to_numpy(float)
    if steps[0] != 0 or np.any(np.diff(steps) != 1):
        row = 0 if steps[0] != 0 else int(np.flatnonzero(np.diff(steps) != 1)[0]) + 1
        raise ConfigError(
            f"{path}: column 'step': {steps[row]:g} at row {row + 1}; give one row per step from 0 to "
            "the horizon (the lr of every step), loss empty where not measured"
        )
    measured = values["loss"].notna().to_numpy()
    return ScheduleCurve(
        values["lr"].to_numpy(float), steps[measured], values["loss"].to_numpy(float)[measured], name=str(path)
    )


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
