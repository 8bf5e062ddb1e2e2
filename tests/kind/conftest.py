"""The kind tier's shared fixtures: a Docker engine and a kind cluster for the whole session."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from localcluster.kindcluster import parse_exports
from tests.kind import chart
from tests.kind import images as img
from tests.kind.jobs import ON_DEMAND_WORKER, SPOT_WORKER, Job, StartDigits, started
from tests.kind.kindenv import KIND_DIR, KindCluster, run


def _engine(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(KIND_DIR / "docker-engine"), command],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


# `hack/cluster down` as the README gives it removes the session's cluster: that test runs last.
LAST = "test_hack_cluster_on_kind.py"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Move LAST's tests behind every other test (a stable sort keeps the rest in order)."""
    del config
    items.sort(key=lambda item: item.path.name == LAST)


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
    """hack/kind/up --on-demand 1 --spot 1: <name>-worker is on-demand, <name>-worker2 spot
    (tainted); removed by hack/kind/down at the end unless SPOTRUN_KIND_KEEP=1 (then the next
    session's `up` reuses it)."""
    up = run(KIND_DIR / "up", "--on-demand", "1", "--spot", "1", env=docker_engine, timeout=3600)
    try:
        assert up.returncode == 0, f"hack/kind/up failed:\n{up.stderr[-4000:]}"
        yield KindCluster({**docker_engine, **parse_exports(up.stdout)})
    finally:
        if os.environ.get("SPOTRUN_KIND_KEEP") != "1":
            down = run(KIND_DIR / "down", env=docker_engine)
            assert down.returncode == 0, f"hack/kind/down failed:\n{down.stderr}"


@pytest.fixture(scope="session")
def built(docker_engine: dict[str, str]) -> dict[str, str]:
    """{name: spotrun.local/NAME:TAG} of the operator, sidecar and trainer images and their bases
    (hack/kind/images: built when missing)."""
    return img.build(docker_engine, "operator", "sidecar", "trainer")


@pytest.fixture(scope="session")
def pushed(kind_cluster: KindCluster, built: dict[str, str]) -> Iterator[dict[str, str]]:
    """{name: the reference pods use} for the operator, sidecar and trainer images and the
    trainer's base `torch` (Python and torch, nothing of spotrun), pushed to hack/kind/registry
    (each node pulls what it runs; the base's layers are the trainer's, so it costs nothing)."""
    up = run(KIND_DIR / "registry", "up", env=kind_cluster.env, timeout=900)
    assert up.returncode == 0, up.stderr
    names = ("operator", "sidecar", "trainer", "torch")
    push = run(
        KIND_DIR / "registry",
        "push",
        *(built[n] for n in names),
        env=kind_cluster.env,
        timeout=3600,
    )
    assert push.returncode == 0, push.stderr[-3000:]
    yield dict(zip(names, push.stdout.split(), strict=True))


@pytest.fixture(scope="session")
def trainer_on_workers(kind_cluster: KindCluster, pushed: dict[str, str]) -> None:
    """The pushed trainer image pulled by both workers (`crictl pull` on each: seconds when the
    node holds it, ~2 min for a first pull; the two nodes at once): for a test whose clock
    starts when its job is created (spec.deadline), which a first pull would eat into."""
    pulls = [
        subprocess.Popen(
            ["docker", "exec", node, "crictl", "pull", pushed["trainer"]],
            env=kind_cluster.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for node in (ON_DEMAND_WORKER, SPOT_WORKER)
    ]
    for pull in pulls:
        _, err = pull.communicate(timeout=900)
        assert pull.returncode == 0, f"{' '.join(map(str, pull.args))}: {err}"


@pytest.fixture(scope="session")
def kind_s3(kind_cluster: KindCluster) -> dict[str, str]:
    """hack/kind/s3 up, then its env: AWS_ENDPOINT_URL_S3 (the host's), SPOTRUN_POD_S3_ENDPOINT
    (the pods'), the credentials and SPOTRUN_TEST_BUCKET. hack/kind/down removes it."""
    up = run(KIND_DIR / "s3", "up", env=kind_cluster.env)
    assert up.returncode == 0, up.stderr
    env = run(KIND_DIR / "s3", "env", env=kind_cluster.env)
    assert env.returncode == 0, env.stderr
    return parse_exports(env.stdout)


@pytest.fixture
def operator(kind_cluster: KindCluster, pushed: dict[str, str]) -> Iterator[None]:
    """The operator, helm-installed from the pushed image (tests/kind/chart.py); uninstalled
    after the test."""
    install = chart.install(kind_cluster, pushed)
    try:
        assert install.returncode == 0, install.stderr
        yield
    finally:
        chart.uninstall(kind_cluster)
        kind_cluster.restore_workers()


@pytest.fixture
def start_digits(
    kind_cluster: KindCluster,
    pushed: dict[str, str],
    kind_s3: dict[str, str],
    operator: None,
    tmp_path: Path,
) -> Iterator[StartDigits]:
    """start_digits(namespace, epochs, spot=None, save_at_once=True, edit=None): the example
    digits job (changed by EDIT, given: jobs.example_manifests) under the helm-installed
    operator, running on the spot worker with a periodic checkpoint in S3 (jobs.started); its
    namespace is deleted after the test, while the operator still runs."""
    with ExitStack() as stack:

        def start(
            namespace: str,
            epochs: int,
            spot: dict[str, Any] | None = None,
            save_at_once: bool = True,
            edit: Callable[[dict[str, Any]], None] | None = None,
        ) -> Job:
            image = pushed["trainer"]
            return stack.enter_context(
                started(
                    kind_cluster,
                    kind_s3,
                    image,
                    namespace,
                    tmp_path,
                    epochs,
                    spot,
                    save_at_once,
                    edit,
                )
            )

        yield start
