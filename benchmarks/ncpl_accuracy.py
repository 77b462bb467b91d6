"""NCPL against the baselines, trained jointly on StepLaw and Marin, on the same splits as accuracy.py.

    python benchmarks/ncpl_accuracy.py [--config configs/cpu.yaml] [--seed S] [--members K] [--shared ../shared/data] [--tag NAME] [--no-readme]

The checkpoint is chosen on a seeded 10% of the training runs (ID); the OOD splits are never seen
in training or selection. Reports accuracy, regret, interval coverage, training minutes and peak
memory, for NCPL and for its equal-weight ensemble with XGBoost-residual; writes benchmarks/results/ncpl-<tag>.{md,json}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import resource
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import ROOT, benchmarks, machine, update_readme  # noqa: E402

from ncpl import predictors  # noqa: E402
from ncpl.columns import usable  # noqa: E402
from ncpl.evaluate import evaluate, markdown, write_report  # noqa: E402
from ncpl.predictors.ensemble import Ensemble  # noqa: E402
from ncpl.regressor.predictor import NCPL  # noqa: E402
from ncpl.regressor.trainer import TrainConfig  # noqa: E402


def coverage(model: NCPL, tests: dict[str, pd.DataFrame]) -> dict[str, dict[str, float]]:
    """Share of converged runs whose true loss falls in the predicted 10-90% interval (nominal 80%)."""
    out = {}
    for name, runs in tests.items():
        ok = runs[usable(runs)]
        details = model.predict_details(ok)
        inside = (details["pred_loss_lo"].to_numpy() <= ok["final_loss"].to_numpy()) & (ok["final_loss"].to_numpy() <= details["pred_loss_hi"].to_numpy())
        p = model.predict_details(runs)["p_diverge"].to_numpy()
        diverged = runs["diverged"].to_numpy(bool)
        out[name] = {"coverage_80": float(inside.mean()), "mean_p_diverge_converged": float(p[~diverged].mean()),
                     "mean_p_diverge_diverged": float(p[diverged].mean()) if diverged.any() else float("nan")}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "cpu.yaml")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--seed", type=int, default=None, help="override the config's seed (it also draws the validation runs)")
    parser.add_argument("--members", type=int, default=None, help="override the config's number of networks")
    parser.add_argument("--tag", default=None)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "bench")
    parser.add_argument("--model", type=Path, default=None,
                        help="evaluate this model directory (trained by this script; its train_log.jsonl gives the minutes) instead of training")
    parser.add_argument("--no-readme", action="store_true", help="leave README.md as it is (ablations: results files only)")
    args = parser.parse_args()
    tag = args.tag or args.config.stem

    splits = benchmarks(args.shared)
    train = pd.concat([splits["steplaw"][0], splits["marin"][0]], ignore_index=True)
    tests = {**splits["steplaw"][1], **splits["marin"][1]}
    baselines = {name: predictors.create(name).fit(train[~train["diverged"]])
                 for name in ("chinchilla", "hparam-law", "xgboost-residual", "xgboost-hparam-residual")}

    if args.model:
        model = predictors.load(args.model)
        log = [json.loads(line) for path in args.model.parent.rglob("train_log.jsonl") for line in path.read_text().splitlines()]  # every member's
        minutes, peak_gb = sum(entry["seconds"] for entry in log) / 60, float("nan")
    else:
        start = time.perf_counter()
        config = TrainConfig.from_yaml(args.config)
        overrides = {key: value for key, value in (("seed", args.seed), ("members", args.members)) if value is not None}
        model = NCPL(TrainConfig.model_validate({**config.model_dump(), **overrides}), work_dir=args.work / tag).fit(train)
        minutes = (time.perf_counter() - start) / 60
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        model.save(args.work / tag / "model")

    ensemble = Ensemble([model, baselines["xgboost-residual"]])  # the equal-weight mean, as `ncpl ensemble` builds it
    report = evaluate({**baselines, "ncpl": model, "ncpl+xgboost-residual": ensemble}, tests)
    report["meta"] = {"date": datetime.date.today().isoformat(), "machine": machine(), "config": str(args.config),
                      "train_minutes": round(minutes, 2), "peak_rss_gb": round(peak_gb, 2),
                      "train_runs": len(train), "interval": coverage(model, tests)}
    out = ROOT / "benchmarks" / "results"
    write_report(report, out / f"ncpl-{tag}")
    cover = ", ".join(f"{k} {v['coverage_80']:.2f}" for k, v in report["meta"]["interval"].items())
    command = f"python benchmarks/ncpl_accuracy.py --config {args.config}" + (f" --seed {args.seed}" if args.seed is not None else "") \
        + (f" --members {args.members}" if args.members is not None else "") + (f" --model {args.model}" if args.model else "")
    memory = f", peak RSS {peak_gb:.1f} GB" if peak_gb == peak_gb else ""
    body = (f"Measured {report['meta']['date']} on {machine()} by `{command}`: "
            f"NCPL trained jointly on {len(train)} StepLaw + Marin runs in {minutes:.1f} min{memory}. "
            f"10-90% interval coverage (nominal 0.80): {cover}.\n\n{markdown(report)}")
    (out / f"ncpl-{tag}.md").write_text(body)
    (out / f"ncpl-{tag}.json").write_text(json.dumps({k: report[k] for k in ("accuracy", "regret", "meta")}, indent=1))
    if not args.no_readme:
        update_readme("ncpl", body)
    print(body)


if __name__ == "__main__":
    main()
