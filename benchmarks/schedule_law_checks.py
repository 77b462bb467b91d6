"""Three checks of whether more information or another fit gets the Multi-Power Law past issue 16's bars (numpy,
about a minute):

    python benchmarks/schedule_law_checks.py

1. The prefix with the same model's three protocol fit curves (`ncpl extrapolate CURVE --fit-on ...`), instead of
   benchmarks/schedule_laws.py's prefix alone or with the other size's loss-drop constants: error of the last
   measured loss from 10/20/40% of each test curve (bar: <= 0.010 from 20% on every Multi-Power schedule).
2. The mean of the Multi-Power and LR-annealing laws' predictions in the protocol.
3. The Multi-Power Law fitted on both sizes' fit curves at once, C, beta, gamma shared (L0, A, alpha, B per size).

2 and 3 are judged first on the protocol's fit curves (each fit schedule left out in turn, at both sizes at once for
3, so that the schedule is unseen as the six test schedules are), then reported on the test curves.
Writes benchmarks/results/schedule_law_checks.md.
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import machine  # noqa: E402
from schedule_laws import FIT, MIN_POINTS, PREFIXES, TEST, load_sets  # noqa: E402

from ncpl.atomic import write_text  # noqa: E402
from ncpl.laws.fitting import robust_fit  # noqa: E402
from ncpl.laws.schedule import HUBER_DELTA, AnnealingLaw, MultiPowerLaw, ScheduleCurve  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIZES = ("25M", "100M")


def mae(predicted: np.ndarray, curve: ScheduleCurve) -> float:
    return float(np.abs(predicted - curve.loss).mean())


def with_prefix(by_name: dict) -> list[str]:
    lines = ["| size | curve | protocol fit only | " + " | ".join(f"+ {p:.0%} prefix" for p in PREFIXES) + " |"]
    lines.append("|---|---|---|" + "---|" * len(PREFIXES))
    for size in SIZES:
        fit = [by_name[f"multipower/{size}/{n}"] for n in FIT]
        protocol = MultiPowerLaw().fit(fit)
        for name in TEST:
            curve = by_name[f"multipower/{size}/{name}"]
            cells = [protocol.predict(curve, curve.steps[-1:])[0] - curve.loss[-1]]
            for prefix in PREFIXES:
                seen = curve.steps <= prefix * curve.steps[-1]
                observed = ScheduleCurve(curve.lrs, curve.steps[seen], curve.loss[seen], curve.name)
                law = MultiPowerLaw().fit([*fit, observed]) if seen.sum() >= MIN_POINTS else None
                cells.append(np.nan if law is None else law.predict(curve, curve.steps[-1:])[0] - curve.loss[-1])
            lines.append(
                f"| {size} | {name} | " + " | ".join("n/a" if np.isnan(c) else f"{c:+.4f}" for c in cells) + " |"
            )
    return lines


def blended(fit: list[ScheduleCurve], held: list[ScheduleCurve]) -> dict[str, list[float]]:
    multipower, annealing = MultiPowerLaw().fit(fit), AnnealingLaw().fit(fit)
    out: dict[str, list[float]] = {"multipower": [], "annealing": [], "mean of both": []}
    for curve in held:
        a, b = multipower.predict(curve, curve.steps), annealing.predict(curve, curve.steps)
        for key, predicted in zip(out, (a, b, (a + b) / 2)):
            out[key].append(mae(predicted, curve))
    return out


def joint(fits: dict[str, list[ScheduleCurve]]) -> dict[str, MultiPowerLaw]:
    """One Multi-Power Law a size with C, beta, gamma shared, pulled as `MultiPowerLaw` pulls beta, gamma."""
    alone = {size: MultiPowerLaw().fit(curves) for size, curves in fits.items()}
    unit = alone[SIZES[0]]  # the sizes share schedules and horizons, so their lr and step units
    features = {size: [unit._features(c, c.steps) for c in curves] for size, curves in fits.items()}
    log_loss = {size: np.log(np.concatenate([c.loss for c in curves])) for size, curves in fits.items()}

    def params(p: np.ndarray, i: int) -> np.ndarray:
        return np.r_[p[4 * i : 4 * i + 4], p[8:]]

    def residuals(p: np.ndarray) -> np.ndarray:
        misses = [
            np.log(np.maximum(np.concatenate([unit._value(f, params(p, i)) for f in features[size]]), 1e-10))
            - log_loss[size]
            for i, size in enumerate(SIZES)
        ]
        return np.concatenate([*misses, unit.prior * (p[9:] - np.asarray(unit.shape_prior))])

    low, high = np.array(MultiPowerLaw.lower, float), np.array(MultiPowerLaw.upper, float)
    lower, upper = np.r_[low[:4], low[:4], low[4:]], np.r_[high[:4], high[:4], high[4:]]
    upper[[0, 4]] = [min(high[0], np.exp(log_loss[size]).min()) for size in SIZES]
    starts = [np.r_[alone[SIZES[0]].params_[:4], alone[SIZES[1]].params_[:4], alone[s].params_[4:]] for s in SIZES]
    best = robust_fit(residuals, starts, lower, upper, f_scale=HUBER_DELTA).x
    laws = {}
    for i, size in enumerate(SIZES):
        law = MultiPowerLaw()
        law.lr_scale_, law.step_scale_, law.params_ = unit.lr_scale_, unit.step_scale_, params(best, i)
        laws[size] = law
    return laws


def main() -> None:
    by_name = {c.name: c for c in load_sets(ROOT.parent / "shared" / "data")["multipower"]}
    fit = {size: [by_name[f"multipower/{size}/{n}"] for n in FIT] for size in SIZES}
    test = {size: [by_name[f"multipower/{size}/{n}"] for n in TEST] for size in SIZES}

    dev = {"multipower": [], "annealing": [], "mean of both": [], "joint, shape shared": []}
    for k in range(len(FIT)):
        rest = {size: [c for j, c in enumerate(fit[size]) if j != k] for size in SIZES}
        shared = joint(rest)
        for size in SIZES:
            for key, values in blended(rest[size], [fit[size][k]]).items():
                dev[key] += values
            dev["joint, shape shared"].append(mae(shared[size].predict(fit[size][k], fit[size][k].steps), fit[size][k]))
    on_test = {key: {} for key in dev}
    shared = joint(fit)
    for size in SIZES:
        for key, values in blended(fit[size], test[size]).items():
            on_test[key][size] = float(np.mean(values))
        on_test["joint, shape shared"][size] = float(
            np.mean([mae(shared[size].predict(c, c.steps), c) for c in test[size]])
        )

    lines = [
        f"Measured {datetime.date.today().isoformat()} on {machine()} by `python benchmarks/schedule_law_checks.py`.",
        "",
        "### The prefix plus the same model's three protocol fit curves: error of the last measured loss (nats)",
        "",
        *with_prefix(by_name),
        "",
        "### Protocol fits: mean per-curve MAE (nats); dev = each fit schedule left out in turn (both sizes pooled)",
        "",
        "| fit | dev | test 25M | test 100M |",
        "|---|---|---|---|",
        *(
            f"| {key} | {np.mean(dev[key]):.5f} | {on_test[key]['25M']:.5f} | {on_test[key]['100M']:.5f} |"
            for key in dev
        ),
    ]
    body = "\n".join(lines) + "\n"
    write_text(ROOT / "benchmarks" / "results" / "schedule_law_checks.md", body)
    print(body)


if __name__ == "__main__":
    main()
