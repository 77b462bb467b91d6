"""NCPL against every baseline, trained jointly on StepLaw and Marin (--all-sources: and every other source in
../shared/data), tested on StepLaw and Marin under the development / test protocol.

    python benchmarks/ncpl_accuracy.py [--config configs/cpu.yaml] [--seeds 42,43,44,45,46] [--stages dev,test]
        [--set KEY=VALUE ...] [--grid KEY=V1,V2 ...] [--all-sources] [--tag NAME] [--no-readme] [--keep-work]

Protocol (splits in benchmarks/accuracy.py): the development splits (dev-ID; dev-OOD = the largest
training size: StepLaw h1024, Marin's largest token counts) are where defaults are chosen; the test
splits (ID; OOD = StepLaw h1280, Marin 300m) are reported and never used to choose. Every seed trains
every learned predictor again: NCPL (the config's seed replaced; it also draws the validation runs) and
the three XGBoost variants, tuned on the validation runs NCPL's `val_split` carves from the same
training runs (`ncpl.predictors.trees.GRID`, early stopping); the laws have no seed. Failed runs
(diverged, or unstable by `ncpl.unstable`) are positives of the divergence probability and count at
their source's loss ceiling in the `all` metrics.

Tables: the mean and the standard deviation over seeds of each metric; for each test set and source,
NCPL's MAE minus the best baseline's (the lowest mean MAE there) with a paired bootstrap 95% interval,
resampling test runs (each run's absolute error averaged over the seeds first). Each (stage, seed)
report and NCPL model is kept under --work: an interrupted run resumes where it stopped (NCPL's checkpoints
are removed once its seed's report is written; --keep-work keeps them).
Writes benchmarks/results/ncpl-<tag>.{md,json} and, unless --no-readme, the README's ncpl block.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import ROOT, benchmarks, development, joint, machine, other_sources, update_readme  # noqa: E402

from ncpl import predictors  # noqa: E402
from ncpl.atomic import atomic_path, write_text  # noqa: E402
from ncpl.evaluate import STEPLAW_PICKER, paired_bootstrap  # noqa: E402
from ncpl.evaluate import evaluate as evaluate_models  # noqa: E402
from ncpl.predictors.ensemble import Ensemble  # noqa: E402
from ncpl.predictors.trees import GRID  # noqa: E402
from ncpl.regressor.predictor import NCPL  # noqa: E402
from ncpl.regressor.train_config import TrainConfig  # noqa: E402

LAWS = ("chinchilla", "hparam-law")
TREES = ("xgboost", "xgboost-residual", "xgboost-hparam-residual")
BASELINES = LAWS + TREES
ENSEMBLE = "ncpl+xgboost-hparam-residual"  # the equal-weight mean, as `ncpl ensemble` builds it
METRICS = {  # table -> (column in the report row, header, digits)
    "accuracy": [
        ("ok.mae", "MAE", 4),
        ("ok.spearman", "Spearman", 3),
        ("all.mae", "MAE (all)", 4),
        ("all.spearman", "Spearman (all)", 3),
    ],
    "interval": [
        ("coverage_80", "coverage", 2),
        ("median_width", "median width", 4),
        ("auc_diverge", "divergence ROC-AUC", 3),
    ],
    "regret": [("regret", "mean regret", 4), ("diverged_picks", "diverged picks", 2)],
}
KEYS = {"accuracy": "predictor", "interval": "predictor", "regret": "picker"}


def train_config(path: Path, seed: int, overrides: list[str]) -> TrainConfig:
    """The config file with `KEY=VALUE` overrides (dotted keys reach into the stages: stage1.epochs=1)."""
    data = TrainConfig.from_yaml(path).model_dump()
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set: got {item!r}; expected KEY=VALUE, e.g. --set stage1.epochs=1")
        *parents, leaf = key.split(".")
        node = data
        for part in parents:
            node = node[part]
        node[leaf] = yaml.safe_load(value)
    return TrainConfig.model_validate({**data, "seed": seed})


def tree_grid(overrides: list[str]) -> dict[str, tuple[float, ...]] | None:
    """`trees.GRID` with `KEY=V1,V2` overrides (a smoke run's smaller grid); None: the grid as it is."""
    if not overrides:
        return None
    grid = dict(GRID)
    for item in overrides:
        key, sep, values = item.partition("=")
        if not sep or key not in GRID:
            raise SystemExit(f"--grid: got {item!r}; expected KEY=V1,V2 with KEY one of {', '.join(GRID)}")
        grid[key] = tuple(yaml.safe_load(v) for v in values.split(","))
    return grid


def run_once(
    stage: str,
    seed: int,
    train: pd.DataFrame,
    tests: dict[str, pd.DataFrame],
    config: TrainConfig,
    work: Path,
    grid: dict[str, tuple[float, ...]] | None = None,
    keep_work: bool = False,
) -> dict[str, Any]:
    """Fit every predictor on `train` with this seed and evaluate it on `tests`; cached in work/STAGE-seedSEED.
    NCPL's checkpoints (work/STAGE-seedSEED/work, about 1.4 GB) resume an interrupted training and are removed once
    the report is written, unless `keep_work`."""
    here = work / f"{stage}-seed{seed}"
    cache = here / "report.json"
    if cache.exists():
        print(f"{stage} seed {seed}: cached {cache}", flush=True)
        return json.loads(cache.read_text())
    models: dict[str, Any] = {name: predictors.create(name).fit(train) for name in LAWS}
    for name in TREES:
        # the trees on the same features: the hparam law's fields too where NCPL reads them
        same = {"law_fields": True} if config.law_fields and name == "xgboost-hparam-residual" else {}
        models[name] = predictors.create(
            name, seed=seed, tune=True, val_split=config.val_split, val_frac=config.val_frac, grid=grid, **same
        ).fit(train)
        print(f"{stage} seed {seed}: {name} tuned, {models[name].params_}", flush=True)
    model_dir = here / "model"
    start = time.perf_counter()
    if (model_dir / "predictor.json").exists():  # trained before an interruption: its log gives the minutes
        models["ncpl"] = predictors.load_predictor(model_dir)
        log = [
            json.loads(line)
            for path in (here / "work").rglob("train_log.jsonl")
            for line in path.read_text().splitlines()
        ]
        minutes = sum(entry["seconds"] for entry in log) / 60
    else:
        models["ncpl"] = NCPL(config, work_dir=here / "work").fit(train)
        minutes = (time.perf_counter() - start) / 60
        models["ncpl"].save(model_dir)
    models[ENSEMBLE] = Ensemble([models["ncpl"], models["xgboost-hparam-residual"]])
    report = evaluate_models(models, tests)
    report.pop("curve_plots", None)
    report["meta"] = {
        "stage": stage,
        "seed": seed,
        "train_runs": len(train),
        "train_minutes": round(minutes, 2),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
        "xgboost_params": {name: models[name].params_ for name in TREES},
        "interval": {"margins": models["ncpl"].interval_margins_, "slopes": models["ncpl"].interval_slopes_},
    }
    here.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache) as tmp:
        tmp.write_text(json.dumps(report, allow_nan=True))
    if not keep_work:
        shutil.rmtree(here / "work", ignore_errors=True)
    print(f"{stage} seed {seed}: NCPL trained in {minutes:.1f} min on {len(train)} runs", flush=True)
    return report


