import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NCPL_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared() -> Path:
    """The real run logs (../shared/data, or $NCPL_SHARED_DATA). The bundled data/*.parquet are always there; these
    are not in a bare clone, so a test that needs them skips, saying why, except in CI (CI=true), where it fails."""
    if not (SHARED / "SOURCES.md").exists():
        reason = f"real run logs not found at {SHARED} (no SOURCES.md); put them there or set NCPL_SHARED_DATA"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}: CI=true needs them", pytrace=False)
        pytest.skip(reason)
    return SHARED


# accelerate 1.15 starts CPU processes with torchrun only through the multi-GPU launcher, which tells them nothing of
# the CPU: ACCELERATE_USE_CPU makes them join over gloo (`--cpu` alone starts one process).
TWO_CPU_PROCESSES = [
    "--multi_gpu",
    "--num_processes",
    "2",
    "--num_machines",
    "1",
    "--mixed_precision",
    "no",
    "--dynamo_backend",
    "no",
]


def launch_two_cpu_processes(*args: str) -> subprocess.CompletedProcess:
    """`accelerate launch` of `python ARGS` on two CPU processes of one thread each, joined over gloo."""
    command = [sys.executable, "-m", "accelerate.commands.launch", *TWO_CPU_PROCESSES, *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
