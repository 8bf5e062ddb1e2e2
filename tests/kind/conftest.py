"""The kind tier's shared fixtures: a Docker engine and a kind cluster for the whole session."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from tests.kind.kindenv import KIND_DIR, KindCluster, exports, run


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


@pytest.fixture(scope="session")
def kind_cluster(docker_engine: dict[str, str]) -> Iterator[KindCluster]:
    """hack/kind/up (1 control plane + 1 worker), removed by hack/kind/down at the end."""
    up = run(KIND_DIR / "up", env=docker_engine, timeout=3600)
    try:
        assert up.returncode == 0, f"hack/kind/up failed:\n{up.stderr[-4000:]}"
        yield KindCluster({**docker_engine, **exports(up.stdout.strip().splitlines()[-1])})
    finally:
        down = run(KIND_DIR / "down", env=docker_engine)
        assert down.returncode == 0, f"hack/kind/down failed:\n{down.stderr}"
