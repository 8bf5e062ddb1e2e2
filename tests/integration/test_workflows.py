"""actionlint (built by ``make binaries-lint``, hack/versions.env) passes on every workflow in
.github/workflows, with shellcheck on their ``run:`` scripts when shellcheck is on PATH; and it
does fail on a workflow with a mistake, so a pass means something."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))


def _actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    sys.path.insert(0, str(REPO / "hack"))
    from localcluster import config

    return subprocess.run(
        [str(config.binary("actionlint")), "-no-color", *map(str, files)],
        capture_output=True, text=True, cwd=REPO,
    )


def test_every_workflow_passes_actionlint() -> None:
    assert {w.name for w in WORKFLOWS} >= {"release.yml", "e2e-kind.yml"}
    result = _actionlint(*WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_names_a_job_that_needs_a_missing_job(tmp_path: Path) -> None:
    release = (REPO / ".github/workflows/release.yml").read_text()
    broken = tmp_path / "release.yml"
    broken.write_text(release.replace("needs: [check, pypi]", "needs: [check, pypy]"))
    result = _actionlint(broken)
    assert result.returncode == 1
    # actionlint names the file relative to its working directory when that is shorter
    assert 'needs job "pypy" which does not exist' in result.stdout, result.stdout
    assert f"{broken.name}:" in result.stdout, result.stdout
