"""`ncpl` command line: data import / show / split, fit."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from ncpl.errors import ConfigError

# rich_markup_mode=None: click's plain help, where a flag shows as `--flag` (typer's rich panels add `<bool>`)
app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Predict pretraining loss from a run's full configuration.")
data_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Import, inspect and split real run logs.")
app.add_typer(data_app, name="data")
console = Console(width=None if sys.stdout.isatty() else 200)  # no wrapping in logs and CI


def fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(2)


def warn(message: str) -> None:
    console.print(f"[yellow]warning:[/] {message}", highlight=False)


def warn_coverage(model, configs: pd.DataFrame, details: pd.DataFrame, what: str) -> None:
    """Say which fields the model never saw in training and which predictions lie outside its training runs."""
    from ncpl.predictors import COVERAGE_AXES, OUTSIDE

    unseen = model.unseen_fields(configs)
    if unseen:
        warn(f"{what}: {', '.join(unseen)} never set in {model.name}'s training runs: the model cannot have learned "
             "their effect")
    if model.coverage_ is None:
        warn(f"{what}: the training range of this model is unknown (saved before it was recorded); re-fit to know how "
             "far a prediction extrapolates")
        return
    outside = details["outside"].to_numpy(float)
    unknown = np.isnan(outside)
    if unknown.any():
        sources = sorted(set(configs["source"].astype(str)[unknown]) - set(model.coverage_["ranges"]))
        warn(f"{what}: {int(unknown.sum())} of {len(details)} configs have no training range"
             + (f" (source {', '.join(sources)} not in the training runs)" if sources else ""))
    beyond = outside > 0
    if beyond.any():
        axes = [f"{label} up to {np.nanmax(np.abs(details[OUTSIDE + axis].to_numpy(float))):.2f}"
                for axis, label in COVERAGE_AXES.items() if (np.abs(details[OUTSIDE + axis].to_numpy(float)) > 0).any()]
        warn(f"{what}: {int(beyond.sum())} of {len(details)} configs lie outside the training runs of their source "
             f"(decades beyond their range: {', '.join(axes)}); the loss there is extrapolated")


@data_app.command("import")
def data_import(
    source: Annotated[str, typer.Argument(help="steplaw, steplaw-moe, marin, gadre, gadre-grid, gemstones, misfitting, epoch, table")],
    paths: Annotated[list[Path], typer.Argument(help="raw files (or the Gadre models folder)")],
    output: Annotated[Path, typer.Option("-o", "--output", help="runs Parquet file to write")],
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="skip and count malformed rows instead of failing")] = False,
) -> None:
    """Read raw logs of one source into the canonical runs Parquet file."""
    from ncpl.sources import ImportFailed, import_runs
    from ncpl.store import write_runs

    try:
        result = import_runs(source, paths, skip_bad=skip_bad)
    except (ImportFailed, ConfigError) as error:
        fail(str(error))
    if not result.records:
        fail(f"{result.summary()}: no records to write")
    write_runs(result.records, output)
    console.print(result.summary())
    console.print(f"wrote {len(result.records)} runs to {output}")


def _range(values: pd.Series, fmt: str = ".3g") -> str:
    values = pd.to_numeric(values, errors="coerce").dropna()
    return "-" if values.empty else f"{values.min():{fmt}} .. {values.max():{fmt}}"


@data_app.command("show")
def data_show(paths: Annotated[list[Path], typer.Argument(help="runs Parquet files")]) -> None:
    """Runs per source with the ranges of N, D, lr, batch and loss, curves, diverged and unstable runs."""
    from ncpl.store import read_runs
    from ncpl.unstable import unstable

    try:
        runs = read_runs(*paths)
    except ConfigError as error:
        fail(str(error))
    table = Table(title=f"{len(runs)} runs in {', '.join(map(str, paths))}")
    for header in ("source", "runs", "loss kind", "N (non-emb)", "D (tokens)", "lr", "batch (tokens)", "final loss", "curves", "diverged",
                   "unstable", "optimizers"):
        table.add_column(header)
    runs["unstable"] = unstable(runs.reset_index(drop=True)).to_numpy()  # blew up below the divergence rule (ncpl.unstable)
    for source, group in runs.groupby("source"):
        curves = group["curve_loss"].notna().sum() if "curve_loss" in group else 0
        table.add_row(
            str(source), str(len(group)), ",".join(sorted(group["loss_kind"].unique())),
            _range(group["model.n_params"]), _range(group["data.tokens"]),
            _range(group.get("optimizer.lr", pd.Series(dtype=float))), _range(group.get("batch.tokens", pd.Series(dtype=float))),
            _range(group["final_loss"][~group["diverged"]], ".3f"), str(curves), str(int(group["diverged"].sum())),
            str(int(group["unstable"].sum())), str(group["optimizer.name"].nunique()),
        )
    console.print(table)


@data_app.command("split")
def data_split(
    paths: Annotated[list[Path], typer.Argument(help="runs Parquet files")],
    output: Annotated[Path, typer.Option("-o", "--output", help="folder for train/id/ood.parquet")],
    ood_min_params: Annotated[Optional[float], typer.Option(help="runs with at least this many non-embedding params are OOD")] = None,
    ood_min_flops: Annotated[Optional[float], typer.Option(help="runs with at least this compute (6ND) are OOD")] = None,
    ood_runs: Annotated[Optional[Path], typer.Option(help="file of run ids (one a line) that are OOD")] = None,
    id_frac: Annotated[float, typer.Option(help="fraction of the remaining runs held out as ID, per source")] = 0.15,
    seed: Annotated[int, typer.Option(help="seed of the ID draw")] = 0,
) -> None:
    """Write DIR/train.parquet, DIR/id.parquet and DIR/ood.parquet; no run is in two."""
    from ncpl.splits import split_runs
    from ncpl.store import read_runs, write_runs

    try:
        runs = read_runs(*paths)
        ids = ood_runs.read_text().split() if ood_runs else None
        split = split_runs(runs, id_frac=id_frac, seed=seed, ood_min_params=ood_min_params, ood_min_flops=ood_min_flops, ood_runs=ids)
    except (ConfigError, ValueError, FileNotFoundError) as error:
        fail(str(error))
    for name, frame in split.items():
        write_runs(frame, output / f"{name}.parquet")
        console.print(f"{name}: {len(frame)} runs ({', '.join(f'{s} {n}' for s, n in frame['source'].value_counts().sort_index().items())})")


@app.command()
def fit(
    predictor: Annotated[str, typer.Argument(help="predictor name, e.g. chinchilla")],
    train: Annotated[list[Path], typer.Option("--train", help="runs Parquet file(s) to fit on")],
    output: Annotated[Path, typer.Option("-o", "--output", help="predictor directory to write")],
) -> None:
    """Fit a predictor on runs and save it; prints what was fitted."""
    from ncpl import predictors
    from ncpl.columns import usable
    from ncpl.store import read_runs

    try:
        runs = read_runs(*train)
        model = predictors.create(predictor).fit(runs)
    except ConfigError as error:
        fail(str(error))
    model.save(output)
    ok = runs[usable(runs)]
    error = np.abs(model.predict(ok) - ok["final_loss"].to_numpy())
    table = Table(title=f"{predictor} fitted on {len(runs)} runs -> {output}")
    state = model.get_state()
    law_fields = ("E", "A", "alpha", "B", "beta") if "laws" in state else ()
    for header in ("source", "runs fitted", *law_fields, "train MAE"):
        table.add_column(header)
    for source, group in ok.groupby("source"):
        law = state.get("laws", {}).get(source, {})
        table.add_row(str(source), str(len(group)), *(f"{law[k]:.4g}" for k in law_fields), f"{error[(ok['source'] == source).to_numpy()].mean():.4f}")
    console.print(table)


@app.command()
def train(
    train_files: Annotated[list[Path], typer.Option("--train", help="runs Parquet file(s); several sources train one model jointly")],
    output: Annotated[Path, typer.Option("-o", "--output", help="model directory to write (re-run to resume)")],
    val: Annotated[Optional[Path], typer.Option("--val", help="runs that select the checkpoint (default: a seeded 10% of --train)")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="experiment YAML (default configs/cpu.yaml)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help=(
        "print parameters, memory per GPU (FSDP, bf16) and optimizer steps per epoch; load no weights, train nothing"
    ))] = False,
    accelerate_config: Annotated[Path, typer.Option("--accelerate-config", help="with --dry-run: launch config")] = (
        Path(__file__).resolve().parents[2] / "configs" / "accelerate-fsdp.yaml"
    ),
    num_processes: Annotated[Optional[int], typer.Option("--num-processes", min=1, help=(
        "with --dry-run: processes (GPUs) instead of the launch config's"))] = None,
    keep_work: Annotated[bool, typer.Option("--keep-work", help="keep OUTPUT/work (checkpoints, a few hundred MB) after "
                                                                 "the model directory is written")] = False,
) -> None:
    """Train the NCPL regressor (two stages) and save a model directory; OUTPUT/work (checkpoints for resuming) is
    removed once it is complete, its train_log.jsonl kept beside the model."""
    from ncpl.regressor.predictor import NCPL
    from ncpl.store import read_runs

    try:
        runs = read_runs(*train_files)
        model = NCPL(config, work_dir=output / "work")
        if dry_run:
            from ncpl.regressor.sizing import accelerate_processes, size

            processes, sharded = accelerate_processes(accelerate_config)
            sizing = size(model.config, runs, read_runs(val) if val else None, processes=num_processes or processes,
                          sharded=sharded)
            table = Table(title=f"ncpl train of {model.config.backbone} on {len(runs)} runs: a dry run")
            table.add_column("quantity")
            table.add_column("value")
            for row in sizing.rows():
                table.add_row(*row)
            console.print(table)
            return
        console.print(f"training NCPL ({model.config.backbone}, {model.config.encoder} encoder) on {len(runs)} runs -> {output}")
        model.fit(runs, read_runs(val) if val else None)
    except ConfigError as error:
        fail(str(error))
    model.save(output)
    work = output / "work"
    if not keep_work and work.exists():
        import shutil

        for k, log in enumerate(model.train_logs):  # the metrics of the fit stay beside its plots
            if log.exists():
                shutil.copyfile(log, output / ("train_log.jsonl" if k == 0 else f"train_log.member-{k}.jsonl"))
        shutil.rmtree(work)
    console.print(f"saved {output}" + ("" if keep_work else f" (work folder {work} removed; --keep-work keeps it)"))


@app.command()
def ensemble(
    members: Annotated[list[Path], typer.Argument(help="model directories (NCPL or baselines) to average")],
    output: Annotated[Path, typer.Option("-o", "--output", help="ensemble directory to write")],
    weights: Annotated[Optional[str], typer.Option("--weights", help="comma list, one weight a member (default: equal)")] = None,
) -> None:
    """Average several trained predictors into one model directory that predict, score, tune and eval take."""
    from ncpl import predictors
    from ncpl.predictors.ensemble import Ensemble

    try:
        try:
            parsed = [float(w) for w in weights.split(",")] if weights else None
        except ValueError:
            raise ConfigError(f"--weights: got {weights!r}, expected numbers separated by commas, e.g. 1,1") from None
        model = Ensemble([predictors.load(directory) for directory in members], parsed)
        model.coverage_ = predictors.merge_coverage([member.coverage_ for member in model.members])
    except ConfigError as error:
        fail(str(error))
    model.save(output)
    console.print(f"saved an ensemble of {', '.join(m.name for m in model.members)} (weights {model.weights}) -> {output}")


@app.command()
def predict(
    model_dir: Annotated[Path, typer.Argument(help="a model directory (NCPL or a baseline)")],
    candidate_file: Annotated[Optional[Path], typer.Option("--candidate", help="candidate RunConfig, YAML or JSON (e.g. examples/candidate.yaml)")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", hidden=True, help="deprecated alias of --candidate")] = None,
    curve: Annotated[bool, typer.Option("--curve", help="also the loss at 10%, 20%, ..., 100% of training")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Predicted final loss of one candidate config (with interval, p_diverge and curve where the model has them), and
    how far it lies outside the training runs of its source (outside_*: decades beyond their range, 0 inside)."""
    import json

    from ncpl import predictors, schema

    try:
        if config is not None:  # `--config` names an experiment YAML in `ncpl train`; here it was the candidate
            if candidate_file is not None:
                raise ConfigError("--config: a deprecated alias of --candidate; give only --candidate")
            console.print("[yellow]note:[/] predict --config is deprecated; use --candidate (train --config is the "
                          "experiment YAML)", highlight=False)
        candidate_file = candidate_file or config
        if candidate_file is None:
            raise ConfigError("--candidate: required; a RunConfig YAML or JSON, e.g. --candidate examples/candidate.yaml")
        model = predictors.load(model_dir)
        candidate = schema.load(candidate_file)
        frame = predictors.as_frame(candidate)
        details = model.predict_details(frame)
        fractions = np.round(np.linspace(0.1, 1.0, 10), 2)
        losses = model.predict_curve(frame, fractions)[0] if curve else None
    except ConfigError as error:
        fail(str(error))
    result = {k: (float(v) if np.isfinite(v) else None) for k, v in details.iloc[0].items()}
    if curve:
        result["curve"] = {"fraction": fractions.tolist(), "tokens": (fractions * candidate.data.tokens).tolist(), "loss": losses.tolist()}
    if as_json:
        print(json.dumps(result))
        return
    warn_coverage(model, frame, details, str(candidate_file))
    table = Table(title=f"{candidate_file} with {model_dir} ({model.name})")
    for header in ("quantity", "value"):
        table.add_column(header)
    for key, value in result.items():
        if key != "curve":
            table.add_row(key, "unknown" if value is None else f"{value:.4f}")
    if curve:
        for fraction, loss in zip(fractions, losses):
            table.add_row(f"loss at {fraction:.0%} ({fraction * candidate.data.tokens:.3g} tokens)", f"{loss:.4f}")
    console.print(table)


