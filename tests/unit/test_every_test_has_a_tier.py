"""Every test runs in some tier of `make test`: tests/conftest.py refuses to collect a test
that carries none of the tier markers, naming it, even when `-m` would deselect it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO_ROOT = Path(__file__).resolve().parents[2]

CONFTEST = "from tests.conftest import pytest_collection_modifyitems  # noqa: F401\n"
INI = "[pytest]\nmarkers =\n    unit: u\n    integration: i\n    e2e: e\n    kind: k\n"


def run_pytest(tmp_path: Path, body: str, *args: str) -> subprocess.CompletedProcess[str]:
    """pytest in a scratch folder whose conftest is the project's collection hook."""
    (tmp_path / "pytest.ini").write_text(INI)
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_scratch.py").write_text(body)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


UNMARKED = "def test_forgotten():\n    assert True\n"
MARKED = "import pytest\n\npytestmark = pytest.mark.unit\n\n" + UNMARKED


def test_a_test_without_a_tier_is_a_usage_error_that_names_it(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, UNMARKED)
    out = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, out
    assert "test_scratch.py::test_forgotten" in out
    assert "pytestmark = pytest.mark.unit" in out  # the fix


def test_selecting_a_tier_does_not_hide_an_unmarked_test(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, UNMARKED, "-m", "unit")
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    assert "test_scratch.py::test_forgotten" in result.stdout + result.stderr


def test_a_marked_test_runs(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, MARKED, "-m", "unit")
    assert result.returncode == pytest.ExitCode.OK, result.stdout + result.stderr
    assert "1 passed" in result.stdout
