"""Borrowing the N term for a source trained on one model size: how well each rule predicts the next size up.

    python benchmarks/n_term_transfer.py [--shared ../shared/data]

Marin's training runs have one model size (130m), so no fit to them can say how the loss moves with N:
the Chinchilla and hparam laws, and every predictor that learns their residual (NCPL, the residual trees),
take the N term of the Epoch replication of Chinchilla (`ncpl.predictors.chinchilla.EPOCH_N_TERM`) in
nats. This measures that rule and two others on every source with several sizes. Per source and size N0
with at least 3 token counts among its best runs (the lowest loss of each (N, D)): fit c + B D^-beta to
them; predict each size N1 1.5-3.5x larger, at its own token counts (within N0's D range / 1.5 .. x 3),
as that minus a drop for the larger N: none; `additive`, the Epoch N term's change (what the laws do);
`scaled`, that times the fitted D term over Epoch's at N0's median D (a source whose losses move less
with D moves less with N); `multiplicative`, that times the loss over Epoch's. Median |error| and
median error (nats) of the steps of each source. Marin's own step (130m -> 300m, its test split) is
reported, not used to choose anything. Writes benchmarks/results/n_term_transfer.{md,json}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import ROOT, benchmarks, machine, other_sources  # noqa: E402

from ncpl.atomic import write_text  # noqa: E402
from ncpl.columns import usable  # noqa: E402
from ncpl.predictors.chinchilla import EPOCH_N_TERM, PRIOR_MEAN, effective_params, tokens  # noqa: E402

RULES = ("none", "additive", "scaled", "multiplicative")
E_EPOCH, B_EPOCH, BETA_EPOCH = float(np.exp(PRIOR_MEAN[0])), float(np.exp(PRIOR_MEAN[2])), float(PRIOR_MEAN[4])


def best_per_size(runs: pd.DataFrame) -> pd.DataFrame:
    runs = runs[usable(runs)].assign(N=lambda f: effective_params(f), D=lambda f: tokens(f))
    return runs.groupby(["N", "D"], as_index=False)["final_loss"].min()


def d_law(at_n0: pd.DataFrame) -> tuple[float, float, float]:
    """c, B, beta of c + B D^-beta through one size's best runs (soft L1: a stray run does not set it)."""
    d, loss = at_n0["D"].to_numpy(float), at_n0["final_loss"].to_numpy(float)
    fit = least_squares(
        lambda p: p[0] + np.exp(p[1]) * d ** -p[2] - loss,
        [loss.min() - 0.3, np.log(100.0), 0.3],
        bounds=([0, -20, 0.05], [10, 30, 1.5]),
        loss="soft_l1",
        f_scale=0.01,
    )
    return fit.x[0], float(np.exp(fit.x[1])), fit.x[2]


def steps(name: str, best: pd.DataFrame) -> list[dict]:
    a, alpha = EPOCH_N_TERM
    sizes = best.groupby("N").size()
    rows = []
    for n0 in sizes[sizes >= 3].index:
        at_n0 = best[best["N"] == n0]
        c, b, beta = d_law(at_n0)
        d_mid = float(np.median(at_n0["D"]))
        scale = b * d_mid**-beta / (B_EPOCH * d_mid**-BETA_EPOCH)
        for n1 in sizes.index[(sizes.index >= 1.5 * n0) & (sizes.index <= 3.5 * n0)]:
            at_n1 = best[(best["N"] == n1) & best["D"].between(at_n0["D"].min() / 1.5, at_n0["D"].max() * 3)]
            if at_n1.empty:
                continue
            d = at_n1["D"].to_numpy(float)
            base = c + b * d**-beta
            drop = a * (n0**-alpha - n1**-alpha)
            epoch_loss = E_EPOCH + a * n0**-alpha + B_EPOCH * d**-BETA_EPOCH
            predictions = {
                "none": base,
                "additive": base - drop,
                "scaled": base - scale * drop,
                "multiplicative": base - base / epoch_loss * drop,
            }
            true = at_n1["final_loss"].to_numpy(float)
            rows += [
                {"source": name, "n0": float(n0), "n1": float(n1), "rule": rule, "error": float(np.mean(p - true))}
                for rule, p in predictions.items()
            ]
    return rows


def markdown(meta: dict, table: pd.DataFrame) -> str:
    lines = [
        f"Measured {meta['date']} on {meta['machine']} by `python benchmarks/n_term_transfer.py`. Per source: "
        "the steps from a size to one 1.5-3.5x larger, and for each rule of the N term's drop the median "
        "|error| (median error) of the larger size's best runs, in nats.",
        "",
        "| source | steps | " + " | ".join(RULES) + " |",
        "|---" * (2 + len(RULES)) + "|",
    ]
    for source, row in table.iterrows():
        cells = [f"{row[('abs', rule)]:.3f} ({row[('bias', rule)]:+.3f})" for rule in RULES]
        lines.append(f"| {source} | {int(row[('steps', 'none')])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()
    splits = benchmarks(args.shared)
    frames = {name: pd.concat([train, *tests.values()]) for name, (train, tests) in splits.items()}
    frames |= {str(name): group for name, group in other_sources(args.shared, splits).groupby("source")}
    rows = [row for name, runs in frames.items() for row in steps(name, best_per_size(runs))]
    frame = pd.DataFrame(rows).assign(abs=lambda f: f["error"].abs())
    table = frame.groupby(["source", "rule"]).agg(
        steps=("error", "size"), abs=("abs", "median"), bias=("error", "median")
    )
    table = table.unstack("rule")
    meta = {"date": datetime.date.today().isoformat(), "machine": machine()}
    body = markdown(meta, table)
    out = ROOT / "benchmarks" / "results"
    write_text(out / "n_term_transfer.md", body)
    write_text(out / "n_term_transfer.json", json.dumps({"meta": meta, "steps": rows}, indent=1))
    print(body)


if __name__ == "__main__":
    main()
