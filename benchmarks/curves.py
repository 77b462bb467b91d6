"""Loss curves from the configuration alone (NCPL, Chinchilla along the curve) against laws fitted to
the observed start of each curve (power law, temporal law), on real Gemstones and (Mis)Fitting curves.

    python benchmarks/curves.py [--config configs/cpu-curves.yaml] [--shared ../shared/data] [--model DIR]

Splits, per source: OOD = the larger shapes (Gemstones N > 4e8: 1024x28, 1280x15, 1792x7, 768x45;
(Mis)Fitting N >= 2e8), ID = a seeded 15% of the rest; NCPL and Chinchilla are fitted on the rest,
one NCPL model for both sources. Writes benchmarks/results/curves.{md,json}, a plot of predicted
and true curves per test set, and the table into README.md between the curves markers.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import ROOT, SEED, load, machine, update_readme  # noqa: E402

from ncpl import predictors  # noqa: E402
from ncpl.atomic import write_text  # noqa: E402
from ncpl.evaluate import evaluate  # noqa: E402
from ncpl.regressor.predictor import NCPL  # noqa: E402
from ncpl.report import write_report  # noqa: E402
from ncpl.splits import split_runs  # noqa: E402
from ncpl.store import read_runs  # noqa: E402

OOD_PARAMS = {"gemstones": 4e8, "misfitting": 2e8}


def splits(shared: Path) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    sources = {
        "gemstones": read_runs(ROOT / "data" / "gemstones.parquet"),
        "misfitting": load("misfitting", shared / "misfitting" / "scaling_results.csv"),
    }
    train, tests = [], {}
    for name, runs in sources.items():
        split = split_runs(runs, id_frac=0.15, seed=SEED, ood_min_params=OOD_PARAMS[name])
        train.append(split.train)
        tests[f"{name}-id"], tests[f"{name}-ood"] = split.id, split.ood
    return pd.concat(train, ignore_index=True), tests


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
    args = parser.parse_args()

    train, tests = splits(args.shared)
    train = train[~train["diverged"]]
    start = time.perf_counter()
    if args.model:
        ncpl = predictors.load_predictor(args.model)
    else:
        ncpl = NCPL(args.config, work_dir=args.work / "work").fit(train)
        ncpl.save(args.work / "model")
    minutes = (time.perf_counter() - start) / 60
    report = evaluate({"chinchilla": predictors.create("chinchilla").fit(train), "ncpl": ncpl}, tests)
    out = ROOT / "benchmarks" / "results"
    write_report(report, out / "curves")
    command = f"python benchmarks/curves.py --config {args.config.relative_to(ROOT) if args.config.is_relative_to(ROOT) else args.config}"
    trained = (
        f"NCPL trained on {len(train)} Gemstones + (Mis)Fitting runs in {minutes:.1f} min"
        if not args.model
        else f"NCPL from {args.model}"
    )
    body = (
        f"Measured {datetime.date.today().isoformat()} on {machine()} by `{command}` ({trained}). MAE (nats) of the "
        "absolute loss on the checkpoints after the first 10/20/40% of each curve (at most 32 per curve); `chinchilla` "
        "and `ncpl` see only the config, `+prefix` shifts their curve to the last 3 checkpoints seen, the prefix laws are "
        "fitted to the observed prefix; a run counts at a prefix "
        "where both prefix laws can be fitted (6 checkpoints). Best per row in bold.\n\n" + table(report["curves"])
    )
    write_text(out / "curves.md", body)
    write_text(
        out / "curves.json",
        json.dumps(
            {
                "curves": report["curves"],
                "accuracy": report["accuracy"],
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
    update_readme("curves", body)
    print(body)


if __name__ == "__main__":
    main()
