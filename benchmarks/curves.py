"""Loss curves from the configuration alone (NCPL, Chinchilla along the curve) against laws fitted to
the observed start of each curve (power law, temporal law), on real Gemstones, (Mis)Fitting and Multi-Power curves.

    python benchmarks/curves.py [--config configs/cpu-curves.yaml] [--shared ../shared/data] [--model DIR]
                                [--stage dev|test] [--tag NAME] [--seed N] [--keep-work]

Test splits, per source: OOD = the larger shapes (Gemstones N > 4e8: 1024x28, 1280x15, 1792x7, 768x45;
(Mis)Fitting N >= 2e8), ID = a seeded 15% of the rest; Multi-Power (two sizes, nine schedules
each) trains on its protocol's three fit curves per size and tests the other six, unseen
schedules; NCPL and Chinchilla are fitted on the rest, one NCPL model for every source. `--stage dev`
(choose settings here) splits the Gemstones and (Mis)Fitting training runs the way
benchmarks/ncpl_accuracy.py does: dev-OOD = each source's largest training sizes (at least 0.1
decades above the rest), dev-ID = a seeded 15% of the rest, fitted on what remains; Multi-Power's
dev split holds its fit curves' one step schedule (wsdcon_9: 3e-4, then 9e-5 from step 8000; both
sizes) out and trains on the other two, so a choice sees an unseen schedule without touching the six
test schedules. The test stage writes benchmarks/results/curves.{md,json}, a plot of predicted and true
curves per test set, and the table into README.md between the curves markers (with --seed, another seed
of the same model: curves-TAG-seedN.{md,json} only); the dev stage writes curves-dev-TAG.{md,json} only.
The model and its report stay under --work/STAGE-TAG; its checkpoints (an interrupted training resumes from them)
are removed at the end unless --keep-work.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import ROOT, SEED, development, load, machine, update_readme  # noqa: E402
from schedule_laws import FIT  # noqa: E402

from ncpl import predictors  # noqa: E402
from ncpl.atomic import write_text  # noqa: E402
from ncpl.columns import usable  # noqa: E402
from ncpl.evaluate import evaluate  # noqa: E402
from ncpl.laws.schedule import CurveShape  # noqa: E402
from ncpl.predictors.hparam_law import residual_law  # noqa: E402
from ncpl.regressor.dataset import Targets  # noqa: E402
from ncpl.regressor.predictor import NCPL  # noqa: E402
from ncpl.regressor.train_config import TrainConfig  # noqa: E402
from ncpl.report import write_report  # noqa: E402
from ncpl.splits import split_runs  # noqa: E402
from ncpl.store import read_runs  # noqa: E402

OOD_PARAMS = {"gemstones": 4e8, "misfitting": 2e8}
DEV_HELD = "wsdcon_9"  # the fit curves' step schedule: the dev stage predicts it from cosine_24000 + constant_24000


def splits(shared: Path, stage: str = "test") -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """(training runs of every source, {SOURCE-id, SOURCE-ood, multipower-unseen} or, at the dev stage,
    {SOURCE-dev-id, SOURCE-dev-ood} of Gemstones and (Mis)Fitting and {multipower-dev-unseen})."""
    sources = {
        "gemstones": read_runs(ROOT / "data" / "gemstones.parquet"),
        "misfitting": load("misfitting", shared / "misfitting" / "scaling_results.csv"),
    }
    protocol = {}
    for name, runs in sources.items():
        split = split_runs(runs, id_frac=0.15, seed=SEED, ood_min_params=OOD_PARAMS[name])
        protocol[name] = (split.train, {f"{name}-id": split.id, f"{name}-ood": split.ood})
    if stage == "dev":
        protocol = development(protocol)
    multipower = read_runs(ROOT / "data" / "multipower.parquet")
    schedule = multipower["run_id"].str.rsplit("/", n=1).str[-1]
    if stage == "dev":
        fit, unseen = schedule.isin(FIT) & (schedule != DEV_HELD), schedule == DEV_HELD
    else:
        fit, unseen = schedule.isin(FIT), ~schedule.isin(FIT)
    name = "multipower-dev-unseen" if stage == "dev" else "multipower-unseen"
    protocol["multipower"] = (multipower[fit], {name: multipower[unseen]})
    train = pd.concat([train for train, _ in protocol.values()], ignore_index=True)
    return train, {name: frame for _, tests in protocol.values() for name, frame in tests.items()}


def shape_misses(train: pd.DataFrame, tests: dict[str, pd.DataFrame]) -> list[dict]:
    """Per test set, how far a law's shape of each curve misses L(t) - L(T), the curve measured from its true final
    loss: the hparam law read at the tokens seen (a curve point's law under `curve_law: tokens`) and the law's final
    loss carried back by `CurveShape` (`curve_law: schedule`; the tokens' law where it has no shape for the run)."""
    law = residual_law("hparam-law").fit(train)
    laws = {"tokens": Targets(law, 1.0), "schedule": Targets(law, 1.0, CurveShape().fit(train))}  # as NCPL's targets
    rows = []
    for name, frame in tests.items():
        misses: dict[str, list[np.ndarray]] = {"tokens": [], "schedule": []}
        for _, run in frame[usable(frame)].iterrows():
            curve = run["curve_tokens"]
            tokens = np.asarray(curve if isinstance(curve, (list, np.ndarray)) else [], float)
            before = tokens < run["data.tokens"]
            if not before.any():
                continue
            repeated = pd.DataFrame([run] * int(before.sum()))
            loss = np.asarray(run["curve_loss"], float)[before]
            for key, targets in laws.items():  # the residual's change from the end is the shape's miss
                along = targets.to_target(repeated, loss, tokens[before])
                end = targets.to_target(repeated.head(1), np.array([run["final_loss"]]), np.array([run["data.tokens"]]))
                misses[key].append(np.abs(along - end))
        if misses["tokens"]:
            rows.append(
                {"test": name, "runs": len(misses["tokens"])}
                | {key: float(np.concatenate(value).mean()) for key, value in misses.items()}
            )
    return rows


def table(rows: list[dict]) -> str:
    frame = pd.DataFrame(rows)
    frame["prefix"] = (frame["prefix"] * 100).round().astype(int).astype(str) + "%"
    wide = frame.pivot_table(
        index=["test", "prefix", "runs", "points"], columns="method", values="mae", sort=False
    ).reset_index()
    methods = [c for c in wide.columns if c not in ("test", "prefix", "runs", "points")]
    lines = ["| test | prefix | runs | points | " + " | ".join(methods) + " |", "|---" * (4 + len(methods)) + "|"]
    for row in wide.itertuples(index=False):
        values = row[4:]
        best = min(values)
        lines.append(
            f"| {row[0]} | {row[1]} | {row[2]} | {row[3]} | "
            + " | ".join(f"**{v:.4f}**" if v == best else f"{v:.4f}" for v in values)
            + " |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "cpu-curves.yaml")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench" / "curves")
    parser.add_argument(
        "--model", type=Path, default=None, help="evaluate this NCPL model directory instead of training one"
    )
    parser.add_argument("--stage", choices=("dev", "test"), default="test", help="dev: choose settings; test: report")
    parser.add_argument(
        "--tag", default=None, help="names the work folder (STAGE-TAG) and the dev results (default: the config's name)"
    )
    parser.add_argument("--seed", type=int, default=None, help="the NCPL seed (default: the config's)")
    parser.add_argument("--keep-work", action="store_true", help="keep NCPL's checkpoints (WORK/STAGE-TAG/work)")
    args = parser.parse_args()
    if args.model and args.stage == "dev":
        raise SystemExit("--model: a given model may have trained on the dev test runs; train one with --stage dev")

    train, tests = splits(args.shared, args.stage)
    train = train[~train["diverged"]]
    tag = (args.tag or args.config.stem) + (f"-seed{args.seed}" if args.seed is not None else "")
    work = args.work / f"{args.stage}-{tag}"  # a work folder resumes only its own stage's and config's training
    start = time.perf_counter()
    if args.model:
        ncpl = predictors.load_predictor(args.model)
    else:
        settings = TrainConfig.from_yaml(args.config)
        settings = settings if args.seed is None else settings.model_copy(update={"seed": args.seed})
        ncpl = NCPL(settings, work_dir=work / "work").fit(train)
        ncpl.save(work / "model")
    minutes = (time.perf_counter() - start) / 60
    report = evaluate({"chinchilla": predictors.create("chinchilla").fit(train), "ncpl": ncpl}, tests)
    shapes = shape_misses(train, tests)
    out = ROOT / "benchmarks" / "results"
    reported = args.stage == "test" and args.seed is None  # the config's seed: the README's table and plots
    write_report(report, out / "curves" if reported else work / "report")
    config = args.config.relative_to(ROOT) if args.config.is_relative_to(ROOT) else args.config
    command = (
        f"python benchmarks/curves.py --config {config}"
        + (f" --stage dev --tag {args.tag or args.config.stem}" if args.stage == "dev" else "")
        + (f" --seed {args.seed}" if args.seed is not None else "")
    )
    trained = (
        f"NCPL trained on {len(train)} Gemstones + (Mis)Fitting + Multi-Power runs in {minutes:.1f} min"
        if not args.model
        else f"NCPL from {args.model}"
    )
    body = (
        f"Measured {datetime.date.today().isoformat()} on {machine()} by `{command}` ({trained}). MAE (nats) of the "
        "absolute loss on the checkpoints after the first 10/20/40% of each curve (at most 32 per curve); `chinchilla` "
        "and `ncpl` see only the config; `+prefix` also sees the checkpoints before the prefix's end: "
        + ("NCPL reads them (its `prefix_points`)" if ncpl.reads_prefix else "NCPL's curve is shifted to the last 3")
        + ", Chinchilla's is shifted to the last 3; the prefix laws are fitted to the observed prefix; a run counts at a prefix "
        "where both prefix laws can be fitted (6 checkpoints). Best per row in bold.\n\n"
        + table(report["curves"])
        + "\nFinal loss from the config (MAE, nats, converged runs): "
        + "; ".join(f"{row['test']} {row['predictor']} {row['ok']['mae']:.4f}" for row in report["accuracy"])
        + "\n\nThe law's shape of each curve given its true final loss (mean |error| of L(t) - L(T), nats; "
        "`curve_law` tokens / schedule): "
        + "; ".join(f"{row['test']} {row['tokens']:.4f} / {row['schedule']:.4f}" for row in shapes)
        + "\n"
    )
    name = "curves" if reported else (f"curves-dev-{tag}" if args.stage == "dev" else f"curves-{tag}")
    write_text(out / f"{name}.md", body)
    write_text(
        out / f"{name}.json",
        json.dumps(
            {
                "curves": report["curves"],
                "accuracy": report["accuracy"],
                "curve_shape": shapes,
                "meta": {
                    "date": datetime.date.today().isoformat(),
                    "machine": machine(),
                    "config": str(args.config),
                    "train_minutes": round(minutes, 2),
                },
            },
            indent=1,
        ),
    )
    if reported:
        update_readme("curves", body)
    if not args.keep_work:
        shutil.rmtree(work / "work", ignore_errors=True)
    print(body)


if __name__ == "__main__":
    main()
