"""Commands that use a model directory: predict one candidate, score a sweep, tune hyperparameters."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer

from ncpl.cli.output import as_flags, console, fail, print_rows, say, warn, warn_coverage
from ncpl.errors import ConfigError


def predict(
    model_dir: Annotated[Path, typer.Argument(help="a model directory (NCPL or a baseline)")],
    candidate_file: Annotated[
        Path | None,
        typer.Option("--candidate", help="candidate RunConfig, YAML or JSON (e.g. examples/candidate.yaml)"),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", hidden=True, help="deprecated alias of --candidate")
    ] = None,
    curve: Annotated[bool, typer.Option("--curve", help="also the loss at 10%, 20%, ..., 100% of training")] = False,
    observed: Annotated[
        Path | None,
        typer.Option(
            "--observed",
            help="the run's curve measured so far, a CSV / JSONL with columns tokens, loss: the curve (implies --curve) "
            "is conditioned on it (NCPL trained with prefix_points), else shifted to its last points",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Predicted final loss of one candidate config (with interval, p_diverge and curve where the model has them), and
    how far it lies outside the training runs of its source (outside_*: decades beyond their range, 0 inside)."""
    import json

    from ncpl import predictors, schema

    if config is not None:  # `--config` names an experiment YAML in `ncpl train`; here it was the candidate
        if candidate_file is not None:
            raise ConfigError("--config: a deprecated alias of --candidate; give only --candidate")
        console.print(
            "[yellow]note:[/] predict --config is deprecated; use --candidate (train --config is the experiment YAML)",
            highlight=False,
        )
    candidate_file = candidate_file or config
    if candidate_file is None:
        raise ConfigError("--candidate: required; a RunConfig YAML or JSON, e.g. --candidate examples/candidate.yaml")
    model = predictors.load_predictor(model_dir)
    candidate = schema.read_config(candidate_file)
    frame = predictors.as_frame(candidate)
    details = model.predict_details(frame)
    fractions = np.round(np.linspace(0.1, 1.0, 10), 2)
    seen = None
    if observed is not None:
        from ncpl.laws.temporal import read_curve

        curve, (seen_tokens, seen_loss) = True, read_curve(observed)
        seen = [(seen_tokens / candidate.data.tokens, seen_loss)]
        if seen_tokens[-1] > candidate.data.tokens:
            raise ConfigError(
                f"--observed: {observed} runs to {seen_tokens[-1]:.4g} tokens, beyond the candidate's "
                f"data.tokens {candidate.data.tokens:.4g}; give the prefix of this run's curve"
            )
    losses = model.predict_curve(frame, fractions, seen)[0] if curve else None
    result = {k: (float(v) if np.isfinite(v) else None) for k, v in details.iloc[0].items()}
    if seen is not None and result["pred_loss"] is not None:  # given the observed curve, the final loss is its end
        shift = float(losses[-1]) - result["pred_loss"]  # the interval moves with it
        for key in ("pred_loss", "pred_loss_lo", "pred_loss_hi"):
            if result.get(key) is not None:
                result[key] += shift
    if curve:
        result["curve"] = {
            "fraction": fractions.tolist(),
            "tokens": (fractions * candidate.data.tokens).tolist(),
            "loss": losses.tolist(),
        }
    if as_json:
        print(json.dumps(result))
        return
    warn_coverage(model, frame, details, str(candidate_file))
    rows = [(key, "unknown" if value is None else f"{value:.4f}") for key, value in result.items() if key != "curve"]
    if curve:
        rows += [
            (f"loss at {fraction:.0%} ({fraction * candidate.data.tokens:.3g} tokens)", f"{loss:.4f}")
            for fraction, loss in zip(fractions, losses)
        ]
    print_rows(f"{candidate_file} with {model_dir} ({model.name})", ("quantity", "value"), rows)


