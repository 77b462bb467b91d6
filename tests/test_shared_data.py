"""Without ../shared/data a data test skips with a one-line reason, except under CI=true, where it fails."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA_TEST = "tests/test_sources.py::test_steplaw_dense"  # reads the real StepLaw csv through the `shared` fixture


def run_data_test(shared_dir: Path, ci: str | None) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    env["NCPL_SHARED_DATA"] = str(shared_dir)
    if ci is not None:
        env["CI"] = ci
    command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", DATA_TEST]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("ci", [None, "false"])
def test_data_test_skips_with_the_reason_when_the_data_is_absent(tmp_path, ci):
    result = run_data_test(tmp_path, ci)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "1 skipped" in result.stdout and f"real run logs not found at {tmp_path}" in result.stdout, result.stdout
    skip_lines = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    assert len(skip_lines) == 1 and "set NCPL_SHARED_DATA" in skip_lines[0]


def test_data_test_fails_under_ci_when_the_data_is_absent(tmp_path):
    result = run_data_test(tmp_path, "true")
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert "1 error" in result.stdout and "skipped" not in result.stdout, result.stdout
    assert f"real run logs not found at {tmp_path}" in result.stdout and "CI=true needs them" in result.stdout
