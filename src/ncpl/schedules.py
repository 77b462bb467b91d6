"""The learning rate of every step of a run, from its `ScheduleSpec` (what the schedule-aware laws read).

Conventions (those of the Multi-Power Law repository, thu-yao-01-luo/MultiPowerLaw, whose runs they
rebuild exactly): steps count from 0; a warmup of W steps rises linearly from 0 at step 0 to the peak
at step W - 1; a decay over steps [a, T) reaches the min lr at step T. Without ``min_lr`` or
``min_lr_ratio`` a cosine or linear decay ends at 0. Past `total_steps` the lr stays at its last
value. Without a peak lr (``optimizer.lr`` unknown) the schedule is in units of the peak: the laws
only need its shape, their constants absorb the scale.
"""

from __future__ import annotations

import functools

import numpy as np

from ncpl.errors import ConfigError
from ncpl.flat import present, unflatten
from ncpl.schema import RunConfig, ScheduleSpec


def _decay(start: float, end: float, fraction: np.ndarray, shape: str) -> np.ndarray:
    """From `start` at fraction 0 to `end` at fraction 1."""
    if shape == "linear":
        return start + (end - start) * fraction
    if shape == "cosine":
        return end + 0.5 * (start - end) * (1 + np.cos(np.pi * fraction))
    if end <= 0:
        raise ConfigError(
            "schedule.min_lr: an exponential decay needs a min lr above 0; set schedule.min_lr or schedule.min_lr_ratio"
        )
    return start ** (1 - fraction) * end**fraction


def _need(value, field: str, family: str):
    if value is None:
        raise ConfigError(f"schedule.{field}: required for a {family!r} schedule; set it in the config")
    return value


def lr_at_steps(schedule: ScheduleSpec, peak_lr: float | None = None, steps: int | None = None) -> np.ndarray:
    """The lr of steps 0 .. steps - 1 (default: through `total_steps`)."""
    peak = 1.0 if peak_lr is None else float(peak_lr)
    family = schedule.name
    if family == "explicit":
        lrs = np.asarray(schedule.lr, float)
        steps = len(lrs) if steps is None else steps
        return np.concatenate([lrs, np.full(max(0, steps - len(lrs)), lrs[-1])])[:steps]
    if family not in ("constant", "cosine", "linear", "wsd", "multistep"):
        raise ConfigError(
            f"schedule.name: got {family!r}; the lr of every step is known for constant, cosine, linear, "
            "wsd, multistep, or explicit (schedule.lr)"
        )
    if steps is None:
        steps = int(_need(schedule.total_steps, "total_steps", family))
    total = int(schedule.total_steps or steps)
    end = schedule.min_lr if schedule.min_lr is not None else peak * (schedule.min_lr_ratio or 0.0)
    warmup = int(schedule.warmup_steps or 0)
    step = np.arange(steps, dtype=float)
    lrs = np.full(steps, peak)
    if family in ("cosine", "linear"):
        after = step >= warmup
        fraction = np.clip((step[after] - warmup) / max(total - warmup, 1), 0, 1)
        lrs[after] = _decay(peak, end, fraction, family)
    elif family == "wsd":
        start = total - int(_need(schedule.cooldown_steps, "cooldown_steps", family))
        after = step >= start
        fraction = np.clip((step[after] - start) / max(total - start, 1), 0, 1)
        lrs[after] = _decay(peak, end, fraction, schedule.decay or "linear")
    elif family == "multistep":
        starts = _need(schedule.stage_steps, "stage_steps", family)
        for begin, ratio in zip(starts, schedule.stage_lr_ratios):
            lrs[step >= begin] = ratio * peak
    if warmup:
        rising = step < warmup
        lrs[rising] = np.linspace(0.0, peak, warmup)[: int(rising.sum())]
    return lrs


def never_rises(schedule: ScheduleSpec) -> bool:
    """Whether the lr never rises after its warmup (then the expected loss falls all along); False for a family whose
    lrs are not known here."""
    if schedule.name in ("constant", "cosine", "linear", "wsd"):
        return True
    if schedule.name == "multistep" and schedule.stage_steps:
        ratios = [1.0, *schedule.stage_lr_ratios]  # the stages in step order (validated)
        return all(later <= earlier for earlier, later in zip(ratios, ratios[1:]))
    if schedule.name == "explicit" and schedule.lr:
        lrs = np.asarray(schedule.lr, float)
        return bool(np.all(np.diff(lrs[int(np.argmax(lrs)) :]) <= 0))
    return False


