import os
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