@app.command()
def score(
    model_dir: Annotated[Path, typer.Argument(help="a model directory (NCPL or a baseline)")],
    sweep: Annotated[Path, typer.Argument(help="candidate configs: .parquet, .csv, .jsonl (flat dotted columns) or .yaml (a list of configs)")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Parquet file to write (appears only when complete)")],
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="configs read, predicted and written at a time")] = 4096,
    resume: Annotated[bool, typer.Option("--resume", help="continue a killed run from its finished parts")] = False,
    dtype: Annotated[str, typer.Option("--dtype", help="NCPL's CPU precision: auto (bf16 where the CPU has bf16 units, "
                                                       "else fp32), fp32, bf16 or int8")] = "auto",
) -> None:
    """Score a sweep: every input column kept, pred_loss (and interval, p_diverge) added. Streams; runs under accelerate launch too."""
    from accelerate import PartialState
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ncpl import predictors
    from ncpl.regressor.precision import DTYPES, set_inference_dtype
    from ncpl.scoring import CONFIG_SECTIONS, merge_parts, parts_folder, score_file, sweep_rows

    if dtype not in DTYPES:
        fail(f"--dtype: {dtype!r} is not one of {', '.join(DTYPES)}")
    state = PartialState()
    columns = [TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    try:
        model = set_inference_dtype(predictors.load(model_dir), dtype)
        total = sweep_rows(sweep)
        if state.is_main_process:  # one process clears an earlier run's parts before any scores
            parts_folder(output, resume)
        state.wait_for_everyone()
        with Progress(*columns, console=console, disable=not state.is_main_process) as progress:
            task = progress.add_task("score", total=total)
            parts = score_file(model, sweep, output, batch_size=batch_size, resume=True, rank=state.process_index,
                               world=state.num_processes, on_chunk=lambda n: progress.advance(task, n))
        state.wait_for_everyone()
        if state.is_main_process:
            rows = merge_parts(parts, output)
            console.print(f"scored {rows} configs -> {output}")
            import pyarrow.parquet as pq

            from ncpl.predictors import OUTSIDE

            # only the columns the warnings read, not the whole sweep: the configs' fields the model never saw, and
            # the outside_* columns
            seen = set((model.coverage_ or {}).get("fields", ()))
            names = [c for c in pq.read_schema(output).names if c == "source" or c.startswith(OUTSIDE) or c == "outside"
                     or (c.startswith(CONFIG_SECTIONS) and c not in seen)]
            scored = pd.read_parquet(output, columns=names)
            warn_coverage(model, scored, scored, str(sweep))
    except ConfigError as error:
        fail(str(error))


@app.command()
def tune(
    model_dir: Annotated[Path, typer.Argument(help="a model directory (NCPL or a baseline)")],
    base: Annotated[Path, typer.Option("--base", help="base RunConfig YAML: every field not searched stays as here")],
    space: Annotated[Path, typer.Option("--space", help="YAML: field -> {low, high[, log]} or {choices: [...]}")],
    fix: Annotated[str, typer.Option("--fix", help="fields held at the base's values (the default constraint)")] = "n_params,tokens",
    flops: Annotated[Optional[float], typer.Option("--flops", help="compute budget C = 6ND instead: N is searched, D = C/6N")] = None,
    max_p_diverge: Annotated[Optional[float], typer.Option("--max-p-diverge", help="drop candidates more likely than this to diverge")] = None,
    n: Annotated[int, typer.Option("--n", min=8, help="candidates in the first round (Sobol)")] = 1024,
    top: Annotated[int, typer.Option("--top", min=1, help="configs to show")] = 10,
    seed: Annotated[int, typer.Option(help="seed of the Sobol sequence")] = 0,
    transfer_from: Annotated[Optional[Path], typer.Option("--transfer-from", help=(
        "RunConfig of a tuned smaller run: its optimizer settings moved by Complete^(d)P (alpha = 1) to the base's "
        "model.d_model, model.n_layers, batch.tokens and data.tokens, scored as a candidate; the single global lr "
        "(eps, weight decay) gets the hidden-weight rule"))] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help=(
        "PNG of the predicted loss over lr x batch tokens through the best pick (the space's ranges, else a decade "
        "either side), the picks marked"))] = None,
    runs: Annotated[Optional[Path], typer.Option("--runs", help="runs Parquet: with --plot, its runs of the plotted source, N and D drawn by true loss")] = None,
) -> None:
    """Best hyperparameters under a constraint, by the model's predicted loss; with the StepLaw law's (and a transfer's) suggestion, scored."""
    from ncpl import predictors, schema
    from ncpl.tuning import (
        ALIASES,
        BATCH,
        LR,
        ignored_fields,
        landscape,
        load_space,
        runs_at,
        score_suggestions,
        steplaw_suggestion,
        transfer_suggestion,
    )
    from ncpl.tuning import tune as search

    try:
        if runs is not None and plot is None:
            raise ConfigError("--runs: only drawn on the landscape plot; add --plot OUT.png")
        fixed = {ALIASES.get(f.strip(), f.strip()) for f in fix.split(",") if f.strip()}
        unknown = fixed - set(ALIASES.values())
        if unknown:
            raise ConfigError(f"--fix: {sorted(unknown)} not supported; fix n_params,tokens or use --flops")
        model = predictors.load(model_dir)
        base_config = schema.load(base)
        dims = load_space(space)
        clash = fixed & {d.field for d in dims}
        if clash and flops is None:
            raise ConfigError(f"--fix {fix}: {sorted(clash)} are also in the search space {space}")
        best = search(model, base_config, dims, flops=flops, n=n, top=top, max_p_diverge=max_p_diverge, seed=seed)
        ignored = ignored_fields(model, base_config, dims, best.iloc[0], flops)
        suggestions = {"StepLaw law": steplaw_suggestion(base_config)}
        if transfer_from is not None:
            suggestions[f"Complete^(d)P from {transfer_from.name}"] = transfer_suggestion(schema.load(transfer_from), base_config)
        scored = score_suggestions(model, base_config, suggestions)
        if plot is not None:
            from ncpl.plots import loss_landscape
            from ncpl.store import read_runs

            lr_axis, batch_axis, loss, at = landscape(model, base_config, dims, best.iloc[0], flops=flops)
            drawn = runs_at(read_runs(runs), at) if runs else None
            if drawn is not None and drawn.empty:
                warn(f"--runs {runs}: no run of source {at['source']} at N = {at['model.n_params']:.3g}, "
                     f"D = {at['data.tokens']:.3g}; none drawn (runs_at matches N and D to 1e-6)")
            on_slice = {**suggestions, "StepLaw law": steplaw_suggestion(at)}  # scored on the plotted slice, as the map is
            picks = pd.concat([pd.DataFrame({LR: at[LR], BATCH: at[BATCH], "pred_loss": best["pred_loss"].iloc[0]}, index=["tuner best"]),
                               score_suggestions(model, at, on_slice)])
            loss_landscape(lr_axis, batch_axis, loss, plot, picks=picks, runs=drawn if drawn is not None and len(drawn) else None,
                           title=f"{at['source']}: {model.name} loss at N = {at['model.n_params']:.3g}, D = {at['data.tokens']:.3g}")
    except ConfigError as error:
        fail(str(error))
    constraint = f"compute {flops:.3g} FLOPs" if flops else f"N = {base_config.model.n_params:.3g}, D = {base_config.data.tokens:.3g}"
    for title, frame in ((f"top {len(best)} of the search ({constraint}) by {model.name}", best),
                         (f"suggestions at the base's N and D, scored by {model.name}", scored.rename_axis("suggestion").reset_index())):
        table = Table(title=title)
        for column in frame.columns:
            table.add_column(column)
        for row in frame.itertuples(index=False):
            table.add_row(*(f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v) for v in row))
        console.print(table)
    if ignored:
        warn(f"{model.name} ignores {', '.join(ignored)}: its prediction does not change over the searched range, so "
             "the search cannot choose them (the picks' values there are arbitrary)")
    pick = pd.DataFrame([{**schema.config_to_flat(base_config), **best.iloc[0].to_dict()}])
    warn_coverage(model, pick, model.outside_of_training(pick), "the best pick")
    if plot is not None:
        console.print(f"loss landscape -> {plot}")


