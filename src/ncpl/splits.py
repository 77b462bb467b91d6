"""Train / in-distribution / out-of-distribution splits of a runs table.

OOD holds the runs at or above a model-size (or compute) threshold, or listed by id; ID is a seeded
random fraction of the rest, drawn per source so that every source is represented; train is what
remains. No run is in two splits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ncpl.columns import compute


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
        raise ValueError(f"id_frac: got {id_frac}, expected a fraction in [0, 1)")
    if frame["run_id"].duplicated().any():
        raise ValueError(f"run_id: duplicated ids, e.g. {frame['run_id'][frame['run_id'].duplicated()].iloc[:3].tolist()}")
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
            raise ValueError(f"id_runs: {sorted(overlap)[:3]} are also out of distribution")
    rng = np.random.default_rng(seed)
    for _, group in frame[~ood & ~held].groupby("source", sort=True):
        take = int(round(id_frac * len(group)))
        held.loc[rng.choice(group.index.to_numpy(), size=take, replace=False)] = True
    return Split(train=frame[~ood & ~held], id=frame[held], ood=frame[ood])
