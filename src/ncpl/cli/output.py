"""What every command shares: the console, errors and warnings, coverage warnings, parameter names as flags."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ncpl.errors import NcplError

console = Console(width=None if sys.stdout.isatty() else 200)  # no wrapping in logs and CI


def fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {escape(message)}")  # a message is text: `sweep[old].csv` is a file name
    raise typer.Exit(2)


def say(message: str) -> None:
    """Print a line of text (paths, counts): no Rich markup read in it, so `sweep[old].csv` prints as it is."""
    console.print(message, markup=False)


def warn(message: str) -> None:
    console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)


@contextmanager
def as_flags(**flags: str) -> Iterator[None]:
    """Report a library error that names a parameter (`n_params: got -1, ...`) under the command's flag for it
    (`--params: got -1, ...`); the library knows parameters, only the command knows its flags."""
    try:
        yield
    except NcplError as error:
        message = str(error)
        for parameter, flag in flags.items():
            if message.startswith((f"{parameter}:", f"{parameter} ")):
                raise type(error)(flag + message[len(parameter) :]) from None
        raise


def print_rows(title: str, headers: tuple[str, ...], rows) -> None:
    """A table of string rows under a title."""
    table = Table(title=escape(title))
    for header in headers:
        table.add_column(header)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def warn_coverage(model, configs: pd.DataFrame, details: pd.DataFrame, what: str) -> None:
    """Say which fields the model never saw in training and which predictions lie outside its training runs."""
    from ncpl.predictors.coverage import COVERAGE_AXES, OUTSIDE

    unseen = model.unseen_fields(configs)
    if unseen:
        warn(
            f"{what}: {', '.join(unseen)} never set in {model.name}'s training runs: the model cannot have learned "
            "their effect"
        )
    if model.coverage_ is None:
        warn(
            f"{what}: the training range of this model is unknown (saved before it was recorded); re-fit to know how "
            "far a prediction extrapolates"
        )
        return
    outside = details["outside"].to_numpy(float)
    unknown = np.isnan(outside)
    if unknown.any():
        sources = sorted(set(configs["source"].astype(str)[unknown]) - set(model.coverage_["ranges"]))
        warn(
            f"{what}: {int(unknown.sum())} of {len(details)} configs have no training range"
            + (f" (source {', '.join(sources)} not in the training runs)" if sources else "")
        )
    beyond = outside > 0
    if beyond.any():
        axes = [
            f"{label} up to {np.nanmax(np.abs(details[OUTSIDE + axis].to_numpy(float))):.2f}"
            for axis, label in COVERAGE_AXES.items()
            if (np.abs(details[OUTSIDE + axis].to_numpy(float)) > 0).any()
        ]
        warn(
            f"{what}: {int(beyond.sum())} of {len(details)} configs lie outside the training runs of their source "
            f"(decades beyond their range: {', '.join(axes)}); the loss there is extrapolated"
        )