@app.command("transfer")
def transfer_cmd(
    base: Annotated[Path, typer.Argument(help="YAML: width, depth, batch (tokens), tokens, alpha and per-module lr / eps / weight_decay / init_variance, beta1, beta2")],
    width: Annotated[Optional[float], typer.Option(help="target width")] = None,
    depth: Annotated[Optional[float], typer.Option(help="target depth")] = None,
    batch: Annotated[Optional[float], typer.Option(help="target batch, tokens per step")] = None,
    tokens: Annotated[Optional[float], typer.Option(help="target training tokens")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Complete^(d)P transfer of a tuned base run's per-module hyperparameters to a larger run."""
    import json

    from ncpl.laws.transfer import TransferConfig, transfer

    try:
        result = transfer(TransferConfig.from_yaml(base), width=width, depth=depth, batch=batch, tokens=tokens)
    except ConfigError as error:
        fail(str(error))
    if as_json:
        print(json.dumps(result))
        return
    table = Table(title=f"Complete^(d)P transfer of {base}")
    table.add_column("quantity")
    table.add_column("target")
    for key, value in result.items():
        for name, item in (value.items() if isinstance(value, dict) else [(None, value)]):
            table.add_row(f"{key}.{name}" if name else key, f"{item:.6g}")
    console.print(table)


@app.command("cpt")
def cpt_cmd(
    loss: Annotated[float, typer.Option("--loss", help="the checkpoint's loss, measured like the fitted runs' (same data, tokenizer, loss kind)")],
    params: Annotated[str, typer.Option("--params", help="the checkpoint's non-embedding parameters, e.g. 430M")],
    planned_tokens: Annotated[str, typer.Option("--planned-tokens", help="tokens of the continuation, e.g. 20B")],
    laws_from: Annotated[Optional[Path], typer.Option("--laws", help="runs to fit the laws on: a runs Parquet file or StepLaw's dense_lr_bs_loss.csv")] = None,
    laws_json: Annotated[Optional[Path], typer.Option("--laws-json", help="laws written earlier by --save")] = None,
    save_laws: Annotated[Optional[Path], typer.Option("--save", help="write the fitted laws to this JSON file")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Peak lr and batch to continue a checkpoint: its loss -> equivalent compute C_eq, laws at C_eq + 6 N D_planned."""
    import json

    from ncpl.laws.cpt import CPTLaws, fit_laws, read_grid
    from ncpl.schema import parse_quantity

    try:
        if (laws_from is None) == (laws_json is None):
            raise ConfigError("--laws / --laws-json: give exactly one: the runs to fit the laws on (a runs Parquet file or "
                              "StepLaw's dense_lr_bs_loss.csv), or a laws JSON written by --save")
        counts = {}
        for flag, value in (("--params", params), ("--planned-tokens", planned_tokens)):
            try:
                counts[flag] = float(parse_quantity(value))
            except ValueError as error:
                raise ConfigError(f"{flag}: {error}") from None
        laws = CPTLaws.load(laws_json) if laws_json else fit_laws(read_grid(laws_from))
        result = laws.predict(loss, counts["--params"], counts["--planned-tokens"])
    except ConfigError as error:
        fail(str(error))
    if save_laws:
        laws.save(save_laws)
    if as_json:
        print(json.dumps({"laws": laws.model_dump(), **result}))
        return
    table = Table(title=f"continued pre-training of a {counts['--params']:.3g}-parameter checkpoint at loss {loss} "
                        f"for {counts['--planned-tokens']:.3g} tokens ({laws.source} laws, {laws.groups} (N, D) groups)")
    table.add_column("quantity")
    table.add_column("value")
    table.add_row("L(C)", f"{laws.loss.E:.4f} + {laws.loss.A:.4g} C^-{laws.loss.alpha:.4f}")
    for name, law in (("lr", laws.lr), ("batch (tokens)", laws.batch)):
        table.add_row(name, f"{law.k:.4g} C^{law.c:.4f} N^{law.n:.4f}")
    table.add_row("fitted compute range", f"{laws.flops_range[0]:.3g} .. {laws.flops_range[1]:.3g} FLOPs")
    for key, value in result.items():
        table.add_row(key, f"{value:.4g}")
    console.print(table)
    if not laws.flops_range[0] <= result["C_total"] <= laws.flops_range[1]:
        console.print("[yellow]note:[/] C_total is outside the fitted compute range: the laws are extrapolated")
    if save_laws:
        console.print(f"laws saved to {save_laws}")


def _has_lr_column(path: Path) -> bool:
    """A schedule curve (columns step, lr, loss) rather than a tokens/loss prefix."""
    if not path.exists() or path.suffix != ".csv":
        return False
    return "lr" in pd.read_csv(path, nrows=0).columns


@app.command()
def extrapolate(
    curve: Annotated[Path, typer.Argument(help=(
        "CSV with columns step, lr (every step from 0 to the horizon), loss (empty where not measured); or a CSV / JSONL "
        "with columns tokens, loss: the observed prefix of a curve, forecast to --until"))],
    fit_on: Annotated[Optional[list[Path]], typer.Option("--fit-on", help=(
        "step, lr, loss CSV of another run of the same model and data (another schedule), fitted too; repeatable"))] = None,
    until: Annotated[Optional[str], typer.Option("--until", help="tokens/loss curves: forecast up to this many tokens, e.g. 350B")] = None,
    as_json: Annotated[bool, typer.Option("--json", help=(
        'print one JSON object: {"step": [...], "loss": [...]} for the steps without a measured loss (from step 1; '
        'tokens/loss curves: {"tokens": ..., "loss": ...})'))] = False,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="PNG to write: measured points and the law's curve")] = None,
    law: Annotated[Optional[str], typer.Option("--law", help=(
        "multipower (Luo et al. 2025; default with an lr column), annealing (Tissue et al. 2024), temporal (Xiong et al., "
        "position-averaged; default without) or power (E + A t^-a)"))] = None,
) -> None:
    """Predict the rest of a loss curve: under its lr schedule (step, lr, loss), or from a tokens/loss prefix."""
    if _has_lr_column(curve):
        _extrapolate_schedule(curve, fit_on or [], until, as_json, plot, law or "multipower")
    else:
        _extrapolate_prefix(curve, fit_on or [], until, as_json, plot, law or "temporal")


def _extrapolate_schedule(curve: Path, fit_on: list[Path], until: str | None, as_json: bool, plot: Path | None,
                          law: str) -> None:
    import json

    from ncpl.laws.schedule import fit_law, plot_schedule_forecast, read_schedule_curve

    try:
        if until is not None:
            raise ConfigError(f"--until: {curve} has an lr column, so its horizon is its last lr row; drop --until (or "
                              "add lr rows up to the step you want)")
        target = read_schedule_curve(curve)
        others = [read_schedule_curve(path) for path in fit_on]
        if not target.steps.size and not others:
            raise ConfigError(f"{curve}: column 'loss' is empty; measure some losses or fit other runs with --fit-on")
        fitted, predict = fit_law(law, target, others)
        steps = np.arange(1, len(target.lrs))
        forecast = predict(steps)
    except ConfigError as error:
        fail(str(error))
    wanted = ~np.isin(steps, target.steps)
    if plot:
        plot_schedule_forecast(target, steps, forecast, plot, others, title=f"{curve.name}: {law} law")
    if as_json:
        print(json.dumps({"step": steps[wanted].tolist(), "loss": forecast[wanted].tolist()}))
        return
    console.print(f"{law} law fitted on {target.steps.size + sum(o.steps.size for o in others)} measured losses "
                  f"({1 + len(others)} curves): " + ", ".join(f"{k} {v:.4g}" for k, v in fitted.params.items()))
    shown = steps[wanted][np.unique(np.linspace(0, wanted.sum() - 1, 20).astype(int))] if wanted.any() else []
    table = Table(title=f"{law} law on {curve.name}: {wanted.sum()} steps without a measured loss (20 shown; all with --json)")
    for header in ("step", "lr", "predicted loss"):
        table.add_column(header)
    for step in shown:
        table.add_row(str(step), f"{target.lrs[step]:.4g}", f"{forecast[step - 1]:.4f}")
    console.print(table)
    if plot:
        console.print(f"plot written to {plot}")


def _extrapolate_prefix(curve: Path, fit_on: list[Path], until: str | None, as_json: bool, plot: Path | None,
                        law: str) -> None:
    import json

    from ncpl.laws.temporal import LAWS, forecast_tokens, plot_forecast, read_curve
    from ncpl.schema import parse_quantity

    try:
        if fit_on:
            raise ConfigError(f"--fit-on: {curve} has no lr column; other runs can be fitted only with schedule curves "
                              "(columns step, lr, loss)")
        if law not in LAWS:
            raise ConfigError(f"--law: got {law!r}; a tokens/loss curve takes one of {', '.join(LAWS)} (multipower and "
                              "annealing need a step, lr, loss curve)")
        if until is None:
            raise ConfigError(f"--until: required for a tokens/loss curve ({curve}); give the tokens to forecast to, e.g. 350B")
        try:
            end = float(parse_quantity(until))
        except ValueError as error:
            raise ConfigError(f"--until: {error}") from None
        tokens, loss = read_curve(curve)
        ahead = forecast_tokens(tokens, end)
        try:
            fitted = LAWS[law]().fit(tokens, loss)
        except ConfigError as error:
            raise ConfigError(f"{curve}: {error}") from None
        forecast = fitted.predict(ahead)
    except ConfigError as error:
        fail(str(error))
    if plot:
        plot_forecast(tokens, loss, fitted, end, plot, title=f"{curve.name}: {law} law")
    if as_json:
        print(json.dumps({"tokens": ahead.tolist(), "loss": forecast.tolist()}))
        return
    console.print(f"{law} law fitted on {len(tokens)} points of {curve} ({tokens[0]:.3g} .. {tokens[-1]:.3g} tokens): "
                  + ", ".join(f"{k} {v:.4g}" for k, v in fitted.params.items()))
    table = Table(title=f"{law} law forecast to {end:.4g} tokens")
    table.add_column("tokens")
    table.add_column("forecast loss")
    for t, value in zip(ahead, forecast):
        table.add_row(f"{t:.4g}", f"{value:.4f}")
    console.print(table)
    if plot:
        console.print(f"plot written to {plot}")


def _predictor_specs(spec: str) -> list[tuple[str, str | None]]:
    """`a,b,label:DIR` -> [(a, None), (b, None), (label, DIR)]: a name is fitted, label:DIR is loaded."""
    out = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, directory = item.partition(":")
        out.append((name, directory or None))
    return out


@app.command("eval")
def evaluate_cmd(
    train: Annotated[list[Path], typer.Option("--train", help="runs Parquet file(s) the fittable predictors are fitted on")],
    test: Annotated[list[str], typer.Option("--test", help="NAME=FILE.parquet, repeatable")],
    output: Annotated[Path, typer.Option("-o", "--output", help="report folder")],
    models: Annotated[str, typer.Option("--models", help="comma list of predictor names (chinchilla, hparam-law, xgboost, xgboost-residual, xgboost-hparam-residual), or LABEL:MODEL_DIR to load")] = "chinchilla,xgboost,xgboost-residual",
) -> None:
    """Fit each predictor on TRAIN, report accuracy and hyperparameter regret on each test set."""
    from ncpl import predictors
    from ncpl.evaluate import evaluate, markdown, write_report
    from ncpl.store import read_runs

    try:
        tests = {}
        for item in test:
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                raise ConfigError(f"--test: got {item!r}, expected NAME=FILE.parquet")
            tests[name] = read_runs(path)
        runs = read_runs(*train)
        fitted = {}
        for name, directory in _predictor_specs(models):
            if directory:
                fitted[name] = predictors.load(directory)
            else:
                with console.status(f"fitting {name} on {len(runs)} runs"):
                    fitted[name] = predictors.create(name).fit(runs)
        report = evaluate(fitted, tests)
    except ConfigError as error:
        fail(str(error))
    write_report(report, output)
    console.print(markdown(report))
    console.print(f"report, JSON and parity plots in {output}/")


if __name__ == "__main__":
    app()
