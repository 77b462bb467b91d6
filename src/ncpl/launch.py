"""The processes a launcher (`accelerate launch`, torchrun) started, and the refusal when accelerate did not join them.

Launched on CPUs without ACCELERATE_USE_CPU, accelerate leaves each process alone: each would do the whole job and
race the others to write it.
"""

from __future__ import annotations

import os

from ncpl.errors import ConfigError

CPU_LAUNCH = "`ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes N`"


def launched_processes() -> int:
    """WORLD_SIZE as the launcher set it; 1 when nothing launched this process."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def require_joined(joined: int, alone: str) -> None:
    """Refuse a launch whose processes accelerate did not join; `alone` says what each would do then."""
    launched = launched_processes()
    if launched != joined:
        raise ConfigError(
            f"launched {launched} processes (WORLD_SIZE) but accelerate joined {joined}: {alone}. On CPUs launch "
            f"with {CPU_LAUNCH} (DDP over gloo: accelerate runs no FSDP on CPUs)"
        )
