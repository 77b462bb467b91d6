"""Continued-pre-training hyperparameter laws (ncpl.laws.cpt) on held-out StepLaw shapes.

    python benchmarks/cpt_laws.py [--shared ../shared/data]

The laws are fitted on the StepLaw training split of benchmarks/accuracy.py (h960 and h1024 less
the seeded 15% ID runs; OOD = h1280/L10), once with lr and batch power laws in C alone and once
with N entering (k C^c N^n); and, to show how much the grid's noisy argmin moves them, once more
with N on all h960 and h1024 runs (ID included). Reported:
- regret: per (N, D) group of >= 5 runs, the true loss of the run nearest the predicted (lr, batch)
  in log space minus the group's best (ncpl.evaluate.regret: a diverged pick costs the group's worst
  converged loss), against the StepLaw law's pick. StepLaw's constants were fitted by its authors on
  all their runs, the held-out shapes included, so it is a leaky reference, not a peer.
- a simulated continuation: on the held-out shape, the best run at a smaller D is the checkpoint;
  its loss is inverted to C_eq, and the lr and batch predicted at C_eq + 6 N (D_large - D_small) are
  compared with the grid's best at D_large, and with the prediction at the true 6 N D_large.
  StepLaw's runs all start from scratch: this checks the inversion, not a real continuation.
Writes benchmarks/results/cpt_laws.{md,json} with the machine and the date.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import ROOT, benchmarks, machine  # noqa: E402

from ncpl.atomic import write_text  # noqa: E402
from ncpl.columns import best_runs, compute, effective_params, tokens  # noqa: E402
from ncpl.evaluate import regret  # noqa: E402
from ncpl.laws import cpt, steplaw  # noqa: E402
from ncpl.report import markdown_table  # noqa: E402

VARIANTS = {"C only": False, "C and N": True}
SENSITIVITY = "C and N, train+ID"  # the same law through the best of all small-shape runs: how much the grid's argmin noise moves it


def log_distance(runs: pd.DataFrame, lr: np.ndarray, batch: np.ndarray) -> np.ndarray:
    return np.hypot(
        np.log(runs["optimizer.lr"].to_numpy(float) / lr), np.log(runs["batch.tokens"].to_numpy(float) / batch)
    )


def law_scores(laws: cpt.CPTLaws, runs: pd.DataFrame, flops: np.ndarray | None = None) -> np.ndarray:
    """Distance of each run from the laws' (lr, batch) at its N and the given compute (default its own 6ND)."""
    flops, n = compute(runs) if flops is None else flops, effective_params(runs)
    return log_distance(runs, laws.lr(flops, n), laws.batch(flops, n))


def group_rows(runs: pd.DataFrame, laws: dict[str, cpt.CPTLaws]) -> list[dict]:
    out = []
    for (n, d), group in runs.groupby([effective_params(runs), tokens(runs)]):
        best = best_runs(group, 5)
        if best.empty:
            continue
        row = {
            "N": n,
            "D": d,
            "runs": len(group),
            "best_loss": float(best["final_loss"].iloc[0]),
            "best_lr": float(best["optimizer.lr"].iloc[0]),
            "best_batch": float(best["batch.tokens"].iloc[0]),
        }
        for name, law in laws.items():
            predicted = law.at(6 * n * d, n)
            row[f"{name}: lr"], row[f"{name}: batch"] = predicted["lr"], predicted["batch_tokens"]
            row[f"{name}: regret"] = regret(group, law_scores(law, group))["regret"]
        row["steplaw-law: regret"] = regret(group, steplaw.distance_from_optimum(group))["regret"]
        out.append(row)
    return out


def continuation_rows(runs: pd.DataFrame, laws: cpt.CPTLaws) -> list[dict]:
    """Every (D_small, D_large) pair of one held-out model size: checkpoint = the best run at D_small."""
    out = []
    for n, shape in runs.groupby(effective_params(runs)):
        by_d = {d: group for d, group in shape.groupby(tokens(shape))}
        for small, large in combinations(sorted(by_d), 2):
            checkpoint = float(best_runs(by_d[small], 5)["final_loss"].iloc[0])
            target = by_d[large]
            best = best_runs(target, 5).iloc[0]
            predicted = laws.predict(checkpoint, n, large - small)
            scratch = laws.at(6 * n * large, n)
            out.append(
                {
                    "N": n,
                    "D_checkpoint": small,
                    "D_target": large,
                    "checkpoint_loss": checkpoint,
                    "C_eq / 6ND_checkpoint": predicted["C_eq"] / (6 * n * small),
                    "C_total / 6ND_target": predicted["C_total"] / (6 * n * large),
                    "lr": predicted["lr"],
                    "batch": predicted["batch_tokens"],
                    "best_lr": float(best["optimizer.lr"]),
                    "best_batch": float(best["batch.tokens"]),
                    "log lr / best": float(np.log(predicted["lr"] / best["optimizer.lr"])),
                    "log batch / best": float(np.log(predicted["batch_tokens"] / best["batch.tokens"])),
                    "regret (C_eq)": regret(target, law_scores(laws, target, predicted["C_total"]))["regret"],
                    "regret (true C)": regret(target, law_scores(laws, target))["regret"],
                    "regret (steplaw-law)": regret(target, steplaw.distance_from_optimum(target))["regret"],
                    "lr (true C)": scratch["lr"],
                    "batch (true C)": scratch["batch_tokens"],
                }
            )
    return out


