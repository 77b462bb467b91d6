"""`ncpl data`: import raw logs of a source into a runs file, show what runs hold, split them into train / ID / OOD."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from ncpl.cli.output import as_flags, fail, print_rows, say

data_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Import, inspect and split real run logs.")


@data_app.command("import")
def data_import(
    source: Annotated[
        str,
        typer.Argument(
            help="steplaw, steplaw-moe, marin, gadre, gadre-grid, gemstones, misfitting, epoch, multipower, table"
        ),
    ],
    paths: Annotated[list[Path], typer.Argument(help="raw files (or the Gadre models folder)")],
    output: Annotated[Path, typer.Option("-o", "--output", help="runs Parquet file to write")],
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="skip and count malformed rows instead of failing")
    ] = False,
) -> None:
    """Read raw logs of one source into the canonical runs Parquet file."""
    from ncpl.sources import ImportFailed, import_runs
    from ncpl.store import write_runs

    try:
        result = import_runs(source, paths, skip_bad=skip_bad)
    except ImportFailed as error:  # a malformed row: the library names its setting, the command its flag
        fail(str(error).replace("skip_bad=True skips and counts", "pass --skip-bad to skip and count"))
    if not result.records:
        fail(f"{result.summary()}: no records to write")
    write_runs(result.records, output)
    say(result.summary())
    say(f"wrote {len(result.records)} runs to {output}")


def _range(values: pd.Series, fmt: str = ".3g") -> str:
    values = pd.to_numeric(values, errors="coerce").dropna()
    return "-" if values.empty else f"{values.min():{fmt}} .. {values.max():{fmt}}"


@data_app.command("show")
def data_show(paths: Annotated[list[Path], typer.Argument(help="runs Parquet files")]) -> None:
    """Runs per source with the ranges of N, D, lr, batch and loss, curves, diverged and unstable runs."""
    from ncpl.store import read_runs
    from ncpl.unstable import unstable

    runs = read_runs(*paths)
    runs["unstable"] = unstable(runs.reset_index(drop=True)).to_numpy()  # blew up below the divergence rule
    rows = []
    for source, group in runs.groupby("source"):
        curves = group["curve_loss"].notna().sum() if "curve_loss" in group else 0
        rows.append(
            (
                str(source),
                str(len(group)),
                ",".join(sorted(group["loss_kind"].unique())),
                _range(group["model.n_params"]),
                _range(group["data.tokens"]),
                _range(group.get("optimizer.lr", pd.Series(dtype=float))),
                _range(group.get("batch.tokens", pd.Series(dtype=float))),
                _range(group["final_loss"][~group["diverged"]], ".3f"),
                str(curves),
                str(int(group["diverged"].sum())),
                str(int(group["unstable"].sum())),
                str(group["optimizer.name"].nunique()),
            )
        )
    print_rows(
        f"{len(runs)} runs in {', '.join(map(str, paths))}",
        (
            "source",
            "runs",
            "loss kind",
            "N (non-emb)",
            "D (tokens)",
            "lr",
            "batch (tokens)",
            "final loss",
            "curves",
            "diverged",
            "unstable",
            "optimizers",
        ),
        rows,
    )


@data_app.command("split")
def data_split(
    paths: Annotated[list[Path], typer.Argument(help="runs Parquet files")],
    output: Annotated[Path, typer.Option("-o", "--output", help="folder for train/id/ood.parquet")],
    ood_min_params: Annotated[
        float | None, typer.Option(help="runs with at least this many non-embedding params are OOD")
    ] = None,
    ood_min_flops: Annotated[float | None, typer.Option(help="runs with at least this compute (6ND) are OOD")] = None,
    ood_runs: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="file of run ids (one a line) that are OOD")
    ] = None,
    id_frac: Annotated[float, typer.Option(help="fraction of the remaining runs held out as ID, per source")] = 0.15,
    seed: Annotated[int, typer.Option(help="seed of the ID draw")] = 0,
) -> None:
    """Write DIR/train.parquet, DIR/id.parquet and DIR/ood.parquet; no run is in two."""
    from ncpl.splits import split_runs
    from ncpl.store import read_runs, write_runs

    runs = read_runs(*paths)
    ids = ood_runs.read_text().split() if ood_runs else None
    with as_flags(id_frac="--id-frac", ood_runs="--ood-runs"):
        split = split_runs(
            runs, id_frac=id_frac, seed=seed, ood_min_params=ood_min_params, ood_min_flops=ood_min_flops, ood_runs=ids
        )
    for name, frame in split.items():
        write_runs(frame, output / f"{name}.parquet")
        counts = ", ".join(f"{s} {n}" for s, n in frame["source"].value_counts().sort_index().items())
        say(f"{name}: {len(frame)} runs ({counts})")
