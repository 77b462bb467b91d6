"""Schedules as data: every family's lr at every step, the flat / Parquet round trip, the importers' schedules."""

import numpy as np
import pandas as pd
import pytest

from ncpl.errors import ConfigError
from ncpl.predictors import non_increasing
from ncpl.schedules import lr_at_steps, never_rises, tokens_to_steps
from ncpl.schema import RunConfig, RunRecord, ScheduleSpec, config_from_flat, config_to_flat
from ncpl.sources import import_runs
from ncpl.store import read_runs, write_runs
from ncpl.validation import validate


def test_families():
    cosine = lr_at_steps(ScheduleSpec(name="cosine", warmup_steps=10, total_steps=110, min_lr_ratio=0.1), 1e-3)
    assert len(cosine) == 110 and cosine[0] == 0 and cosine[9] == pytest.approx(1e-3)
    assert cosine[60] == pytest.approx(0.55e-3) and cosine[-1] == pytest.approx(1e-4, rel=1e-2)
    assert np.all(np.diff(cosine[10:]) <= 0)
    linear = lr_at_steps(ScheduleSpec(name="linear", total_steps=100), 2.0)
    assert linear[50] == pytest.approx(1.0) and linear[0] == 2.0
    wsd = lr_at_steps(ScheduleSpec(name="wsd", total_steps=100, cooldown_steps=20, decay="exponential", min_lr=0.01))
    assert np.all(wsd[:80] == 1.0) and wsd[90] == pytest.approx(0.1)
    steps = lr_at_steps(ScheduleSpec(name="multistep", stage_steps=[30, 60], stage_lr_ratios=[0.5, 0.1]), 1.0, steps=90)
    assert steps[29] == 1 and steps[30] == 0.5 and steps[89] == pytest.approx(0.1)
    constant = lr_at_steps(ScheduleSpec(name="constant"), 3e-4, steps=5)
    assert np.all(constant == 3e-4)
    explicit = lr_at_steps(ScheduleSpec(lr=[0.1, 0.2, 0.3]), steps=5)
    assert explicit.tolist() == [0.1, 0.2, 0.3, 0.3, 0.3]


def test_schedule_errors_name_the_field():
    with pytest.raises(ConfigError, match="schedule.cooldown_steps: required"):
        lr_at_steps(ScheduleSpec(name="wsd", total_steps=100))
    with pytest.raises(ConfigError, match="schedule.min_lr"):
        lr_at_steps(ScheduleSpec(name="wsd", total_steps=100, cooldown_steps=10, decay="exponential"))
    with pytest.raises(ConfigError, match="schedule.name: got 'inv_sqrt'"):
        lr_at_steps(ScheduleSpec(name="inv_sqrt", total_steps=100))
    with pytest.raises(ConfigError, match="schedule.stage_steps and schedule.stage_lr_ratios"):
        validate(ScheduleSpec, {"name": "multistep", "stage_steps": [10, 20], "stage_lr_ratios": [0.5]})
    with pytest.raises(ConfigError, match="schedule.lr: a per-step lr array goes with schedule.name 'explicit'"):
        validate(ScheduleSpec, {"name": "cosine", "lr": [0.1]})


def test_explicit_schedule_round_trips_outside_the_config_columns(tmp_path):
    config = validate(
        RunConfig,
        {
            "source": "mine",
            "model": {"n_params": "10M"},
            "data": {"tokens": "1B"},
            "schedule": {"lr": [0.0, 1e-3, 5e-4]},
            "batch": {"tokens": 1000},
        },
    )
    flat = config_to_flat(config)
    assert flat["schedule_lr"] == [0.0, 1e-3, 5e-4] and "schedule.lr" not in flat
    assert flat["schedule.name"] == "explicit"
    assert config_from_flat(flat).schedule.lr == [0.0, 1e-3, 5e-4]
    record = RunRecord(run_id="a", config=config, final_loss=3.0)
    staged = record.model_copy(
        update={
            "run_id": "b",
            "config": config.model_copy(
                update={"schedule": ScheduleSpec(name="multistep", stage_steps=[5], stage_lr_ratios=[0.3])}
            ),
        }
    )
    write_runs([record, staged], tmp_path / "runs.parquet")
    back = {r["run_id"]: RunRecord.from_flat(r) for r in read_runs(tmp_path / "runs.parquet").to_dict("records")}
    assert back["a"].config.schedule.lr == [0.0, 1e-3, 5e-4]
    assert back["b"].config.schedule.stage_steps == [5] and back["b"].config.schedule.stage_lr_ratios == [0.3]
    assert tokens_to_steps(config, [2000, 4000]).tolist() == [2.0, 4.0]


