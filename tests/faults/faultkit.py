"""Helpers of the fault suite: run the real `ncpl` command, poll for a condition."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NCPL_BIN = str(Path(sys.executable).with_name("ncpl"))


def ncpl(*args, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """Run the real `ncpl` command; output is stdout + stderr."""
    return subprocess.run(
        [NCPL_BIN, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        **kwargs,
    )


def wait_for(condition, timeout: float, process: subprocess.Popen | None = None, what: str = "") -> None:
    """Poll `condition()` every 20 ms; fail if it does not hold in time or the process ended first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            pytest.fail(f"process ended (exit {process.returncode}) before {what}:\n{output[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)
