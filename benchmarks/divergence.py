"""How well the divergence trees rank failed runs: the choice of their settings on the dev splits, then the default on
the test splits.

    python benchmarks/divergence.py [--shared ../shared/data] [--seeds 42,43,44,45,46]

`p_diverge` of NCPL (`divergence: trees`, the default) and of the XGBoost predictors is `ncpl.predictors.divergence`
fitted on the training runs with the model's seed; this script fits it the same way on the protocol of
benchmarks/ncpl_accuracy.py (StepLaw + Marin, unstable runs marked as failed), so its ROC-AUC per test split is the
one that benchmark reports for NCPL, without training a network.
1. dev: every setting of `GRID` on the dev splits, seeds 42-44; the settings are chosen by the mean of Marin's dev-ID
   and dev-OOD AUC (StepLaw's is 0.999-1.000 throughout).
2. test: the default settings on the test splits, mean ± sd over `--seeds`.
Writes benchmarks/results/divergence.{md,json}.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import ROOT, benchmarks, development, joint, machine  # noqa: E402

from ncpl.atomic import write_text  # noqa: E402
from ncpl.columns import usable  # noqa: E402
from ncpl.predictors.divergence import DivergenceClassifier  # noqa: E402

DEV_SEEDS = (42, 43, 44)
GRID = {"max_depth": (2, 3, 4), "n_estimators": (150, 300, 600), "learning_rate": (0.05, 0.1)}


def aucs(settings: dict, seeds, protocol) -> dict[str, list[float]]:
    """ROC-AUC of the failed runs per test split, one value a seed."""
    train, tests = joint(protocol)
    out: dict[str, list[float]] = {name: [] for name in tests}
    for seed in seeds:
        model = DivergenceClassifier(**settings, seed=seed).fit(train)
        for name, frame in tests.items():
            out[name].append(float(roc_auc_score(~usable(frame), model.predict_proba(frame))))
    return out


def cell(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--seeds", default="42,43,44,45,46", help="comma list of the test stage's seeds")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    started = time.perf_counter()
    splits = benchmarks(args.shared)

    rows = []
    for values in itertools.product(*GRID.values()):
        settings = dict(zip(GRID, values))
        got = aucs(settings, DEV_SEEDS, development(splits))
        marin = float(np.mean(got["marin-dev-id"] + got["marin-dev-ood"]))
        rows.append({**settings, "auc": got, "marin_mean": marin})
        print(f"dev {settings}: Marin mean {marin:.3f}", flush=True)
    best = max(rows, key=lambda row: row["marin_mean"])
    default = {name: getattr(DivergenceClassifier(), name) for name in GRID}
    test = aucs(default, seeds, splits)
    print({name: cell(v) for name, v in test.items()}, flush=True)

    meta = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "seconds": round(time.perf_counter() - started),
        "dev_seeds": list(DEV_SEEDS),
        "test_seeds": seeds,
        "default": default,
        "dev_best": {name: best[name] for name in GRID},
    }
    dev_names = list(rows[0]["auc"])
    lines = [
        f"Measured {meta['date']} on {meta['machine']} by `python benchmarks/divergence.py --seeds {args.seeds}` "
        f"({meta['seconds']} s). ROC-AUC of the divergence trees' p_diverge against the failed (diverged or unstable) "
        "runs, mean ± sd over the seeds.",
        "",
        f"### Dev splits, seeds {', '.join(map(str, DEV_SEEDS))}: the settings (chosen by the mean of Marin's two)",
        "",
        "| max_depth | n_estimators | learning_rate | " + " | ".join(dev_names) + " | Marin mean |",
        "|---" * (4 + len(dev_names)) + "|",
    ]
    for row in rows:
        mark = " (default)" if all(row[name] == default[name] for name in GRID) else ""
        lines.append(
            f"| {row['max_depth']} | {row['n_estimators']} | {row['learning_rate']} | "
            + " | ".join(cell(row["auc"][name]) for name in dev_names)
            + f" | {row['marin_mean']:.3f}{mark} |"
        )
    lines += [
        "",
        f"### Test splits, the default ({', '.join(f'{k} {v}' for k, v in default.items())}), seeds "
        f"{', '.join(map(str, seeds))}",
        "",
        "| " + " | ".join(test) + " |",
        "|---" * len(test) + "|",
        "| " + " | ".join(cell(v) for v in test.values()) + " |",
        "",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    write_text(args.out / "divergence.md", "\n".join(lines))
    write_text(args.out / "divergence.json", json.dumps({"meta": meta, "dev": rows, "test": test}, indent=1))
    print(f"wrote {args.out / 'divergence.md'}", flush=True)


if __name__ == "__main__":
    main()
