"""hack/kind/up fails early with one clear line when the machine cannot host the cluster."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from tests.kind.kindenv import KIND_DIR

pytestmark = pytest.mark.kind


def _up(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KIND_DIR / "up")],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
        check=False,
    )


def _failure_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "FAILED:" in line]


def test_up_refuses_too_little_disk_before_starting_anything() -> None:
    done = _up(SPOTRUN_KIND_MIN_FREE_GIB="1000000")
    assert done.returncode != 0
    (line,) = _failure_lines(done.stderr)
    assert line.startswith("[kind:up] FAILED: only ")
    assert "need 1000000 GiB" in line and "SPOTRUN_CACHE" in line  # the cause and the fix
    assert "docker-engine" not in done.stderr  # nothing was started


def test_up_names_a_taken_api_port_and_the_fix(docker_engine: dict[str, str]) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = _up(
            **docker_engine,
            SPOTRUN_KIND_API_PORT=str(port),
            SPOTRUN_KIND_CLUSTER="spotrun-port-test",
        )
    assert done.returncode != 0
    (line,) = _failure_lines(done.stderr)
    assert f"port {port} on 127.0.0.1" in line and "is taken" in line
    assert "SPOTRUN_KIND_API_PORT" in line


def test_up_refuses_when_too_few_inotify_instances_are_free(docker_engine: dict[str, str]) -> None:
    # a host whose fs.inotify.max_user_instances other clusters used up: nodes would never be
    # Ready (kube-proxy crash-loops); `up` says so before creating anything
    with socket.socket() as probe:  # a free API port: the session's cluster may hold 36443
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = _up(
        **docker_engine,
        SPOTRUN_KIND_INOTIFY_PER_NODE="1000000",
        SPOTRUN_KIND_CLUSTER="spotrun-inotify-test",
        SPOTRUN_KIND_API_PORT=str(port),
    )
    assert done.returncode != 0
    (line,) = _failure_lines(done.stderr)
    assert "inotify instances free (fs.inotify.max_user_instances=" in line, line
    assert "2 new nodes need 2000000" in line and "sysctl -w fs.inotify" in line, line
    assert "creating cluster" not in done.stderr
