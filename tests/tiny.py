"""A tiny NCPL training config for the tests: the tiny-decoder backbone, small batches, a few epochs."""


def tiny_training(stage1_epochs: int, max_curve_points: int = 2, stage2: dict | None = None) -> dict:
    """`TrainConfig` fields of a job that trains in seconds on a CPU; no stage 2 unless given."""
    return {
        "backbone": "tiny-decoder",
        "batch_size": 16,
        "eval_batch_size": 64,
        "max_curve_points": max_curve_points,
        "seed": 0,
        "members": 1,
        "stage1": {"epochs": stage1_epochs, "lr": 3e-3},
        "stage2": stage2 or {"epochs": 0, "lr": 1e-3},
    }
