"""Files that appear whole or not at all: written to a temporary file beside the target, then renamed onto it.

A write that fails removes its temporary file; a process killed mid-write leaves the previous file (or none) and a
stray temporary file, never half a file: `os.replace` within one folder is atomic on POSIX file systems.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` for the block to write; renamed onto `path` when the block ends without error,
    removed when it raises.

    >>> with atomic_path("report.md") as tmp:
    ...     tmp.write_text(text)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def write_text(path: str | Path, text: str) -> None:
    """`Path(path).write_text(text)`, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
