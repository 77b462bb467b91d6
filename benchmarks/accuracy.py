"""Accuracy of every predictor on real held-out runs, in distribution and out of distribution.

    python benchmarks/accuracy.py [--shared ../shared/data] [--models chinchilla,hparam-law,xgboost,xgboost-residual,xgboost-hparam-residual]

Splits (diverged runs are dropped from training, reported separately in testing):
- StepLaw dense: ID = a seeded 15% of the two smaller shapes (h960, h1024); dev-OOD = h1280/L10.
- Marin: train on the 130m runs less a seeded 15% (ID); OOD = the 300m runs.
- Gadre et al. models: OOD = the open_lm 1B and 7B models; ID = a seeded 15% of the rest.
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
from ncpl.evaluate import evaluate, markdown, write_report
from ncpl.splits import split_runs
from ncpl.sources import import_runs
from ncpl.store import to_frame

ROOT = Path(__file__).resolve().parents[1]
SEED = 0


def load(source: str, path: Path) -> pd.DataFrame:
    return to_frame(import_runs(source, [path]).records)


def benchmarks(shared: Path) -> dict[str, tuple[pd.DataFrame, dict[str, pd.DataFrame]]]:
    steplaw = load("steplaw", shared / "steplaw/dense_lr_bs_loss.csv")
    large = steplaw["model.d_model"] == 1280
    steplaw_split = split_runs(steplaw[~large], id_frac=0.15, seed=SEED)

    marin = load("marin", shared / "marin/marin_sweep_runs.jsonl")
    marin_split = split_runs(marin, id_frac=0.15, seed=SEED, ood_min_params=3e8)

    gadre = load("gadre", shared / "mlfoundations_scaling/exp_data/models")
    gadre_split = split_runs(gadre, id_frac=0.15, seed=SEED, ood_min_params=1e9)

    return {
        "steplaw": (steplaw_split.train, {"steplaw-id": steplaw_split.id, "steplaw-ood": steplaw[large]}),
        "marin": (marin_split.train, {"marin-id": marin_split.id, "marin-ood": marin_split.ood}),
        "gadre": (gadre_split.train, {"gadre-id": gadre_split.id, "gadre-ood": gadre_split.ood}),
    }


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def update_readme(block: str, body: str) -> None:
    """Put `body` between README.md's `<!-- block:start -->` and `<!-- block:end -->` markers."""
    readme = ROOT / "README.md"
    pattern = re.compile(rf"(<!-- {block}:start -->\n).*?(<!-- {block}:end -->)", re.S)
    text = readme.read_text()
    if not pattern.search(text):
        raise SystemExit(f"README.md has no {block}:start / {block}:end markers")
    readme.write_text(pattern.sub(lambda m: m.group(1) + body + m.group(2), text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--models", default="chinchilla,hparam-law,xgboost,xgboost-residual,xgboost-hparam-residual")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    merged = {"accuracy": [], "regret": [], "predictions": {}}
    fit_seconds: dict[str, dict[str, float]] = {}
    for name, (train, tests) in benchmarks(args.shared).items():
        train = train[~train["diverged"]]
        fitted = {}
        for model in args.models.split(","):
            start = time.perf_counter()
            fitted[model] = predictors.create(model).fit(train)
            fit_seconds.setdefault(name, {})[model] = round(time.perf_counter() - start, 2)
        report = evaluate(fitted, tests)
        for key in merged:
            merged[key] = merged[key] + report[key] if isinstance(merged[key], list) else {**merged[key], **report[key]}
        print(f"{name}: trained on {len(train)} runs; tests {', '.join(f'{k} {len(v)}' for k, v in tests.items())}", flush=True)

    stamp = f"{datetime.date.today().isoformat()} on {machine()}"
    merged["meta"] = {"date": datetime.date.today().isoformat(), "machine": machine(), "fit_seconds": fit_seconds, "seed": SEED}
    write_report(merged, args.out / "accuracy")
    table = markdown(merged)
    fits = ", ".join(f"{b}: " + ", ".join(f"{m} {s:.1f}s" for m, s in t.items()) for b, t in fit_seconds.items())
    body = (f"Measured {stamp} by `python benchmarks/accuracy.py` (fit times: {fits}). Metrics on non-diverged "
            f"runs; `(all)` includes runs that blew up.\n\n{table}")
    (args.out / "accuracy.md").write_text(body)
    (args.out / "accuracy.json").write_text(json.dumps({k: merged[k] for k in ("accuracy", "regret", "meta")}, indent=1))
    update_readme("accuracy", body)
    print(body)


if __name__ == "__main__":
    main()
