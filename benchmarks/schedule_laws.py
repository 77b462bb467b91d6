"""Schedule-aware loss-curve laws on real curves: the Multi-Power protocol and prefix extrapolation.

    python benchmarks/schedule_laws.py [--shared ../shared/data] [--skip-selection]

1. Multi-Power protocol (Luo et al. 2025), per model size: fit on cosine_24000, constant_24000 and
   wsdcon_9, predict the other six curves; the mean over curves of each curve's MAE, against the
   published 0.0038 (25M) / 0.0044 (100M). Rows: the Multi-Power Law as shipped (beta, gamma pulled
   towards 0.6, 0.7), pulled towards 0.5, 1.3 (the wider selection grid's pick, not adopted:
   `MultiPowerLaw` says why), unpulled, the repository's published constants, the LR-annealing law.
   Selection of the pull (unless --skip-selection): each of the three fit curves left out in turn
   (fit on two, MAE on the third), pooled over both sizes; the six test curves play no part.
2. Prefix extrapolation: each curve's losses up to 10/20/40% of its last measured step, plus its whole
   lr schedule, fitted by each law (multipower, annealing, temporal, power; and the Multi-Power Law
   keeping the loss-drop constants B, C, beta, gamma of a `CurveShape` through whole curves of other
   models of the source, each anchored at its own end: for Multi-Power the other size's three protocol
   fit curves, for (Mis)Fitting every curve of the two models with the longest curves (a curve of one of
   them: the other's); Gemstones curves never decay the lr, so n/a; a second row keeps that shape's
   alpha too, fitting L0 and A only); |error| at the last measured step (end) and the mean
   |error| after the prefix (later), for the dev curves (which choose between the two rows: the
   protocol's fit curves, the (Mis)Fitting donor models' curves) and the test curves apart. A curve enters a prefix when
   the prefix holds at least 8 points (the Multi-Power Law's 7 parameters + 1), so every law is
   scored on the same curves. Curves: Multi-Power (18; bundled), Gemstones constant-lr curves (30;
   bundled; steps = tokens / 4,194,304, warmup unknown so the lr is constant from step 0),
   (Mis)Fitting cosine curves (../shared/data; steps = tokens / (512 x 2048), the sweep's 50-step
   warmup and 0.1 x peak min lr).
Writes benchmarks/results/schedule_laws.{md,json} and schedule_laws_{protocol,prefix}.png.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import machine  # noqa: E402

from ncpl.atomic import write_text  # noqa: E402
from ncpl.laws.schedule import AnnealingLaw, CurveShape, MultiPowerLaw, ScheduleCurve, fit_law, shape_law  # noqa: E402
from ncpl.plots import save_figure  # noqa: E402
from ncpl.schedules import config_lrs, tokens_to_steps  # noqa: E402
from ncpl.sources import import_runs  # noqa: E402
from ncpl.store import read_runs, to_records  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIT = ("cosine_24000", "constant_24000", "wsdcon_9")
TEST = ("constant_72000", "cosine_72000", "wsd_20000_24000", "wsdld_20000_24000", "wsdcon_3", "wsdcon_18")
PUBLISHED_MAE = {"25M": 0.0038, "100M": 0.0044}
PUBLISHED = {  # github thu-yao-01-luo/MultiPowerLaw src/config.py: L0, A, alpha, B, C, beta, gamma (raw lr, steps)
    "25M": [3.04045406, 0.52468604, 0.50786857, 363.78751622, 2.06560812, 0.58279013, 0.64142257],
    "100M": [2.6514477, 0.60115152, 0.45295811, 437.9464276, 2.13245612, 0.59785199, 0.65523644],
}
# the pull on beta, gamma: weight, centre
PRIORS = (
    (0.0, (0.5, 0.5)),
    (0.03, (0.5, 0.5)),
    (0.1, (0.5, 0.5)),
    (0.1, (0.6, 0.6)),
    (0.1, (0.6, 0.7)),
    (0.3, (0.6, 0.7)),
    (1.0, (0.6, 0.7)),
    (0.1, (0.7, 0.7)),
    (0.1, (0.6, 0.8)),
    (0.3, (0.6, 0.8)),
    (0.1, (0.7, 0.8)),
    (0.1, (0.8, 0.8)),
    (0.1, (0.5, 0.9)),
    (0.1, (0.6, 0.9)),
    (0.1, (0.5, 1.0)),
    (0.1, (0.6, 1.0)),
    (0.1, (0.5, 1.1)),
    (0.1, (0.4, 1.2)),
    (0.1, (0.5, 1.2)),
    (0.1, (0.6, 1.2)),
    (0.1, (0.5, 1.3)),
    (0.1, (0.5, 1.5)),
    (0.1, (0.6, 1.5)),
)
PREFIXES = (0.1, 0.2, 0.4)
TRANSFER, TRANSFER_ALPHA = "multipower, drop from other runs", "multipower, drop and alpha from other runs"
LAW_NAMES = ("multipower", TRANSFER, TRANSFER_ALPHA, "annealing", "temporal", "power")
MIN_POINTS = 8


def curve_of(record, lrs=None) -> ScheduleCurve:
    steps = np.rint(tokens_to_steps(record.config, record.curve.tokens)).astype(int)
    if lrs is None:
        lrs = config_lrs(record.config, max(record.config.schedule.total_steps or 0, int(steps[-1]) + 1))
    return ScheduleCurve(lrs, steps, np.array(record.curve.loss), record.run_id)


def load_sets(shared: Path) -> dict[str, list[ScheduleCurve]]:
    multipower = [curve_of(r) for r in to_records(read_runs(ROOT / "data/multipower.parquet"))]
    gemstones = []
    for record in to_records(read_runs(ROOT / "data/gemstones.parquet")):
        if record.curve is not None:
            last = int(np.rint(tokens_to_steps(record.config, record.curve.tokens[-1:])[0]))
            gemstones.append(curve_of(record, np.ones(last + 1)))  # constant lr; warmup not in the files
    misfitting = [curve_of(r) for r in import_runs("misfitting", [shared / "misfitting/scaling_results.csv"]).records]
    return {"multipower": multipower, "gemstones": gemstones, "misfitting": misfitting}


def published_law(size: str) -> MultiPowerLaw:
    law = MultiPowerLaw()
    law.lr_scale_, law.step_scale_ = 3e-4, 1.0
    l0, a, alpha, b, c, beta, gamma = PUBLISHED[size]
    law.params_ = np.array(
        [l0, np.log(a * 3e-4**-alpha), alpha, np.log(b * 3e-4), np.log(c * 3e-4 ** (1 - gamma)), beta, gamma]
    )
    return law


def mae(law, curve: ScheduleCurve) -> float:
    return float(np.abs(law.predict(curve, curve.steps) - curve.loss).mean())


def protocol(curves: list[ScheduleCurve], select: bool) -> tuple[dict, dict, dict]:
    by_name = {c.name: c for c in curves}
    rows, selection, fitted_laws = {}, {}, {}
    for size in ("25M", "100M"):
        fit = [by_name[f"multipower/{size}/{n}"] for n in FIT]
        test = [by_name[f"multipower/{size}/{n}"] for n in TEST]
        candidates = {
            "multipower": MultiPowerLaw(),
            "multipower (pulled towards 0.5, 1.3)": MultiPowerLaw(shape_prior=(0.5, 1.3)),
            "multipower (unpulled)": MultiPowerLaw(prior=0.0),
            "annealing": AnnealingLaw(),
        }
        for label, law in candidates.items():
            started = time.perf_counter()
            law.fit(fit)
            rows[(size, label)] = {
                "per_curve": {c.name.split("/")[-1]: mae(law, c) for c in test},
                "fit_seconds": round(time.perf_counter() - started, 1),
                "params": law.params,
            }
            mean = np.mean(list(rows[(size, label)]["per_curve"].values()))
            print(f"protocol {size} {label}: {mean:.5f}", flush=True)
        fitted_laws[size] = candidates["multipower"]
        published = published_law(size)
        rows[(size, "multipower (published constants)")] = {
            "per_curve": {c.name.split("/")[-1]: mae(published, c) for c in test}
        }
        if select:
            for prior, centre in PRIORS:
                held = [
                    mae(MultiPowerLaw(prior=prior, shape_prior=centre).fit([c for c in fit if c is not out]), out)
                    for out in fit
                ]
                selection[(size, prior, centre)] = held
                print(f"selection {size} prior {prior} towards {centre}: {np.round(held, 4)}", flush=True)
    return rows, selection, fitted_laws


def model_of(curve: ScheduleCurve) -> str:
    return curve.name.split("/")[1]


def anchored(curve: ScheduleCurve) -> tuple[ScheduleCurve, int, float]:
    """A whole curve as `CurveShape.fit_curves` takes it: the lr in units of its peak, the checkpoints before its
    last, and the last one's step and loss."""
    before = ScheduleCurve(curve.lrs / curve.lrs.max(), curve.steps[:-1], curve.loss[:-1], curve.name)
    return before, int(curve.steps[-1]), float(curve.loss[-1])


