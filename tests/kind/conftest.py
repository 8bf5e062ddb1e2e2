"""The kind tier's shared fixture: a Docker engine for the whole session."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from tests.kind.kindenv import KIND_DIR


def _engine(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KIND_DIR / "docker-engine"), command],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[dict[str, str]]:
    """os.environ + DOCKER_HOST of an engine that answers: one already running, else
    hack/kind/docker-engine starts ours, and stops it when the session ends."""
    was_up = _engine("status").returncode == 0
    up = _engine("up")
    assert up.returncode == 0, f"hack/kind/docker-engine up failed:\n{up.stderr}"
    exports = _engine("env").stdout.strip().removeprefix("export ")
    try:
        yield {**os.environ, **dict([exports.split("=", 1)])}
    finally:
        if not was_up:
            down = _engine("down")
            assert down.returncode == 0, f"hack/kind/docker-engine down failed:\n{down.stderr}"
