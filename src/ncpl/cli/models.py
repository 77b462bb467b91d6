"""Commands that make model directories: fit a baseline, train NCPL, average an ensemble, evaluate predictors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from ncpl.cli.output import as_flags, console, print_rows, say
from ncpl.errors import ConfigError


def fit(
    predictor: Annotated[str, typer.Argument(help="predictor name, e.g. chinchilla")],
    train: Annotated[list[Path], typer.Option("--train", help="runs Parquet file(s) to fit on")],
    output: Annotated[Path, typer.Option("-o", "--output", help="predictor directory to write")],
) -> None:
    """Fit a predictor on runs and save it; prints what was fitted."""
    from ncpl import predictors
    from ncpl.columns import usable
    from ncpl.store import read_runs

    runs = read_runs(*train)
    model = predictors.create(predictor).fit(runs)
    model.save(output)
    ok = runs[usable(runs)]
    error = np.abs(model.predict(ok) - ok["final_loss"].to_numpy())
    state = model.get_state()
    law_fields = ("E", "A", "alpha", "B", "beta") if "laws" in state else ()
    rows = []
    for source, group in ok.groupby("source"):
        law = state.get("laws", {}).get(source, {})
        rows.append(
            (
                str(source),
                str(len(group)),
                *(f"{law[k]:.4g}" for k in law_fields),
                f"{error[(ok['source'] == source).to_numpy()].mean():.4f}",
            )
        )
    print_rows(
        f"{predictor} fitted on {len(runs)} runs -> {output}", ("source", "runs fitted", *law_fields, "train MAE"), rows
    )


def train(
    train_files: Annotated[
        list[Path], typer.Option("--train", help="runs Parquet file(s); several sources train one model jointly")
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="model directory to write (re-run to resume)")],
    val: Annotated[
        Path | None, typer.Option("--val", help="runs that select the checkpoint (default: a seeded 10% of --train)")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="experiment YAML (default configs/cpu.yaml)")] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help=(
                "print parameters, memory per GPU (FSDP, bf16) and optimizer steps per epoch; load no weights, train "
                "nothing"
            ),
        ),
    ] = False,
    accelerate_config: Annotated[Path, typer.Option("--accelerate-config", help="with --dry-run: launch config")] = (
        Path(__file__).resolve().parents[3] / "configs" / "accelerate-fsdp.yaml"
    ),
    num_processes: Annotated[
        int | None,
        typer.Option(
            "--num-processes", min=1, help=("with --dry-run: processes (GPUs) instead of the launch config's")
        ),
    ] = None,
    keep_work: Annotated[
        bool,
        typer.Option(
            "--keep-work", help="keep OUTPUT/work (checkpoints, a few hundred MB) after the model directory is written"
        ),
    ] = False,
) -> None:
    """Train the NCPL regressor (two stages) and save a model directory; OUTPUT/work (checkpoints for resuming) is
    removed once it is complete, its train_log.jsonl kept beside the model."""
    from ncpl.regressor.predictor import NCPL
    from ncpl.store import read_runs

    runs = read_runs(*train_files)
    model = NCPL(config, work_dir=output / "work")
    if dry_run:
        from ncpl.regressor.sizing import accelerate_processes, size

        with as_flags(accelerate_config="--accelerate-config"):
            processes, sharded = accelerate_processes(accelerate_config)
        sizing = size(
            model.config, runs, read_runs(val) if val else None, processes=num_processes or processes, sharded=sharded
        )
        print_rows(
            f"ncpl train of {model.config.backbone} on {len(runs)} runs: a dry run",
            ("quantity", "value"),
            sizing.rows(),
        )
        return
    say(f"training NCPL ({model.config.backbone}, {model.config.encoder} encoder) on {len(runs)} runs -> {output}")
    model.fit(runs, read_runs(val) if val else None)
    model.save(output)
    from accelerate import PartialState

    work = output / "work"  # the others are done with it: training ended on a barrier, and only they save
    if PartialState().is_main_process and not keep_work and work.exists():
        import shutil

        shutil.rmtree(work)
    say(f"saved {output}" + ("" if keep_work else f" (work folder {work} removed; --keep-work keeps it)"))


def ensemble(
    members: Annotated[list[Path], typer.Argument(help="model directories (NCPL or baselines) to average")],
    output: Annotated[Path, typer.Option("-o", "--output", help="ensemble directory to write")],
    weights: Annotated[
        str | None, typer.Option("--weights", help="comma list, one weight a member (default: equal)")
    ] = None,
) -> None:
    """Average several trained predictors into one model directory that predict, score, tune and eval take."""
    from ncpl import predictors
    from ncpl.predictors.coverage import merge_coverage
    from ncpl.predictors.ensemble import Ensemble

    try:
        parsed = [float(w) for w in weights.split(",")] if weights else None
    except ValueError:
        raise ConfigError(f"--weights: got {weights!r}, expected numbers separated by commas, e.g. 1,1") from None
    with as_flags(weights="--weights"):
        model = Ensemble([predictors.load_predictor(directory) for directory in members], parsed)
    model.coverage_ = merge_coverage([member.coverage_ for member in model.members])
    model.save(output)
    say(f"saved an ensemble of {', '.join(m.name for m in model.members)} (weights {model.weights}) -> {output}")


def _predictor_specs(spec: str) -> list[tuple[str, str | None]]:
    """`a,b,label:DIR` -> [(a, None), (b, None), (label, DIR)]: a name is fitted, label:DIR is loaded."""
    out = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, directory = item.partition(":")
        out.append((name, directory or None))
    return out


def eval_predictors(
    train: Annotated[
        list[Path], typer.Option("--train", help="runs Parquet file(s) the fittable predictors are fitted on")
    ],
    test: Annotated[list[str], typer.Option("--test", help="NAME=FILE.parquet, repeatable")],
    output: Annotated[Path, typer.Option("-o", "--output", help="report folder")],
    models: Annotated[
        str,
        typer.Option(
            "--models",
            help=(
                "comma list of predictor names (chinchilla, hparam-law, xgboost, xgboost-residual, "
                "xgboost-hparam-residual), "
                "or LABEL:MODEL_DIR to load"
            ),
        ),
    ] = "chinchilla,xgboost,xgboost-residual",
) -> None:
    """Fit each predictor on TRAIN, report accuracy and hyperparameter regret on each test set."""
    from ncpl import predictors
    from ncpl.evaluate import evaluate
    from ncpl.report import markdown, write_report
    from ncpl.store import read_runs

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
            fitted[name] = predictors.load_predictor(directory)
        else:
            with console.status(f"fitting {name} on {len(runs)} runs"):
                fitted[name] = predictors.create(name).fit(runs)
    report = evaluate(fitted, tests)
    write_report(report, output)
    console.print(markdown(report))
    say(f"report, JSON and parity plots in {output}/")
