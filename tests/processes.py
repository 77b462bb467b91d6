"""Several CPU processes for the distributed tests (a module, not conftest: tests/faults has its own conftest)."""

import os
import subprocess
import sys

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