def config_lrs(config: RunConfig, steps: int | None = None) -> np.ndarray:
    """`lr_at_steps` of a run's schedule at its peak lr (``optimizer.lr``)."""
    return lr_at_steps(config.schedule, config.optimizer.lr, steps)


def tokens_to_steps(config: RunConfig, tokens) -> np.ndarray:
    """Optimizer steps at these token counts: tokens / ``batch.tokens`` (or the tokens themselves where a source
    counts in steps, ``extra.tokens_are_steps``)."""
    tokens = np.asarray(tokens, float)
    if config.extra.get("tokens_are_steps"):
        return tokens
    if not config.batch.tokens:
        raise ConfigError("batch.tokens: needed to turn tokens into optimizer steps; set the tokens per step")
    return tokens / config.batch.tokens


def row_schedule(row: dict) -> ScheduleSpec | None:
    """The schedule of a flat config row; None where its fields do not make one ncpl can read."""
    try:
        return ScheduleSpec.model_validate(unflatten(present(row)).get("schedule", {}))
    except (ValueError, TypeError):  # ValidationError is a ValueError; unflatten raises both on odd frame cells
        return None


PATH_FIELDS = ("schedule.lr_now", "schedule.lr_mean")
MAX_STEPS = 10**8  # beyond any real run: a config claiming more is read without its path, not given 800 MB arrays


@functools.lru_cache(maxsize=64)
def _mean_lr_so_far(schedule_json: str, peak: float, steps: int) -> tuple[np.ndarray, np.ndarray]:
    lrs = lr_at_steps(ScheduleSpec.model_validate_json(schedule_json), peak, steps) / peak
    return lrs, np.cumsum(lrs) / np.arange(1, steps + 1)


def run_lrs(row: dict) -> tuple[np.ndarray, np.ndarray, float] | None:
    """A flat config row's lr at every step in units of its peak lr, the mean lr over the steps through each, both
    through the longer of the run and its schedule's `total_steps`, and the run's length in steps (``data.tokens``
    in steps). None where the schedule cannot be rebuilt from the row (a family without its parameters, an absolute
    min lr without the peak, no step count)."""
    schedule = row_schedule(row)
    if schedule is None:
        return None
    row = present(row)  # a frame's row holds NaN for the fields of other sources
    try:
        peak = float(row.get("optimizer.lr", np.nan))
        if not np.isfinite(peak) and schedule.min_lr is None:  # units of the peak: the shape is what is read
            peak = 1.0
        run = float(row.get("data.tokens", np.nan)) / (
            1.0 if row.get("extra.tokens_are_steps") else float(row.get("batch.tokens", np.nan))
        )
        run = run if np.isfinite(run) else float(schedule.total_steps or np.nan)  # the steps the fractions are of
        length = max(run, float(schedule.total_steps or 0))
        if not (np.isfinite(peak) and peak > 0 and np.isfinite(run) and 1 <= run and length <= MAX_STEPS):
            return None
        lrs, means = _mean_lr_so_far(schedule.model_dump_json(), peak, round(length))
    except (ConfigError, TypeError, ValueError):
        return None
    return lrs, means, run


def path_fields(row: dict, fraction: float | None) -> list[tuple[str, float]]:
    """Where a run's lr stands at `fraction` of its training (of ``data.tokens``; None: the end), as two numbers in
    units of the peak lr: the lr at that step and the mean lr over the steps through it (the area the Multi-Power and
    annealing laws read, per step). A constant schedule gives (1, ~1) past its warmup; a cosine to 0.1 x peak ends at
    (0.1, ~0.55); Multi-Power's wsdcon_3, _9 and _18 end (at step 14144 of 16000) at (0.1, 0.53), (0.3, 0.62) and
    (0.6, 0.75), which the schedule's name and scalars alone do not tell apart. Nothing where the schedule cannot be
    rebuilt (`run_lrs`): the network then reads the family's name and scalars only."""
    rebuilt = run_lrs(row)
    if rebuilt is None:
        return []
    lrs, means, run = rebuilt
    at = int(np.clip(round((1.0 if fraction is None else fraction) * run) - 1, 0, len(lrs) - 1))
    return list(zip(PATH_FIELDS, (float(lrs[at]), float(means[at]))))
