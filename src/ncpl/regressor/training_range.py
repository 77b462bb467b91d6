"""What the network was trained on, and how far a config lies beyond it.

Per source, the range of log10 N and log10 D of the training runs (the distance the interval widens with), and per
source and field the range of every number the network read (`clamp`: a number beyond it is read at its edge, so
the network's residual extrapolates flat, as a tree's does, and the law carries the trend).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable

import numpy as np
import pandas as pd

from ncpl.columns import effective_params, tokens
from ncpl.regressor.serialize import Encoded

Ranges = dict[str, dict[str, list[float]]]  # source -> field -> [min, max]


def size_ranges(runs: pd.DataFrame) -> dict[str, list[float]]:
    """source -> [log10 N min, max, log10 D min, max] of `runs`."""
    return {
        str(source): [
            float(np.log10(effective_params(group)).min()),
            float(np.log10(effective_params(group)).max()),
            float(np.log10(tokens(group)).min()),
            float(np.log10(tokens(group)).max()),
        ]
        for source, group in runs.groupby("source")
    }


def axis_distances(configs: pd.DataFrame, ranges: dict[str, list[float]]) -> np.ndarray:
    """Decades beyond the training runs of the config's source, one column each for log10 N and log10 D (the excess
    over that source's range); 0 inside the range and for a source never seen."""
    bounds = configs["source"].astype(str).map(ranges)
    bounds = np.array([b if isinstance(b, list) else [np.nan] * 4 for b in bounds], float).reshape(len(configs), 4)
    x = np.stack([np.log10(effective_params(configs)), np.log10(tokens(configs))], axis=1)
    excess = np.maximum(x - bounds[:, [1, 3]], 0) + np.maximum(bounds[:, [0, 2]] - x, 0)
    return np.nan_to_num(excess)


def field_ranges(encoded: Iterable[tuple[str, Encoded]], skip: Collection[str] = ()) -> Ranges:
    """The range of every number but those of the fields in `skip`, per (source, field), over `(source, encoded
    config)` pairs."""
    ranges: Ranges = defaultdict(dict)
    for source, config in encoded:
        seen = ranges[source]
        for name, value in zip(config.num_fields, config.num_values):
            if name in skip:
                continue
            low, high = seen.get(name, (value, value))
            seen[name] = [min(low, value), max(high, value)]
    return dict(ranges)


def clamp(config: Encoded, ranges: dict[str, list[float]]) -> Encoded:
    """`config` with every number of a field in `ranges` moved into that field's range (in place)."""
    config.num_values = [
        min(max(value, ranges[name][0]), ranges[name][1]) if name in ranges else value
        for name, value in zip(config.num_fields, config.num_values)
    ]
    return config