def shape_donor(curves: list[ScheduleCurve]) -> MultiPowerLaw:
    """The loss-drop constants of a `CurveShape` through whole curves, each anchored at its own end, as a Multi-Power
    Law that a prefix fit can keep them from (models of other sizes: their level and A differ, the shape is shared)."""
    params, step_scale = CurveShape().fit_curves([anchored(c) for c in curves])
    return shape_law(step_scale, params)


def drop_donors(sets: dict[str, list[ScheduleCurve]]):
    """For each curve, the shape whose loss-drop constants the prefix fit keeps, fitted on whole curves of other
    models of its source: for Multi-Power the other size's three protocol fit curves; for (Mis)Fitting every curve
    of the two models with the longest curves (for a curve of one of them, the other's); None for Gemstones, whose lr
    never decays. Returns the donor of a curve, the two (Mis)Fitting donor models, and the donors' constants."""
    longest: dict[str, ScheduleCurve] = {}
    for curve in sets["misfitting"]:
        if curve.steps.size > longest.get(model_of(curve), curve).steps.size or model_of(curve) not in longest:
            longest[model_of(curve)] = curve
    models = [model_of(c) for c in sorted(longest.values(), key=lambda c: -c.steps.size)[:2]]
    curves_of = {model: [c for c in sets["misfitting"] if model_of(c) == model] for model in models}
    misfitting = {model: shape_donor(curves_of[other]) for model, other in zip(models, models[::-1])}
    misfitting["both"] = shape_donor(curves_of[models[0]] + curves_of[models[1]])
    multipower = {
        size: shape_donor([c for c in sets["multipower"] if model_of(c) == size and c.name.split("/")[-1] in FIT])
        for size in ("25M", "100M")
    }

    def donor(source: str, curve: ScheduleCurve) -> MultiPowerLaw | None:
        if source == "multipower":
            return multipower["100M" if model_of(curve) == "25M" else "25M"]
        if source == "misfitting":
            return misfitting.get(model_of(curve), misfitting["both"])
        return None

    params = {f"misfitting {key}": law.params for key, law in misfitting.items()}
    return donor, set(models), params | {f"multipower {size}": law.params for size, law in multipower.items()}