def table(rows: list[dict]) -> str:
    return markdown_table(rows, fmt=lambda v: f"{v:.4g}" if isinstance(v, float) else str(v))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()

    train, tests = benchmarks(args.shared)["steplaw"]
    laws = {name: cpt.fit_laws(train, with_n=with_n) for name, with_n in VARIANTS.items()}
    laws[SENSITIVITY] = cpt.fit_laws(pd.concat([train, tests["steplaw-id"]]), with_n=True)
    summary = []
    for test, runs in tests.items():
        runs = runs.reset_index(drop=True)
        pickers = {
            **{name: law_scores(law, runs) for name, law in laws.items()},
            "steplaw-law": steplaw.distance_from_optimum(runs),
        }
        summary += [{"test": test, "picker": name, **regret(runs, score)} for name, score in pickers.items()]
    ood = tests["steplaw-ood"]
    groups = group_rows(ood, laws)
    continuation = continuation_rows(ood, laws["C and N"])
    meta = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "train_runs": len(train),
        "fitted_groups": laws["C and N"].groups,
    }
    constants = {name: law.model_dump() for name, law in laws.items()}
    write_text(
        args.out / "cpt_laws.json",
        json.dumps(
            {"meta": meta, "laws": constants, "regret": summary, "ood_groups": groups, "continuation": continuation},
            indent=1,
        ),
    )
    law_lines = [
        f"- {name}: L(C) = {law.loss.E:.4f} + {law.loss.A:.4g} C^-{law.loss.alpha:.4f}; "
        f"lr = {law.lr.k:.4g} C^{law.lr.c:.3f} N^{law.lr.n:.3f}; batch (tokens) = {law.batch.k:.4g} C^{law.batch.c:.3f} N^{law.batch.n:.3f}"
        for name, law in laws.items()
    ]
    mean = {
        k: float(np.mean([row[k] for row in continuation]))
        for k in ("regret (C_eq)", "regret (true C)", "regret (steplaw-law)")
    }
    body = (
        "\n\n".join(
            [
                f"Measured {meta['date']} on {meta['machine']} by `python benchmarks/cpt_laws.py`. Laws fitted on the best run of each "
                f"of the {meta['fitted_groups']} (N, D) groups of the StepLaw training split ({len(train)} runs, h960 and h1024); "
                "tested on the ID runs and the held-out h1280/L10 shape. The StepLaw law's constants were fitted on all StepLaw runs "
                "(held-out shape included): a leaky reference. "
                f"`{SENSITIVITY}` is fitted on the ID runs too (its ID rows are in-sample): it shows how much the noisy "
                "grid argmin moves the laws.",
                "\n".join(law_lines),
                "Regret of the run nearest each picker's (lr, batch), per (N, D) group of >= 5 runs:\n\n"
                + table(
                    [
                        {
                            k: row[k]
                            for k in (
                                "test",
                                "picker",
                                "groups",
                                "regret",
                                "median_regret",
                                "diverged_picks",
                                "runs_to_near_best",
                            )
                        }
                        for row in summary
                    ]
                ),
                "Held-out groups:\n\n" + table(groups),
                "Simulated continuation on the held-out shape (laws: C and N): checkpoint = best run at D_checkpoint, "
                "continued for D_target - D_checkpoint tokens; mean regret "
                + ", ".join(f"{k.removeprefix('regret ')} {v:.4f}" for k, v in mean.items())
                + ".\n\n"
                + table(
                    [
                        {k: v for k, v in row.items() if not k.endswith("(true C)") or k.startswith("regret")}
                        for row in continuation
                    ]
                ),
            ]
        )
        + "\n"
    )
    write_text(args.out / "cpt_laws.md", body)
    print(body)


if __name__ == "__main__":
    main()
