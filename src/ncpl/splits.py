"""Train / in-distribution / out-of-distribution splits of a runs table.

OOD holds the runs at or above a model-size (or compute) threshold, or listed by id; ID is a seeded
random fraction of the rest, drawn per source so that every source is represented; train is what
remains. No run is in two splits.

`validation_split` carves validation runs out of a training table, per source: a seeded random share
(`random`, which rewards interpolation), or the runs of the source's largest model size(s) (`largest`,
the step a user takes when asking about a larger model) beside a random share of the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ncpl.columns import compute, effective_params, tokens
from ncpl.errors import ConfigError, DataError


@dataclass
class Split:
    train: pd.DataFrame
    id: pd.DataFrame
    ood: pd.DataFrame

    def items(self) -> list[tuple[str, pd.DataFrame]]:
        return [("train", self.train), ("id", self.id), ("ood", self.ood)]


def split_runs(
    frame: pd.DataFrame,
    *,
    id_frac: float = 0.15,
    seed: int = 0,
    ood_min_params: float | None = None,
    ood_min_flops: float | None = None,
    ood_runs: list[str] | None = None,
    id_runs: list[str] | None = None,
) -> Split:
    if not 0 <= id_frac < 1:
        raise ConfigError(f"id_frac: got {id_frac}, expected a fraction in [0, 1)")
    if frame["run_id"].duplicated().any():
        raise DataError(
            f"run_id: duplicated ids, e.g. {frame['run_id'][frame['run_id'].duplicated()].iloc[:3].tolist()}"
        )
    for name, ids in (("ood_runs", ood_runs), ("id_runs", id_runs)):
        unknown = sorted(set(ids or ()) - set(frame["run_id"]))
        if unknown:
            raise ConfigError(
                f"{name}: {len(unknown)} ids match no run ({', '.join(unknown[:5])}{', ...' if len(unknown) > 5 else ''}); "
                "give ids from the runs' run_id column (list them with pandas.read_parquet(FILE)['run_id'])"
            )
    ood = pd.Series(False, index=frame.index)
    if ood_min_params is not None:
        ood |= frame["model.n_params"] >= ood_min_params
    if ood_min_flops is not None:
        ood |= compute(frame) >= ood_min_flops
    if ood_runs:
        ood |= frame["run_id"].isin(ood_runs)
    held = pd.Series(False, index=frame.index)
    if id_runs:
        held |= frame["run_id"].isin(id_runs) & ~ood
        overlap = set(id_runs) & set(frame.loc[ood, "run_id"])
        if overlap:
            raise ConfigError(f"id_runs: {sorted(overlap)[:3]} are also out of distribution")
    rng = np.random.default_rng(seed)
    for _, group in frame[~ood & ~held].groupby("source", sort=True):
        take = int(round(id_frac * len(group)))
        held.loc[rng.choice(group.index.to_numpy(), size=take, replace=False)] = True
    return Split(train=frame[~ood & ~held], id=frame[held], ood=frame[ood])


VAL_SPLITS = ("largest", "random")
# decades (1.26x): the smallest step between the sizes of a scaling ladder that `largest_sizes` holds out
MIN_STEP = 0.1


def largest_sizes(frame: pd.DataFrame, min_frac: float, min_step: float = MIN_STEP) -> pd.Series:
    """Per source, the runs at its largest model sizes (effective N), taken from the top down until they hold at
    least `min_frac` of the source's runs and the largest lies at least `min_step` decades above the largest left,
    and leave one size out; a source of one model size steps in tokens (D) instead, and a source of one N and one
    D gives none.

    The step matters where the held-out runs calibrate how fast an interval widens beyond the training range
    (NCPL._extrapolation_slopes): held out one size a hair above the next (Gemstones: 0.007 decades), runs are
    scored at a distance of almost zero, and the slope fitted to them explodes."""
    chosen = pd.Series(False, index=frame.index)
    for _, group in frame.groupby("source", sort=True):
        for values in (effective_params(group), tokens(group)):
            sizes = np.unique(values[np.isfinite(values)])
            if len(sizes) < 2:
                continue
            take = np.zeros(len(group), bool)
            for k, size in enumerate(sizes[:0:-1], start=2):  # from the largest down, never the smallest
                take |= values == size
                if take.mean() >= min_frac and np.log10(sizes[-1] / sizes[-k]) >= min_step:
                    break
            chosen.loc[group.index[take]] = True
            break
    return chosen


def validation_split(
    frame: pd.DataFrame, how: str = "random", frac: float = 0.1, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, val). `random`: a seeded `frac` of each source. `largest`: each source's largest model size(s)
    (`largest_sizes`, at least `frac` of its runs) plus a seeded `frac` of the rest, so that the validation runs
    measure both the step beyond the training sizes and the error inside them."""
    if how not in VAL_SPLITS:
        raise ConfigError(f"val_split: got {how!r}; use one of {', '.join(VAL_SPLITS)}")
    beyond = largest_sizes(frame, frac) if how == "largest" else pd.Series(False, index=frame.index)
    rest = split_runs(frame[~beyond], id_frac=frac, seed=seed)
    return rest.train, pd.concat([frame[beyond], rest.id])