def part(source: str, curve: ScheduleCurve, donor_models: set[str]) -> str:
    """ "dev" (the curves that choose between the prefix fits: the Multi-Power protocol's three fit curves of each
    size, and the (Mis)Fitting curves of the two donor models) or "test" (every other curve, reported)."""
    if source == "multipower" and curve.name.split("/")[-1] in FIT:
        return "dev"
    if source == "misfitting" and model_of(curve) in donor_models:
        return "dev"
    return "test"


def fit_prefix(law_name: str, observed: ScheduleCurve, drop_from: MultiPowerLaw | None):
    """`law_name` fitted to a prefix; None for a transfer row without a donor (a source whose lr never decays)."""
    if law_name in (TRANSFER, TRANSFER_ALPHA):
        if drop_from is None:
            return None
        return fit_law("multipower", observed, drop_from=drop_from, keep_alpha=law_name == TRANSFER_ALPHA)[1]
    return fit_law(law_name, observed)[1]


def prefix_scores(sets: dict[str, list[ScheduleCurve]], donor, donor_models: set[str]) -> list[dict]:
    rows = []
    for source, curves in sets.items():
        for curve in curves:
            drop_from = donor(source, curve)
            for prefix in PREFIXES:
                seen = curve.steps <= prefix * curve.steps[-1]
                if seen.sum() < MIN_POINTS or seen.all():
                    continue
                observed = ScheduleCurve(curve.lrs, curve.steps[seen], curve.loss[seen], curve.name)
                for name in LAW_NAMES:
                    predict = fit_prefix(name, observed, drop_from)
                    if predict is None:
                        continue
                    error = predict(curve.steps[~seen]) - curve.loss[~seen]
                    rows.append(
                        {
                            "source": source,
                            "part": part(source, curve, donor_models),
                            "curve": curve.name,
                            "prefix": prefix,
                            "law": name,
                            "points_seen": int(seen.sum()),
                            "end_error": float(error[-1]),
                            "later_abs": float(np.abs(error).mean()),
                        }
                    )
            print(f"prefix {source}: {curve.name} done", flush=True)
    return rows


