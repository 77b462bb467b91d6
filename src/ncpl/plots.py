"""Figures: predicted against true loss, predicted against true loss curves, the predicted loss over (lr, batch),
the regressor's training curves.

Drawn on `matplotlib.figure.Figure` objects, not pyplot, so that plotting never switches the
backend or holds global state in a notebook or a server.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backend_bases import FigureCanvasBase
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ncpl.atomic import atomic_path
from ncpl.columns import usable
from ncpl.errors import ConfigError

MARKERS = ("*", "D", "^", "s", "P")


def figure_format(path: str | Path) -> str:
    """The format a figure is written to `path` in: its suffix, PNG without one. A suffix matplotlib cannot write is
    refused naming `plot`; a command checks its plot path with it before the work that draws the figure."""
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    formats = FigureCanvasBase.get_supported_filetypes()
    if fmt not in formats:
        raise ConfigError(f"plot: {path}: cannot write a figure as {fmt!r}; end the path in .{', .'.join(formats)}")
    return fmt


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write `fig` to `path` (the format from its suffix), atomically."""
    path = Path(path)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=figure_format(path))
    return path


def parity(predictions: dict[str, list], predictor: str, title: str, path: str | Path) -> Path:
    frame = pd.DataFrame({k: predictions[k] for k in ("source", "final_loss", "usable", predictor)})
    frame = frame[frame["usable"]]
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    for source, group in frame.groupby("source"):
        ax.scatter(group["final_loss"], group[predictor], s=8, alpha=0.6, label=source)
    low, high = frame[["final_loss", predictor]].min().min(), frame[["final_loss", predictor]].max().max()
    ax.plot([low, high], [low, high], color="black", lw=0.8)
    ax.set(xlabel="true final loss", ylabel="predicted final loss", title=title)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def loss_curves(curves: list[dict], title: str, path: str | Path) -> Path:
    """One panel a run: the true curve, each method's predicted curve, the end of the observed prefix."""
    columns = min(3, len(curves))
    rows = -(-len(curves) // columns)
    fig = Figure(figsize=(5 * columns, 3.6 * rows))
    axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
    for ax, curve in zip(axes, curves):
        ax.plot(curve["tokens"], curve["loss"], color="black", lw=1.5, label="true")
        for k, (name, predicted) in enumerate(curve["predicted"].items()):
            ax.plot(
                predicted["tokens"],
                predicted["loss"],
                color=f"C{k}",
                lw=1.0,
                ls="--" if "prefix" in name else "-",
                label=name,
            )
        ax.axvline(curve["prefix_tokens"], color="0.5", ls=":", lw=0.8)
        low, high = np.quantile(curve["loss"], [0.0, 0.9])
        ax.set(
            xscale="log",
            ylim=(low - 0.1 * (high - low) - 0.02, high + 0.1 * (high - low)),
            xlabel="tokens",
            ylabel="loss",
            title=str(curve["run_id"])[-48:],
        )
        ax.title.set_fontsize(8)
    for ax in axes[len(curves) :]:
        ax.set_axis_off()
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def loss_landscape(
    lr: np.ndarray,
    batch: np.ndarray,
    loss: np.ndarray,
    path: str | Path,
    *,
    picks: pd.DataFrame,
    runs: pd.DataFrame | None = None,
    title: str = "",
) -> Path:
    """Heat map and contours of `loss` [batch, lr]; `picks` (by label: optimizer.lr, batch.tokens, pred_loss) marked
    and labelled; `runs` as points in the same colours by their true loss, diverged ones as grey crosses.

    The colour scale stops at the 95th percentile of the grid, so that a corner of absurd predictions
    does not flatten the valley that matters.
    """
    low, high = float(np.nanmin(loss)), float(np.nanquantile(loss, 0.95))
    flat = high - low < 1e-9  # a predictor blind to lr and batch (a Chinchilla law) draws one colour, no contours
    norm = Normalize(low - 1e-3 * flat, high + 1e-3 * flat, clip=True)
    fig = Figure(figsize=(7, 5.5))
    ax = fig.subplots()
    mesh = ax.pcolormesh(lr, batch, loss, norm=norm, cmap="viridis", shading="nearest")
    if not flat:
        contours = ax.contour(lr, batch, loss, levels=np.linspace(low, high, 8), colors="white", linewidths=0.6)
        ax.clabel(contours, fontsize=7, fmt="%.3f")
    if runs is not None and len(runs):
        ok = usable(runs).to_numpy()
        ax.scatter(
            runs["optimizer.lr"][ok],
            runs["batch.tokens"][ok],
            c=runs["final_loss"][ok],
            norm=norm,
            cmap="viridis",
            s=28,
            edgecolors="black",
            linewidths=0.5,
            label=f"real runs ({ok.sum()})",
            zorder=3,
        )
        if (~ok).any():
            ax.scatter(
                runs["optimizer.lr"][~ok],
                runs["batch.tokens"][~ok],
                marker="x",
                color="0.6",
                s=24,
                label=f"diverged ({(~ok).sum()})",
                zorder=3,
            )
    for marker, (label, pick) in zip(MARKERS, picks.iterrows()):
        x, y = float(pick["optimizer.lr"]), float(pick["batch.tokens"])
        ax.scatter(
            [x],
            [y],
            marker=marker,
            s=160,
            color="red",
            edgecolors="white",
            linewidths=1.0,
            zorder=4,
            label=f"{label}: {float(pick['pred_loss']):.4f}",
        )
        ax.annotate(
            label,
            (x, y),
            xytext=(6, 6),
            textcoords="offset points",
            color="white",
            fontsize=8,
            zorder=5,
            bbox={"boxstyle": "round,pad=0.2", "facecolor": "black", "alpha": 0.6, "linewidth": 0},
        )
    ax.set(xscale="log", yscale="log", xlabel="peak learning rate", ylabel="batch (tokens per step)", title=title)
    ax.legend(fontsize=7, loc="lower left")
    fig.colorbar(mesh, ax=ax, label="loss (map: predicted, points: true)")
    return save_figure(fig, path)


def training_curves(log: str | Path, path: str | Path) -> Path:
    """Train loss terms and validation MAE per epoch from a `train_log.jsonl`, both stages on one axis of epochs,
    the checkpoint kept (the lowest validation MAE) marked."""
    frame = pd.DataFrame([json.loads(line) for line in Path(log).read_text().splitlines() if line.strip()])
    x = np.arange(1, len(frame) + 1)
    fig = Figure(figsize=(10, 4))
    train_ax, val_ax = fig.subplots(1, 2)
    for column in [c for c in frame.columns if c.startswith("train_")]:
        train_ax.plot(x, frame[column], marker=".", label=column.removeprefix("train_"))
    val_ax.plot(x, frame["val_mae"], marker=".", color="black", label="validation MAE")
    best = int(frame["val_mae"].idxmin()) if frame["val_mae"].notna().any() else None  # no converged validation run
    if best is not None:
        val_ax.scatter(
            [x[best]],
            [frame["val_mae"][best]],
            marker="*",
            s=180,
            color="red",
            zorder=3,
            label=f"selected: stage {frame['stage'][best]} epoch {frame['epoch'][best]} ({frame['val_mae'][best]:.4f})",
        )
    starts = x[frame["stage"].ne(frame["stage"].shift()).to_numpy()][1:]
    for ax in (train_ax, val_ax):
        for start in starts:
            ax.axvline(start - 0.5, color="0.5", ls="--", lw=0.8)
        if best is not None:
            ax.axvline(x[best], color="red", ls=":", lw=0.8)
        ax.set_xlabel("epoch (both stages; dashed: stage 2 starts)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8)
    train_ax.set(yscale="log", ylabel="train loss term (epoch mean)", title="training")
    val_ax.set(ylabel="MAE of the final loss (nats)", title="validation")
    return save_figure(fig, path)
