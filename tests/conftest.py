import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("NCPL_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared() -> Path:
    """The real run logs (../shared/data). Their absence is a failure, not a skip."""
    assert (SHARED / "SOURCES.md").exists(), f"real data not found at {SHARED}; set NCPL_SHARED_DATA"
    return SHARED