def score(
    model_dir: Annotated[Path, typer.Argument(help="a model directory (NCPL or a baseline)")],
    sweep: Annotated[
        Path,
        typer.Argument(
            help="candidate configs: .parquet, .csv, .jsonl (flat dotted columns) or .yaml (a list of configs)"
        ),
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Parquet file to write (appears only when complete)")],
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="configs read, predicted and written at a time")
    ] = 4096,
    resume: Annotated[bool, typer.Option("--resume", help="continue a killed run from its finished parts")] = False,
    dtype: Annotated[
        str,
        typer.Option(
            "--dtype",
            help="NCPL's CPU precision: auto (bf16 where the CPU has bf16 units and they beat fp32, else fp32), fp32, bf16 or int8",
        ),
    ] = "auto",
) -> None:
    """Score a sweep: every input column kept, pred_loss (and interval, p_diverge) added. Streams; runs under
    accelerate launch too."""
    import pyarrow.parquet as pq
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ncpl import predictors
    from ncpl.flat import CONFIG_PREFIXES
    from ncpl.predictors.coverage import OUTSIDE
    from ncpl.regressor.precision import DTYPES, resolved_dtype, set_inference_dtype
    from ncpl.scoring import merge_parts, model_identity, parts_folder, process_state, score_file
    from ncpl.sweeps import sweep_rows

    if dtype not in DTYPES:
        fail(f"--dtype: {dtype!r} is not one of {', '.join(DTYPES)}")
    state = process_state()
    model = set_inference_dtype(predictors.load_predictor(model_dir), dtype)
    label, chosen = "scoring", resolved_dtype(model)
    if chosen:
        if state.num_processes > 1:  # `auto` times a matmul in each process: every rank scores in the main one's choice
            from accelerate.utils import broadcast_object_list

            chosen = broadcast_object_list([chosen])[0]
        model, label = set_inference_dtype(model, chosen), f"scoring in {chosen}"
    columns = [TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    total = sweep_rows(sweep)
    model_id = model_identity(model_dir, chosen)
    if state.is_main_process:  # one process clears an earlier run's parts before any scores
        parts_folder(output, resume, sweep, batch_size, model_id)
    state.wait_for_everyone()
    with Progress(*columns, console=console, disable=not state.is_main_process) as progress:
        task = progress.add_task("score", total=total)
        parts = score_file(
            model,
            sweep,
            output,
            batch_size=batch_size,
            resume=True,
            rank=state.process_index,
            world=state.num_processes,
            on_chunk=lambda n: progress.advance(task, n),
            model_id=model_id,
        )
    state.wait_for_everyone()
    if state.is_main_process:
        rows = merge_parts(parts, output)
        say(f"scored {rows} configs -> {output}")
        # only the columns the warnings read, not the whole sweep: the configs' fields the model never saw, and
        # the outside_* columns
        seen = set((model.coverage_ or {}).get("fields", ()))
        names = [
            c
            for c in pq.read_schema(output).names
            if c == "source"
            or c.startswith(OUTSIDE)
            or c == "outside"
            or (c.startswith(CONFIG_PREFIXES) and c not in seen)
        ]
        scored = pd.read_parquet(output, columns=names)
        warn_coverage(model, scored, scored, str(sweep))


def tune(
    model_dir: Annotated[Path, typer.Argument(help="a model directory (NCPL or a baseline)")],
    base: Annotated[Path, typer.Option("--base", help="base RunConfig YAML: every field not searched stays as here")],
    space: Annotated[Path, typer.Option("--space", help="YAML: field -> {low, high[, log]} or {choices: [...]}")],
    fix: Annotated[
        str, typer.Option("--fix", help="fields held at the base's values (the default constraint)")
    ] = "n_params,tokens",
    flops: Annotated[
        float | None, typer.Option("--flops", help="compute budget C = 6ND instead: N is searched, D = C/6N")
    ] = None,
    max_p_diverge: Annotated[
        float | None, typer.Option("--max-p-diverge", help="drop candidates more likely than this to diverge")
    ] = None,
    n: Annotated[int, typer.Option("--n", min=8, help="candidates in the first round (Sobol)")] = 1024,
    top: Annotated[int, typer.Option("--top", min=1, help="configs to show")] = 10,
    seed: Annotated[int, typer.Option(help="seed of the Sobol sequence")] = 0,
    transfer_from: Annotated[
        Path | None,
        typer.Option(
            "--transfer-from",
            help=(
                "RunConfig of a tuned smaller run: its optimizer settings moved by Complete^(d)P (alpha = 1) to the "
                "base's "
                "model.d_model, model.n_layers, batch.tokens and data.tokens, scored as a candidate; the single "
                "global lr "
                "(eps, weight decay) gets the hidden-weight rule"
            ),
        ),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            help=(
                "PNG of the predicted loss over lr x batch tokens through the best pick (the space's ranges, else a "
                "decade "
                "either side), the picks marked"
            ),
        ),
    ] = None,
    runs: Annotated[
        Path | None,
        typer.Option(
            "--runs", help="runs Parquet: with --plot, its runs of the plotted source, N and D drawn by true loss"
        ),
    ] = None,
) -> None:
    """Best hyperparameters under a constraint, by the model's predicted loss; with the StepLaw law's (and a
    transfer's) suggestion, scored."""
    from ncpl import predictors, schema
    from ncpl.store import read_runs
    from ncpl.tuning import load_space, tune_with_suggestions

    if runs is not None and plot is None:
        raise ConfigError("--runs: only drawn on the landscape plot; add --plot OUT.png")
    model = predictors.load_predictor(model_dir)
    base_config = schema.read_config(base)
    with as_flags(
        fix="--fix",
        flops="--flops",
        max_p_diverge="--max-p-diverge",
        tuned="--transfer-from",
        target="--base",
        plot="--plot",
    ):
        result = tune_with_suggestions(
            model,
            base_config,
            load_space(space),
            fix=tuple(f.strip() for f in fix.split(",") if f.strip()),
            flops=flops,
            n=n,
            top=top,
            max_p_diverge=max_p_diverge,
            seed=seed,
            tuned=schema.read_config(transfer_from) if transfer_from else None,
            tuned_label=transfer_from.name if transfer_from else "",
            plot=plot,
            runs=read_runs(runs) if runs else None,
        )
    at = result.slice_at
    if result.drawn is not None and result.drawn.empty:
        warn(
            f"--runs {runs}: no run of source {at['source']} at N = {at['model.n_params']:.3g}, "
            f"D = {at['data.tokens']:.3g}; none drawn (runs_at matches N and D to 1e-6)"
        )
    constraint = (
        f"compute {flops:.3g} FLOPs"
        if flops
        else f"N = {base_config.model.n_params:.3g}, D = {base_config.data.tokens:.3g}"
    )
    for title, frame in (
        (f"top {len(result.best)} of the search ({constraint}) by {model.name}", result.best),
        (
            f"suggestions at the base's N and D, scored by {model.name}",
            result.suggestions.rename_axis("suggestion").reset_index(),
        ),
    ):
        print_rows(
            title,
            tuple(frame.columns),
            [
                [f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v) for v in row]
                for row in frame.itertuples(index=False)
            ],
        )
    if result.ignored:
        warn(
            f"{model.name} ignores {', '.join(result.ignored)}: its prediction does not change over the searched "
            "range, so the search cannot choose them (the picks' values there are arbitrary)"
        )
    warn_coverage(model, result.pick, model.outside_of_training(result.pick), "the best pick")
    if plot is not None:
        say(f"loss landscape -> {plot}")
