"""Accuracy of every predictor on real held-out runs, in distribution and out of distribution.

    python benchmarks/accuracy.py [--shared ../shared/data] [--models chinchilla,hparam-law,xgboost,xgboost-residual,xgboost-hparam-residual]
                                  [--stages dev,test]

The XGBoost variants are tuned (`tune=True`: a grid with early stopping on the training runs' largest
model size, `ncpl.predictors.trees`), each source on its own.

Test splits (reported, never used to choose anything; failed runs, diverged or unstable
(`ncpl.unstable`), are dropped from training and reported separately in testing):
- StepLaw dense: ID = a seeded 15% of the two smaller shapes (h960, h1024); OOD = h1280/L10.
- Marin: train on the 130m runs less a seeded 15% (ID); OOD = the 300m runs.
- Gadre et al. models: OOD = the open_lm 1B and 7B models; ID = a seeded 15% of the rest.
Development splits, inside each source's training runs, for every design choice (`development`):
dev-OOD = the largest training model size (StepLaw h1024, Gadre its largest sizes; Marin, one size,
its largest token counts, D >= 2.1e10), dev-ID = a seeded 15% of the rest, trained on what remains.
Writes benchmarks/results/accuracy.{md,json} and the parity plots, and the table into README.md
between the accuracy markers, with the machine and the date.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import time
from pathlib import Path

import pandas as pd

from ncpl import predictors
from ncpl.atomic import write_text
from ncpl.evaluate import evaluate
from ncpl.report import markdown, write_report
from ncpl.sources import import_runs
from ncpl.splits import largest_sizes, split_runs
from ncpl.store import to_frame
from ncpl.unstable import mark_unstable

ROOT = Path(__file__).resolve().parents[1]
SEED = 0
NCPL_SOURCES = ("steplaw", "marin")  # what benchmarks/ncpl_accuracy.py (and divergence.py) train and test on


def load(source: str, path: Path) -> pd.DataFrame:
    return to_frame(import_runs(source, [path]).records)


def benchmarks(shared: Path) -> dict[str, tuple[pd.DataFrame, dict[str, pd.DataFrame]]]:
    """The test splits: per source (train, {SOURCE-id, SOURCE-ood}); unstable runs marked as failed."""
    steplaw = mark_unstable(load("steplaw", shared / "steplaw/dense_lr_bs_loss.csv"))
    large = steplaw["model.d_model"] == 1280
    steplaw_split = split_runs(steplaw[~large], id_frac=0.15, seed=SEED)

    marin = mark_unstable(load("marin", shared / "marin/marin_sweep_runs.jsonl"))
    marin_split = split_runs(marin, id_frac=0.15, seed=SEED, ood_min_params=3e8)

    gadre = mark_unstable(load("gadre", shared / "mlfoundations_scaling/exp_data/models"))
    gadre_split = split_runs(gadre, id_frac=0.15, seed=SEED, ood_min_params=1e9)

    return {
        "steplaw": (steplaw_split.train, {"steplaw-id": steplaw_split.id, "steplaw-ood": steplaw[large]}),
        "marin": (marin_split.train, {"marin-id": marin_split.id, "marin-ood": marin_split.ood}),
        "gadre": (gadre_split.train, {"gadre-id": gadre_split.id, "gadre-ood": gadre_split.ood}),
    }


def other_sources(shared: Path, splits: dict[str, tuple[pd.DataFrame, dict[str, pd.DataFrame]]]) -> pd.DataFrame:
    """Every run of the sources beyond StepLaw dense and Marin, for training only (Gadre: its training split, its
    test runs kept out); unstable runs marked as failed. Bundled sources are read from data/, the rest from
    `shared`."""
    from ncpl.store import read_runs

    frames = [
        load("steplaw-moe", shared / "steplaw/moe_lr_bs_loss.csv"),
        load("misfitting", shared / "misfitting/scaling_results.csv"),
        load("epoch", shared / "epoch_chinchilla/data/svg_extracted_data.csv"),
        *(read_runs(ROOT / "data" / f"{name}.parquet") for name in ("gadre-grid", "gemstones", "multipower")),
    ]
    return pd.concat([*map(mark_unstable, frames), splits["gadre"][0]], ignore_index=True)


def development(
    splits: dict[str, tuple[pd.DataFrame, dict[str, pd.DataFrame]]],
) -> dict[str, tuple[pd.DataFrame, dict[str, pd.DataFrame]]]:
    """The development splits inside each source's training runs: (dev train, {SOURCE-dev-id, SOURCE-dev-ood})."""
    out = {}
    for source, (train, _) in splits.items():
        beyond = largest_sizes(train, 0.1)
        rest = split_runs(train[~beyond], id_frac=0.15, seed=SEED)
        out[source] = (rest.train, {f"{source}-dev-id": rest.id, f"{source}-dev-ood": train[beyond]})
    return out


