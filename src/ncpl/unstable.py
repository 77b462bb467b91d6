"""Runs that blew up without crossing their source's divergence rule, found relative to their own group.

A source flags a run as diverged by an absolute rule (a NaN, a loss above a threshold); some runs blow
up less than that (Marin: 300m runs at 4.5-6 nats where the best run of the group reaches 3.1). The
relative rule here: a converged run is *unstable* when its final loss lies above the best converged
run of its (source, N, D) group by more than the source's gap ceiling. The ceiling comes from the
source's own distribution of gaps: in an lr x batch grid the log10 gap to the group's best is close to
normal (StepLaw: median -1.37, robust sd 0.46; Marin -1.49, 0.42), and the ceiling is its median plus
`SIGMAS` robust standard deviations (1.4826 x MAD). Measured on the shared data: StepLaw 1.06 nats
(largest gap 0.54, nothing flagged), StepLaw MoE 0.90 (none), Gadre 0.24 (none), Gadre grid 0.93 (3
runs at 2.1-2.4 nats), Marin 0.60 (17 runs at 1.08-2.75 nats; the next largest gap is 0.56). Groups of
fewer than two converged runs have no reference and flag nothing.

Unstable runs are counted with the diverged ones: `mark_unstable` sets `diverged` on them (keeping an
`unstable` column to tell them apart), so laws and regression trees skip them, the divergence trees
(`ncpl.predictors.divergence`) and NCPL's divergence head learn them as positives, and the metrics treat
them as failed runs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ncpl.columns import hparam_groups, usable

SIGMAS = 3.0  # robust standard deviations of the log10 gap above its median
MIN_GAPS = 10  # a source with fewer positive gaps has no distribution to judge by: nothing is flagged


def gaps_to_best(runs: pd.DataFrame) -> np.ndarray:
    """Each converged run's final loss minus the best converged loss of its (source, N, D) group; NaN where
    the run diverged or its group has fewer than two converged runs."""
    runs = runs.reset_index(drop=True)
    ok = usable(runs).to_numpy()
    loss = pd.to_numeric(runs["final_loss"], errors="coerce").to_numpy(float)
    gaps = np.full(len(runs), np.nan)
    for rows in hparam_groups(runs):
        rows = rows[ok[rows]]
        if len(rows) >= 2:
            gaps[rows] = loss[rows] - loss[rows].min()
    return gaps


def gap_ceilings(runs: pd.DataFrame) -> dict[str, float]:
    """Per source, the gap (nats) above which a converged run counts as unstable; inf without enough gaps."""
    gaps, sources = gaps_to_best(runs), runs["source"].astype(str).to_numpy()
    out = {}
    for source in np.unique(sources):
        positive = gaps[(sources == source) & (gaps > 0)]
        if len(positive) < MIN_GAPS:
            out[source] = float("inf")
            continue
        log_gap = np.log10(positive)
        median = float(np.median(log_gap))
        spread = 1.4826 * float(np.median(np.abs(log_gap - median)))
        out[source] = float(10 ** (median + SIGMAS * spread))
    return out


def unstable(runs: pd.DataFrame) -> pd.Series:
    """True for the converged runs whose gap to their group's best exceeds their source's ceiling."""
    ceilings = gap_ceilings(runs)
    ceiling = runs["source"].astype(str).map(ceilings).to_numpy(float)
    with np.errstate(invalid="ignore"):
        flagged = gaps_to_best(runs) > ceiling
    return pd.Series(flagged, index=runs.index)


def mark_unstable(runs: pd.DataFrame) -> pd.DataFrame:
    """A copy with an `unstable` column and `diverged` set on those runs too. Apply it to a whole source's
    table before splitting: the group's best is then the best of all its runs, not of a split's share."""
    flagged = unstable(runs)
    out = runs.copy()
    out["unstable"] = flagged.to_numpy() | (out["unstable"].fillna(False).astype(bool) if "unstable" in out else False)
    out["diverged"] = out["diverged"].fillna(False).astype(bool) | out["unstable"]
    return out
