"""Commands that apply a scaling law, no model directory needed: transfer hyperparameters, continue a checkpoint
(cpt), extrapolate a loss curve."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer

from ncpl.cli.output import as_flags, console, print_rows, say
from ncpl.errors import ConfigError


def transfer(
    base: Annotated[
        Path,
        typer.Argument(
            help=(
                "YAML: width, depth, batch (tokens), tokens, alpha and per-module lr / eps / weight_decay / "
                "init_variance, beta1, beta2"
            )
        ),
    ],
    width: Annotated[float | None, typer.Option(help="target width")] = None,
    depth: Annotated[float | None, typer.Option(help="target depth")] = None,
    batch: Annotated[float | None, typer.Option(help="target batch, tokens per step")] = None,
    tokens: Annotated[float | None, typer.Option(help="target training tokens")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Complete^(d)P transfer of a tuned base run's per-module hyperparameters to a larger run."""
    import json

    from ncpl.laws.transfer import TransferConfig
    from ncpl.laws.transfer import transfer as transfer_to

    with as_flags(width="--width", depth="--depth", batch="--batch", tokens="--tokens"):
        result = transfer_to(TransferConfig.from_yaml(base), width=width, depth=depth, batch=batch, tokens=tokens)
    if as_json:
        print(json.dumps(result))
        return
    print_rows(
        f"Complete^(d)P transfer of {base}",
        ("quantity", "target"),
        [
            (f"{key}.{name}" if name else key, f"{item:.6g}")
            for key, value in result.items()
            for name, item in (value.items() if isinstance(value, dict) else [(None, value)])
        ],
    )


