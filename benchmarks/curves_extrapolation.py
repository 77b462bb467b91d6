"""Loss-curve extrapolation on real curves: the temporal law against the power law, from a prefix.

    python benchmarks/curves_extrapolation.py [--shared ../shared/data]

For each curve and prefix (10/20/40% of its last tokens), both laws are fitted on the checkpoints up
to that point and scored on the rest: |error| at the final checkpoint and the mean |error| over all
later checkpoints. Curves whose prefix has fewer points than the temporal law needs (6) are left out
of that prefix for both laws. Size split: large = N above the median N of the curve set.
- Gemstones constant-lr ("hot") curves: to 350B tokens (hot_100b+_477), to 100B (hot_477), and the
  lower-lr ablation to 100B (lr_ablation_hot_477); training loss, a checkpoint every 2B tokens.
- (Mis)Fitting: C4 eval-loss curves of open_lm runs with a cosine schedule, which neither law models.
Writes benchmarks/results/curves_extrapolation.{md,json,png} with the machine and the date.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import machine  # noqa: E402

from ncpl.atomic import write_text  # noqa: E402
from ncpl.laws.temporal import LAWS, TemporalLaw, draw_forecast  # noqa: E402
from ncpl.plots import save_figure  # noqa: E402
from ncpl.sources import import_runs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PREFIXES = (0.1, 0.2, 0.4)
SETS = {
    "gemstones-350B": ("gemstones", "gemstones/wandb_dfs/wandb_df_for_fitting_hot_100b+_477.jsonl"),
    "gemstones-100B": ("gemstones", "gemstones/wandb_dfs/wandb_df_for_fitting_hot_477.jsonl"),
    "gemstones-lr-ablation-100B": ("gemstones", "gemstones/wandb_dfs/wandb_df_for_fitting_lr_ablation_hot_477.jsonl"),
    "misfitting": ("misfitting", "misfitting/scaling_results.csv"),
}


def load(shared: Path, source: str, path: str) -> list[dict]:
    records = import_runs(source, [shared / path]).records
    return [
        {
            "run_id": r.run_id,
            "n_params": r.config.model.n_params,
            "tokens": np.array(r.curve.tokens),
            "loss": np.array(r.curve.loss),
        }
        for r in records
        if r.curve is not None
    ]


def score(curves: list[dict]) -> list[dict]:
    median = float(np.median([c["n_params"] for c in curves]))
    rows = []
    for curve in curves:
        t, y = curve["tokens"], curve["loss"]
        for prefix in PREFIXES:
            seen = t <= prefix * t[-1]
            if seen.sum() < TemporalLaw().min_points or seen.all():
                continue
            for name, law in LAWS.items():
                forecast = law().fit(t[seen], y[seen]).predict(t[~seen])
                error = forecast - y[~seen]
                rows.append(
                    {
                        "run_id": curve["run_id"],
                        "n_params": curve["n_params"],
                        "size": "large" if curve["n_params"] > median else "small",
                        "prefix": prefix,
                        "law": name,
                        "points_seen": int(seen.sum()),
                        "end_error": float(error[-1]),
                        "end_abs": float(abs(error[-1])),
                        "later_abs": float(np.abs(error).mean()),
                    }
                )
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    out = []
    for prefix in PREFIXES:
        for size in ("all", "large", "small"):
            for law in LAWS:
                chosen = [r for r in rows if r["prefix"] == prefix and r["law"] == law and size in ("all", r["size"])]
                if chosen:
                    out.append(
                        {
                            "prefix": prefix,
                            "size": size,
                            "law": law,
                            "curves": len(chosen),
                            "end_mae": float(np.mean([r["end_abs"] for r in chosen])),
                            "later_mae": float(np.mean([r["later_abs"] for r in chosen])),
                            "end_bias": float(np.mean([r["end_error"] for r in chosen])),
                        }
                    )
    return out


def examples(sets: dict[str, list[dict]], path: Path) -> None:
    from matplotlib.figure import Figure

    picks = [
        ("gemstones-350B", -1, 0.2),
        ("gemstones-350B", 3, 0.1),
        ("gemstones-100B", 0, 0.2),
        ("misfitting", None, 0.4),
    ]
    fig = Figure(figsize=(11, 8))
    for ax, (name, index, prefix) in zip(fig.subplots(2, 2).ravel(), picks):
        curves = sorted(sets[name], key=lambda c: c["n_params"])
        curve = max(curves, key=lambda c: len(c["tokens"])) if index is None else curves[index]
        t, y = curve["tokens"], curve["loss"]
        seen = t <= prefix * t[-1]
        ax.scatter(t[seen], y[seen], s=8, color="C0", label=f"observed ({prefix:.0%})")
        ax.scatter(t[~seen], y[~seen], s=6, color="0.6", label="held out")
        for color, (law_name, law) in zip(("C1", "C2"), LAWS.items()):
            draw_forecast(ax, t[seen], law().fit(t[seen], y[seen]), t[-1], label=f"{law_name} law", color=color)
        ax.set(
            xlabel="tokens",
            ylabel="loss",
            title=f"{name}: {curve['run_id'].split('/', 2)[-1]}",
            ylim=(y.min() - 0.05, y[seen][min(2, seen.sum() - 1)] + 0.1),
        )
        ax.legend(fontsize=8)
    save_figure(fig, path, dpi=100)


def markdown(summary: dict[str, list[dict]]) -> str:
    lines = [
        "| curves | prefix | size | n | temporal end MAE | power end MAE | temporal later MAE | power later MAE |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, rows in summary.items():
        for prefix in PREFIXES:
            for size in ("all", "large", "small"):
                cell = {r["law"]: r for r in rows if r["prefix"] == prefix and r["size"] == size}
                if len(cell) == 2:
                    tl, pl = cell["temporal"], cell["power"]
                    lines.append(
                        f"| {name} | {prefix:.0%} | {size} | {tl['curves']} | {tl['end_mae']:.4f} | {pl['end_mae']:.4f} "
                        f"| {tl['later_mae']:.4f} | {pl['later_mae']:.4f} |"
                    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    start = time.perf_counter()
    sets = {name: load(args.shared, source, path) for name, (source, path) in SETS.items()}
    rows = {name: score(curves) for name, curves in sets.items()}
    summary = {name: summarize(r) for name, r in rows.items()}
    seconds = time.perf_counter() - start
    today = datetime.date.today().isoformat()
    meta = {
        "date": today,
        "machine": machine(),
        "seconds": round(seconds, 1),
        "prefixes": PREFIXES,
        "files": {name: path for name, (_, path) in SETS.items()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    examples(sets, args.out / "curves_extrapolation.png")
    body = (
        f"Measured {today} on {meta['machine']} by `python benchmarks/curves_extrapolation.py` ({seconds:.0f} s). "
        "Mean absolute error (nats) of the forecast at the final checkpoint (end) and over all checkpoints after "
        "the prefix (later); large = N above the set's median.\n\n" + markdown(summary) + "\n"
    )
    write_text(args.out / "curves_extrapolation.md", body)
    write_text(
        args.out / "curves_extrapolation.json", json.dumps({"meta": meta, "summary": summary, "curves": rows}, indent=1)
    )
    print(body)


if __name__ == "__main__":
    main()