def _value(row: dict[str, Any], column: str) -> float:
    for part in column.split("."):
        row = row[part]
    return float(row)


def aggregate(reports: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per table, one row per (test, source, predictor) with the mean and sd over seeds of each metric."""
    out: dict[str, list[dict[str, Any]]] = {}
    for table, metrics in METRICS.items():
        groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for report in reports:
            for row in report[table]:
                groups.setdefault((row["test"], row["source"], row[KEYS[table]]), []).append(row)
        out[table] = []
        for (test, source, name), rows in groups.items():
            values = {column: np.array([_value(row, column) for row in rows]) for column, _, _ in metrics}
            n = int(rows[0]["ok"]["n"] if table == "accuracy" else rows[0].get("n", rows[0].get("groups", 0)))
            out[table].append(
                {
                    "test": test,
                    "source": source,
                    "predictor": name,
                    "seeds": len(rows),
                    "n": n,
                    **{
                        column: {
                            "mean": float(np.nanmean(v)) if np.isfinite(v).any() else float("nan"),
                            "sd": float(np.nanstd(v)) if np.isfinite(v).any() else float("nan"),
                        }
                        for column, v in values.items()
                    },
                }
            )
    return out


def versus_best_baseline(reports: list[dict[str, Any]], accuracy_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """NCPL's MAE minus the best baseline's, per test set and source, with a paired bootstrap 95% interval."""
    out = []
    for test in dict.fromkeys(row["test"] for row in accuracy_rows):
        predictions = [report["predictions"][test] for report in reports if test in report["predictions"]]
        true, sources = np.array(predictions[0]["final_loss"], float), np.array(predictions[0]["source"])
        ok = np.array(predictions[0]["usable"], bool)
        for source in dict.fromkeys(sources):
            here = ok & (sources == source)
            candidates = {
                row["predictor"]: row["ok.mae"]["mean"]
                for row in accuracy_rows
                if row["test"] == test and row["source"] == source and row["predictor"] in BASELINES
            }
            if "ncpl" not in predictions[0] or not candidates:
                continue
            best = min(candidates, key=candidates.get)
            errors = {
                name: np.mean([np.abs(np.array(p[name], float)[here] - true[here]) for p in predictions], axis=0)
                for name in ("ncpl", best)
            }
            out.append(
                {
                    "test": test,
                    "source": source,
                    "baseline": best,
                    "ncpl_mae": float(errors["ncpl"].mean()),
                    "baseline_mae": float(errors[best].mean()),
                    **paired_bootstrap(errors["ncpl"], errors[best]),
                }
            )
    return out


def _cell(stat: dict[str, float], digits: int, seeds: int) -> str:
    mean, sd = stat["mean"], stat["sd"]
    if not np.isfinite(mean):
        return "-"
    return f"{mean:.{digits}f}" + (f" ± {sd:.{digits}f}" if seeds > 1 else "")


def markdown(tables: dict[str, list[dict[str, Any]]], versus: list[dict[str, Any]]) -> str:
    captions = {
        "accuracy": "Accuracy (MAE in nats, on the converged runs; `(all)` also counts the failed runs, at the source's worst "
        "converged loss in that test set):",
        "interval": "NCPL's 10-90% interval on the converged runs (nominal coverage 0.80) and its divergence probability "
        "against the failed (diverged or unstable) runs:",
        "regret": f"Hyperparameter-selection regret (groups of >= 5 runs sharing source, N, D and optimizer; "
        f"`{STEPLAW_PICKER}` is the StepLaw law, whose constants were fitted on every StepLaw shape):",
    }
    lines = []
    for table, metrics in METRICS.items():
        lines += [
            "",
            captions[table],
            "",
            "| test | source | predictor | n | " + " | ".join(h for _, h, _ in metrics) + " |",
            "|---|---|---|---|" + "---|" * len(metrics),
        ]
        for row in tables[table]:
            cells = " | ".join(_cell(row[column], digits, row["seeds"]) for column, _, digits in metrics)
            lines.append(f"| {row['test']} | {row['source']} | {row['predictor']} | {row['n']} | {cells} |")
    lines += [
        "",
        "NCPL against the best baseline of each test set (lowest mean MAE among "
        f"{', '.join(BASELINES)}): MAE difference (negative: NCPL better), paired bootstrap 95% interval over the test runs, "
        "each run's error averaged over the seeds:",
        "",
        "| test | source | best baseline | n | NCPL MAE | baseline MAE | difference | 95% interval |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in versus:
        lines.append(
            f"| {row['test']} | {row['source']} | {row['baseline']} | {row['n']} | {row['ncpl_mae']:.4f} | "
            f"{row['baseline_mae']:.4f} | {row['diff']:+.4f} | [{row['lo']:+.4f}, {row['hi']:+.4f}] |"
        )
    return "\n".join(lines).lstrip("\n") + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "cpu.yaml")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument(
        "--seeds",
        default="42",
        help="comma list; every seed retrains NCPL and the trees (the issue asks for 5: 42,43,44,45,46)",
    )
    parser.add_argument("--stages", default="dev,test", help="dev (choose defaults here), test (report), or both")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field of the config, e.g. --set val_split=largest --set stage1.epochs=1",
    )
    parser.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="replace one axis of the trees' tuning grid (a smoke run: --grid max_depth=3 --grid learning_rate=0.3)",
    )
    parser.add_argument(
        "--all-sources",
        action="store_true",
        help="also train every predictor on the other sources' runs (StepLaw MoE, Gadre and its grid, Gemstones, "
        "(Mis)Fitting, Epoch, Multi-Power); tested on StepLaw and Marin as always",
    )
    parser.add_argument("--tag", default=None, help="results name (default: the config's name)")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench")
    parser.add_argument(
        "--keep-work", action="store_true", help="keep each seed's NCPL checkpoints (WORK/TAG/STAGE-seedSEED/work)"
    )
    parser.add_argument(
        "--no-readme", action="store_true", help="leave README.md as it is (ablations: results files only)"
    )
    args = parser.parse_args()
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise SystemExit(f"--seeds: got {args.seeds!r}; expected integers separated by commas, e.g. 42,43,44") from None
    stages = args.stages.split(",")
    if not stages or set(stages) - {"dev", "test"}:
        raise SystemExit(f"--stages: got {args.stages!r}; use dev, test or dev,test")
    tag = args.tag or args.config.stem
    configs = {seed: train_config(args.config, seed, args.overrides) for seed in seeds}
    load_average = os.getloadavg()[0]

    test_splits = benchmarks(args.shared)
    protocol = {"dev": development(test_splits), "test": test_splits}
    others = [other_sources(args.shared, test_splits)] if args.all_sources else []
    reports = []
    for stage in stages:
        train, tests = joint(protocol[stage])
        train = pd.concat([train, *others], ignore_index=True)
        for seed in seeds:
            reports.append(
                run_once(
                    stage, seed, train, tests, configs[seed], args.work / tag, tree_grid(args.grid), args.keep_work
                )
            )

    tables = aggregate(reports)
    tables["interval"] = [row for row in tables["interval"] if row["predictor"] == "ncpl"]
    versus = versus_best_baseline(reports, tables["accuracy"])
    minutes = {f"{r['meta']['stage']}-seed{r['meta']['seed']}": r["meta"]["train_minutes"] for r in reports}
    meta = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "load_average_1min_at_start": round(load_average, 2),
        "config": str(args.config),
        "overrides": args.overrides,
        "tree_grid": tree_grid(args.grid) or GRID,
        "seeds": seeds,
        "stages": stages,
        "all_sources": args.all_sources,
        "val_split": configs[seeds[0]].val_split,
        "train_minutes": minutes,
        "train_runs": {r["meta"]["stage"]: r["meta"]["train_runs"] for r in reports},
        "xgboost_params": {
            f"{r['meta']['stage']}-seed{r['meta']['seed']}": r["meta"]["xgboost_params"] for r in reports
        },
    }
    config_name = args.config.resolve().relative_to(ROOT) if args.config.resolve().is_relative_to(ROOT) else args.config
    command = (
        f"python benchmarks/ncpl_accuracy.py --config {config_name}"
        f" --seeds {args.seeds} --stages {args.stages}"
        + "".join(f" --set {o}" for o in args.overrides)
        + "".join(f" --grid {g}" for g in args.grid)
        + " --all-sources" * args.all_sources
        + (f" --tag {args.tag}" if args.tag else "")
        + " --no-readme" * args.no_readme
    )
    spent = ", ".join(f"{k} {v:.1f}" for k, v in minutes.items())
    trained_on = "every source in ../shared/data" if args.all_sources else "StepLaw + Marin"
    body = (
        f"Measured {meta['date']} on {meta['machine']} (load average {load_average:.1f} at the start) by `{command}`: "
        f"every learned predictor trained jointly on {trained_on} ({', '.join(f'{k}: {v} runs' for k, v in meta['train_runs'].items())}), "
        f"validation split `{meta['val_split']}`, minutes per training: {spent}. "
        f"Mean ± sd over seeds {', '.join(map(str, seeds))}.\n\n{markdown(tables, versus)}"
    )
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / f"ncpl-{tag}.md", body)
    write_text(
        out / f"ncpl-{tag}.json",
        json.dumps({**tables, "versus_best_baseline": versus, "meta": meta}, indent=1, allow_nan=True),
    )
    if not args.no_readme:
        update_readme("ncpl", body)
    print(body)


if __name__ == "__main__":
    main()