def joint(
    protocol: dict[str, tuple[pd.DataFrame, dict[str, pd.DataFrame]]],
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """The training runs of `NCPL_SOURCES` pooled (one model for them all), and their test sets by name."""
    train = pd.concat([protocol[source][0] for source in NCPL_SOURCES], ignore_index=True)
    return train, {name: frame for source in NCPL_SOURCES for name, frame in protocol[source][1].items()}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def update_readme(block: str, body: str) -> None:
    """Put `body` between README.md's `<!-- block:start -->` and `<!-- block:end -->` markers."""
    readme = ROOT / "README.md"
    pattern = re.compile(rf"(<!-- {block}:start -->\n).*?(<!-- {block}:end -->)", re.S)
    text = readme.read_text()
    if not pattern.search(text):
        raise SystemExit(f"README.md has no {block}:start / {block}:end markers")
    write_text(readme, pattern.sub(lambda m: m.group(1) + body + m.group(2), text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--models", default="chinchilla,hparam-law,xgboost,xgboost-residual,xgboost-hparam-residual")
    parser.add_argument("--stages", default="dev,test", help="dev (the development splits), test, or both")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    merged = {"accuracy": [], "interval": [], "regret": [], "predictions": {}}
    fit_seconds: dict[str, dict[str, float]] = {}
    test_splits = benchmarks(args.shared)
    stages = {"dev": development(test_splits), "test": test_splits}
    for name, (train, tests) in (
        (f"{source} {stage}", split) for stage in args.stages.split(",") for source, split in stages[stage].items()
    ):
        fitted = {}
        for model in args.models.split(","):
            start = time.perf_counter()
            fitted[model] = predictors.create(model, **({"tune": True} if model.startswith("xgboost") else {})).fit(
                train
            )
            fit_seconds.setdefault(name, {})[model] = round(time.perf_counter() - start, 2)
        report = evaluate(fitted, tests)
        for key in merged:
            merged[key] = merged[key] + report[key] if isinstance(merged[key], list) else {**merged[key], **report[key]}
        print(
            f"{name}: trained on {len(train)} runs; tests {', '.join(f'{k} {len(v)}' for k, v in tests.items())}",
            flush=True,
        )

    stamp = f"{datetime.date.today().isoformat()} on {machine()}"
    merged["meta"] = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "fit_seconds": fit_seconds,
        "seed": SEED,
    }
    write_report(merged, args.out / "accuracy")
    table = markdown(merged)
    fits = ", ".join(f"{b}: " + ", ".join(f"{m} {s:.1f}s" for m, s in t.items()) for b, t in fit_seconds.items())
    body = (
        f"Measured {stamp} by `python benchmarks/accuracy.py --stages {args.stages}` (fit times, XGBoost tuning included: "
        f"{fits}). Metrics on the converged runs; `(all)` also counts the failed (diverged or unstable) runs, at the "
        f"source's worst converged loss in that test set.\n\n{table}"
    )
    write_text(args.out / "accuracy.md", body)
    write_text(args.out / "accuracy.json", json.dumps({k: merged[k] for k in ("accuracy", "regret", "meta")}, indent=1))
    update_readme("accuracy", body)
    print(body)


if __name__ == "__main__":
    main()