def prefix_summary(rows: list[dict]) -> list[dict]:
    out = []
    for source, group in dict.fromkeys((r["source"], r["part"]) for r in rows):
        for prefix in PREFIXES:
            for law in LAW_NAMES:
                chosen = [
                    r for r in rows if (r["source"], r["part"], r["prefix"], r["law"]) == (source, group, prefix, law)
                ]
                if chosen:
                    ends = np.abs([r["end_error"] for r in chosen])
                    out.append(
                        {
                            "source": source,
                            "part": group,
                            "prefix": prefix,
                            "law": law,
                            "curves": len(chosen),
                            "end_mae": float(ends.mean()),
                            "end_max": float(ends.max()),
                            "later_mae": float(np.mean([r["later_abs"] for r in chosen])),
                        }
                    )
    return out


def plot_protocol(curves: list[ScheduleCurve], laws: dict[str, MultiPowerLaw], path: Path) -> None:
    from matplotlib.figure import Figure

    by_name = {c.name: c for c in curves}
    fig = Figure(figsize=(12, 4.8))
    for ax, (size, law) in zip(fig.subplots(1, 2), laws.items()):
        for i, name in enumerate(FIT + TEST):
            curve = by_name[f"multipower/{size}/{name}"]
            color = f"C{i % 10}"
            ax.scatter(curve.steps, curve.loss, s=3, color=color, alpha=0.5)
            steps = np.arange(curve.steps[0], len(curve.lrs), 32)
            ax.plot(
                steps,
                law.predict(curve, steps),
                color=color,
                lw=1,
                ls="-" if name in TEST else "--",
                label=f"{name} ({'predicted' if name in TEST else 'fitted'})",
            )
        ax.set(
            xlabel="step",
            ylabel="loss",
            title=f"Multi-Power {size}: fitted on 3 schedules (dashed), predicting 6",
            ylim=(min(c.loss.min() for c in curves if size in c.name) - 0.03, 3.9 if size == "25M" else 3.6),
        )
        ax.legend(fontsize=6)
    save_figure(fig, path, dpi=100)


def plot_prefix(
    sets: dict[str, list[ScheduleCurve]], donor, donor_models: set[str], path: Path, prefix: float = 0.2
) -> None:
    """Four test curves (none of them chose a prefix fit) with every prefix fit drawn."""
    from matplotlib.figure import Figure

    picks = [
        ("multipower", "multipower/100M/wsd_20000_24000"),
        ("multipower", "multipower/25M/cosine_72000"),
        ("gemstones", max(sets["gemstones"], key=lambda c: c.steps[-1]).name),
        (
            "misfitting",
            max((c for c in sets["misfitting"] if model_of(c) not in donor_models), key=lambda c: c.steps.size).name,
        ),
    ]
    fig = Figure(figsize=(12, 8))
    for ax, (source, name) in zip(fig.subplots(2, 2).ravel(), picks):
        curve = next(c for c in sets[source] if c.name == name)
        seen = curve.steps <= prefix * curve.steps[-1]
        observed = ScheduleCurve(curve.lrs, curve.steps[seen], curve.loss[seen], curve.name)
        ax.scatter(curve.steps[seen], curve.loss[seen], s=8, color="C0", label=f"observed ({prefix:.0%})")
        ax.scatter(curve.steps[~seen], curve.loss[~seen], s=5, color="0.6", label="held out")
        steps = np.linspace(curve.steps[0], curve.steps[-1], 300).astype(int)
        for i, law_name in enumerate(LAW_NAMES):
            predict = fit_prefix(law_name, observed, donor(source, curve))
            if predict is None:
                continue
            ax.plot(steps, predict(steps), color=f"C{i + 1}", lw=1.2, label=law_name)
        top = curve.loss[seen][min(2, seen.sum() - 1)] + 0.1
        ax.set(xlabel="step", ylabel="loss", title=name, ylim=(curve.loss.min() - 0.1, top))
        ax.legend(fontsize=7)
    save_figure(fig, path, dpi=100)