def cpt(
    loss: Annotated[
        float,
        typer.Option(
            "--loss", help=("the checkpoint's loss, measured like the fitted runs' (same data, tokenizer, loss kind)")
        ),
    ],
    params: Annotated[str, typer.Option("--params", help="the checkpoint's non-embedding parameters, e.g. 430M")],
    planned_tokens: Annotated[str, typer.Option("--planned-tokens", help="tokens of the continuation, e.g. 20B")],
    laws_from: Annotated[
        Path | None,
        typer.Option("--laws", help=("runs to fit the laws on: a runs Parquet file or StepLaw's dense_lr_bs_loss.csv")),
    ] = None,
    laws_json: Annotated[Path | None, typer.Option("--laws-json", help="laws written earlier by --save")] = None,
    save_laws: Annotated[Path | None, typer.Option("--save", help="write the fitted laws to this JSON file")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Peak lr and batch to continue a checkpoint: its loss -> equivalent compute C_eq, laws at C_eq + 6 N D_planned."""
    import json

    from ncpl.field_types import parse_quantity
    from ncpl.laws.cpt import CPTLaws, fit_laws, read_grid

    if (laws_from is None) == (laws_json is None):
        raise ConfigError(
            "--laws / --laws-json: give exactly one: the runs to fit the laws on (a runs Parquet file or "
            "StepLaw's dense_lr_bs_loss.csv), or a laws JSON written by --save"
        )
    counts = {}
    for flag, value in (("--params", params), ("--planned-tokens", planned_tokens)):
        try:
            counts[flag] = float(parse_quantity(value))
        except ValueError as error:
            raise ConfigError(f"{flag}: {error}") from None
    with as_flags(loss="--loss", n_params="--params", planned_tokens="--planned-tokens", path="--laws"):
        laws = CPTLaws.load(laws_json) if laws_json else fit_laws(read_grid(laws_from))
        result = laws.predict(loss, counts["--params"], counts["--planned-tokens"])
    if save_laws:
        laws.save(save_laws)
    if as_json:
        print(json.dumps({"laws": laws.model_dump(), **result}))
        return
    rows = [("L(C)", f"{laws.loss.E:.4f} + {laws.loss.A:.4g} C^-{laws.loss.alpha:.4f}")]
    rows += [
        (name, f"{law.k:.4g} C^{law.c:.4f} N^{law.n:.4f}")
        for name, law in (("lr", laws.lr), ("batch (tokens)", laws.batch))
    ]
    rows.append(("fitted compute range", f"{laws.flops_range[0]:.3g} .. {laws.flops_range[1]:.3g} FLOPs"))
    rows += [(key, f"{value:.4g}") for key, value in result.items()]
    print_rows(
        f"continued pre-training of a {counts['--params']:.3g}-parameter checkpoint at loss {loss} "
        f"for {counts['--planned-tokens']:.3g} tokens ({laws.source} laws, {laws.groups} (N, D) groups)",
        ("quantity", "value"),
        rows,
    )
    if not laws.flops_range[0] <= result["C_total"] <= laws.flops_range[1]:
        console.print("[yellow]note:[/] C_total is outside the fitted compute range: the laws are extrapolated")
    if save_laws:
        say(f"laws saved to {save_laws}")


def _has_lr_column(path: Path) -> bool:
    """A schedule curve (columns step, lr, loss) rather than a tokens/loss prefix; a CSV pandas cannot read (an
    empty file) is neither, and reading it as a prefix says why."""
    if path.suffix != ".csv":
        return False
    try:
        return "lr" in pd.read_csv(path, nrows=0).columns
    except ValueError:
        return False


def extrapolate(
    curve: Annotated[
        Path,
        typer.Argument(
            help=(
                "CSV with columns step, lr (every step from 0 to the horizon), loss (empty where not measured); "
                "or a CSV / JSONL with columns tokens, loss: the observed prefix of a curve, forecast to --until"
            )
        ),
    ],
    fit_on: Annotated[
        list[Path] | None,
        typer.Option(
            "--fit-on",
            help=(
                "step, lr, loss CSV of another run of the same model and data (another schedule), fitted too; "
                "repeatable"
            ),
        ),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="tokens/loss curves: forecast up to this many tokens, e.g. 350B")
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help='print one JSON object: {"step": [...], "loss": [...]} for the steps without a measured loss '
            '(from step 1; tokens/loss curves: {"tokens": ..., "loss": ...})',
        ),
    ] = False,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="PNG to write: measured points and the law's curve")
    ] = None,
    law: Annotated[
        str | None,
        typer.Option(
            "--law",
            help=(
                "multipower (Luo et al. 2025; default with an lr column), annealing (Tissue et al. 2024), "
                "temporal (Xiong et al., position-averaged; default without) or power (E + A t^-a)"
            ),
        ),
    ] = None,
) -> None:
    """Predict the rest of a loss curve: under its lr schedule (step, lr, loss), or from a tokens/loss prefix."""
    from ncpl.plots import figure_format

    for name, path in [("curve", curve), *(("--fit-on", path) for path in fit_on or [])]:
        if not path.is_file():
            raise ConfigError(f"{name}: {path}: curve file not found; give the path of an existing CSV (or JSONL) file")
    with as_flags(name="--law", fit_on="--fit-on", until="--until", plot="--plot"):
        if plot:
            figure_format(plot)
        if _has_lr_column(curve):
            _extrapolate_schedule(curve, fit_on or [], until, as_json, plot, law or "multipower")
        else:
            _extrapolate_prefix(curve, fit_on or [], until, as_json, plot, law or "temporal")


def _extrapolate_schedule(
    curve: Path, fit_on: list[Path], until: str | None, as_json: bool, plot: Path | None, law: str
) -> None:
    import json

    from ncpl.laws.schedule import fit_law
    from ncpl.laws.schedule_io import plot_schedule_forecast, read_schedule_curve

    if until is not None:
        raise ConfigError(
            f"--until: {curve} has an lr column, so its horizon is its last lr row; drop --until (or "
            "add lr rows up to the step you want)"
        )
    target = read_schedule_curve(curve)
    others = [read_schedule_curve(path) for path in fit_on]
    if not target.steps.size and not others:
        raise ConfigError(f"{curve}: column 'loss' is empty; measure some losses or fit other runs with --fit-on")
    fitted, predict = fit_law(law, target, others)
    steps = np.arange(1, len(target.lrs))
    forecast = predict(steps)
    wanted = ~np.isin(steps, target.steps)
    if plot:
        plot_schedule_forecast(target, steps, forecast, plot, others, title=f"{curve.name}: {law} law")
    if as_json:
        print(json.dumps({"step": steps[wanted].tolist(), "loss": forecast[wanted].tolist()}))
        return
    say(
        f"{law} law fitted on {target.steps.size + sum(o.steps.size for o in others)} measured losses "
        f"({1 + len(others)} curves): " + ", ".join(f"{k} {v:.4g}" for k, v in fitted.params.items())
    )
    shown = steps[wanted][np.unique(np.linspace(0, wanted.sum() - 1, 20).astype(int))] if wanted.any() else []
    print_rows(
        f"{law} law on {curve.name}: {wanted.sum()} steps without a measured loss (20 shown; all with --json)",
        ("step", "lr", "predicted loss"),
        [(str(step), f"{target.lrs[step]:.4g}", f"{forecast[step - 1]:.4f}") for step in shown],
    )
    if plot:
        say(f"plot written to {plot}")


def _extrapolate_prefix(
    curve: Path, fit_on: list[Path], until: str | None, as_json: bool, plot: Path | None, law: str
) -> None:
    import json

    from ncpl.field_types import parse_quantity
    from ncpl.laws.temporal import LAWS, forecast_tokens, plot_forecast, read_curve

    if fit_on:
        raise ConfigError(
            f"--fit-on: {curve} has no lr column; other runs can be fitted only with schedule curves "
            "(columns step, lr, loss)"
        )
    if law not in LAWS:
        raise ConfigError(
            f"--law: got {law!r}; a tokens/loss curve takes one of {', '.join(LAWS)} (multipower and "
            "annealing need a step, lr, loss curve)"
        )
    if until is None:
        raise ConfigError(
            f"--until: required for a tokens/loss curve ({curve}); give the tokens to forecast to, e.g. 350B"
        )
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
    if plot:
        plot_forecast(tokens, loss, fitted, end, plot, title=f"{curve.name}: {law} law")
    if as_json:
        print(json.dumps({"tokens": ahead.tolist(), "loss": forecast.tolist()}))
        return
    say(
        f"{law} law fitted on {len(tokens)} points of {curve} ({tokens[0]:.3g} .. {tokens[-1]:.3g} tokens): "
        + ", ".join(f"{k} {v:.4g}" for k, v in fitted.params.items())
    )
    print_rows(
        f"{law} law forecast to {end:.4g} tokens",
        ("tokens", "forecast loss"),
        [(f"{t:.4g}", f"{value:.4f}") for t, value in zip(ahead, forecast)],
    )
    if plot:
        say(f"plot written to {plot}")