def test_misfitting_schedule_rebuilds(shared):
    record = import_runs("misfitting", [shared / "misfitting/scaling_results.csv"]).records[0]
    schedule = record.config.schedule
    assert (schedule.name, schedule.warmup_steps, schedule.min_lr_ratio) == ("cosine", 50, 0.1)
    lrs = lr_at_steps(schedule, record.config.optimizer.lr)
    assert len(lrs) == schedule.total_steps and lrs[-1] == pytest.approx(0.1 * record.config.optimizer.lr, rel=1e-3)
    steps = tokens_to_steps(record.config, record.curve.tokens)
    assert steps[-1] == pytest.approx(schedule.total_steps)


def test_gemstones_cooldown_is_linear():
    runs = read_runs("data/gemstones.parquet")
    cool = runs[runs["schedule.name"] == "wsd"]
    assert len(cool) == 140 and (cool["schedule.decay"] == "linear").all()
    assert (runs.loc[runs["schedule.name"] == "constant", "schedule.decay"].isna()).all()


def test_pandas_reads_schedule_columns():
    runs = pd.read_parquet("data/multipower.parquet", columns=["schedule.name", "schedule.stage_steps"])
    assert set(runs["schedule.name"]) == {"constant", "cosine", "wsd", "multistep"}


def test_which_schedules_never_raise_the_lr_after_warmup():
    falls = [
        ScheduleSpec(name="cosine", warmup_steps=10, total_steps=110),
        ScheduleSpec(name="wsd", total_steps=100, cooldown_steps=20),
        ScheduleSpec(name="constant"),
        ScheduleSpec(name="multistep", stage_steps=[30, 60], stage_lr_ratios=[0.5, 0.1]),
        ScheduleSpec(lr=[0.0, 0.5, 1.0, 1.0, 0.3]),  # warmup, then a decay
    ]
    rises = [
        ScheduleSpec(name="multistep", stage_steps=[30, 60], stage_lr_ratios=[0.1, 0.5]),  # a re-warming stage
        ScheduleSpec(lr=[1.0, 0.5, 0.8]),
        ScheduleSpec(name="inv_sqrt"),  # not a family whose lrs are known here
        ScheduleSpec(),
    ]
    assert all(map(never_rises, falls)) and not any(map(never_rises, rises))


def test_the_non_increasing_projection_never_moves_a_curve_away_from_a_falling_truth():
    """Random made-up curves (not data): a prediction x, a non-increasing truth y through x's end point."""
    rng = np.random.default_rng(0)
    fractions = np.array([0.4, 0.1, 1.0, 0.7, 0.2])
    order = np.argsort(fractions)
    for _ in range(200):
        x = rng.normal(size=(1, 5))
        y = np.empty(5)
        y[order] = x[0, 2] + np.sort(np.abs(rng.normal(size=5)))[::-1] * [1, 1, 1, 1, 0]
        projected = non_increasing(x, fractions)
        assert np.all(np.diff(projected[0, order]) <= 0) and projected[0, 2] == x[0, 2]
        assert np.linalg.norm(projected - y) <= np.linalg.norm(x - y) + 1e-9
    falling = np.sort(rng.normal(size=(3, 5)))[:, ::-1]
    assert np.array_equal(non_increasing(falling, np.linspace(0.2, 1, 5)), falling)  # nothing to mend: unchanged