def markdown(meta: dict, protocol_rows: dict, selection: dict, summary: list[dict]) -> str:
    lines = [
        f"Measured {meta['date']} on {meta['machine']} by `python benchmarks/schedule_laws.py` "
        f"({meta['seconds']:.0f} s, load average {meta['load']}).",
        "",
        "### Multi-Power protocol: fit on cosine_24000, constant_24000, wsdcon_9; MAE (nats) on the other six",
        "",
        "| size | law | mean per-curve MAE | published | " + " | ".join(TEST) + " |",
        "|---|---|---|---|" + "---|" * len(TEST),
    ]
    for (size, label), row in protocol_rows.items():
        per = row["per_curve"]
        lines.append(
            f"| {size} | {label} | {np.mean(list(per.values())):.5f} | {PUBLISHED_MAE[size]} | "
            + " | ".join(f"{per[n]:.4f}" for n in TEST)
            + " |"
        )
    if selection:
        lines += [
            "",
            "Choice of the pull on beta, gamma: MAE on each fit curve left out (fit on the other two)",
            "",
            "| pull (weight, towards beta, gamma) | 25M (cosine, constant, wsdcon_9 left out) | 100M | pooled mean |",
            "|---|---|---|---|",
        ]
        for prior, centre in PRIORS:
            a, b = selection[("25M", prior, centre)], selection[("100M", prior, centre)]
            lines.append(
                f"| {prior}, {centre} | {' / '.join(f'{v:.4f}' for v in a)} | "
                f"{' / '.join(f'{v:.4f}' for v in b)} | {np.mean(a + b):.4f} |"
            )
    lines += [
        "",
        "### Prefix extrapolation: the prefix's losses plus the whole lr schedule",
        "",
        "end = |error| at the last measured step (mean, max over curves); later = mean |error| after the prefix. "
        "Part `dev`: the curves that chose between the two transfer rows (the Multi-Power protocol's fit curves; the (Mis)Fitting "
        "curves of the donor models); `test`: all other curves.",
        "",
        "| source | part | prefix | curves | "
        + " | ".join(f"{law} end (max)" for law in LAW_NAMES)
        + " | "
        + " | ".join(f"{law} later" for law in LAW_NAMES)
        + " |",
        "|---|---|---|---|" + "---|" * (2 * len(LAW_NAMES)),
    ]
    for source, group in dict.fromkeys((r["source"], r["part"]) for r in summary):
        for prefix in PREFIXES:
            cell = {r["law"]: r for r in summary if (r["source"], r["part"], r["prefix"]) == (source, group, prefix)}
            if cell:
                lines.append(
                    f"| {source} | {group} | {prefix:.0%} | {cell['multipower']['curves']} | "
                    + " | ".join(
                        f"{cell[law]['end_mae']:.4f} ({cell[law]['end_max']:.3f})" if law in cell else "n/a"
                        for law in LAW_NAMES
                    )
                    + " | "
                    + " | ".join(f"{cell[law]['later_mae']:.4f}" if law in cell else "n/a" for law in LAW_NAMES)
                    + " |"
                )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument(
        "--skip-selection", action="store_true", help="do not re-run the choice of the beta, gamma pull"
    )
    args = parser.parse_args()

    start = time.perf_counter()
    sets = load_sets(args.shared)
    protocol_rows, selection, laws = protocol(sets["multipower"], not args.skip_selection)
    donor, donor_models, donor_params = drop_donors(sets)
    rows = prefix_scores(sets, donor, donor_models)
    summary = prefix_summary(rows)
    meta = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "seconds": round(time.perf_counter() - start, 1),
        "load": " ".join(f"{v:.1f}" for v in os.getloadavg()),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    plot_protocol(sets["multipower"], laws, args.out / "schedule_laws_protocol.png")
    plot_prefix(sets, donor, donor_models, args.out / "schedule_laws_prefix.png")
    body = markdown(meta, protocol_rows, selection, summary)
    write_text(args.out / "schedule_laws.md", body)
    write_text(
        args.out / "schedule_laws.json",
        json.dumps(
            {
                "meta": meta,
                "protocol": [{"size": s, "law": label, **row} for (s, label), row in protocol_rows.items()],
                "selection": [
                    {"size": s, "prior": p, "towards": c, "held_out_mae": v} for (s, p, c), v in selection.items()
                ],
                "drop_donors": donor_params,
                "prefix_summary": summary,
                "prefix_curves": rows,
            },
            indent=1,
        ),
    )
    print(body)


if __name__ == "__main__":
    main()
