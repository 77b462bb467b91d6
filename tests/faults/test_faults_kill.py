"""SIGKILL in the middle of the real `ncpl train` and `ncpl score` processes, then the same command again.

train: the rerun resumes after the last finished epoch (it says so, no epoch is run twice) and the
model predicts exactly what an uninterrupted run's does. score: the killed run leaves no output
file, and `--resume` completes it to exactly the uninterrupted result.
"""

import json
import os
import signal
import subprocess

import numpy as np
import pandas as pd
import yaml
from faultkit import NCPL_BIN, ncpl, wait_for
from tiny import tiny_training

from ncpl import predictors
from ncpl.scoring import merge_parts, score_file
from ncpl.store import read_runs, write_runs

TINY = tiny_training(4, max_curve_points=0)
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def popen(*args) -> subprocess.Popen:
    return subprocess.Popen(
        [NCPL_BIN, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV
    )


def logged_epochs(work) -> list[int]:
    log = work / "train_log.jsonl"
    return [json.loads(line)["epoch"] for line in log.read_text().splitlines()] if log.exists() else []


def test_killed_train_resumes_to_the_uninterrupted_model(tmp_path):
    from faultkit import ROOT

    runs = read_runs(ROOT / "data/marin.parquet").sample(120, random_state=1)
    write_runs(runs, tmp_path / "runs.parquet")
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    command = ["train", "--train", tmp_path / "runs.parquet", "--config", tmp_path / "tiny.yaml"]
    straight = popen(*command, "-o", tmp_path / "straight")  # the reference runs alongside (two cores)
    killed = popen(*command, "-o", tmp_path / "killed")
    work = tmp_path / "killed" / "work"
    progress = work / "checkpoint" / "progress.json"
    wait_for(
        lambda: progress.exists() and json.loads(progress.read_text())["epoch"] >= 0,
        240,
        killed,
        "the first epoch's checkpoint",
    )
    killed.send_signal(signal.SIGKILL)
    killed.wait(30)
    assert killed.returncode == -signal.SIGKILL
    done = json.loads(progress.read_text())["epoch"] + 1  # epochs whose checkpoint progress.json points at
    assert 1 <= done < 4 and not (tmp_path / "killed/model.safetensors").exists(), done
    resumed = ncpl(*command, "-o", tmp_path / "killed")
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert f"resumed stage 1 after epoch {done}" in resumed.stdout, resumed.stdout[-3000:]
    assert not work.exists()  # the checkpoints go once the model directory is complete; the log stays beside it
    assert logged_epochs(tmp_path / "killed") == [1, 2, 3, 4]  # checkpointed epochs not redone, a cut epoch logged once
    straight_out, _ = straight.communicate(timeout=300)
    assert straight.returncode == 0, straight_out[-3000:]
    reference = predictors.load_predictor(tmp_path / "straight").predict(runs)
    assert np.array_equal(predictors.load_predictor(tmp_path / "killed").predict(runs), reference)


def test_killed_score_leaves_no_output_and_resume_completes_it(tiny_model, write_sweep, tmp_path):
    sweep = write_sweep(tmp_path / "sweep.parquet", 2400, chunk=400)
    output = tmp_path / "out.parquet"
    parts = tmp_path / "out.parquet.parts"
    killed = popen("score", tiny_model, sweep, "-o", output, "--batch-size", 200)
    wait_for(lambda: parts.exists() and any(parts.glob("part-*.parquet")), 240, killed, "the first part file")
    killed.send_signal(signal.SIGKILL)
    killed.wait(30)
    assert killed.returncode == -signal.SIGKILL
    finished = sorted(p.name for p in parts.glob("part-*.parquet"))
    assert 1 <= len(finished) < 12, finished
    assert not output.exists() and not list(tmp_path.glob(".out.parquet*"))  # no output, whole or partial
    resumed = ncpl("score", tiny_model, sweep, "-o", output, "--batch-size", 200, "--resume")
    assert resumed.returncode == 0 and "scored 2400 configs" in resumed.stdout, resumed.stdout[-3000:]
    assert not parts.exists()
    straight = tmp_path / "straight.parquet"
    merge_parts(score_file(predictors.load_predictor(tiny_model), sweep, straight, batch_size=200), straight)
    pd.testing.assert_frame_equal(pd.read_parquet(output), pd.read_parquet(straight))
    assert list(pd.read_parquet(output)["run_id"]) == [f"sweep-{i}" for i in range(2400)]
