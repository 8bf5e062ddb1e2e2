"""Session fixtures for the real local environment (hack/README.md).

- ``s3`` (session): an S3 endpoint with credentials and a ready bucket. Starts only the
  S3 server (versitygw, a few seconds) when none runs; ``SPOTRUN_TEST_S3_ENDPOINT`` (with
  ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``) targets another server instead.
- ``s3_bucket``: a fresh, empty bucket per test (emptied and deleted afterwards).
- ``cluster`` (session): the local control plane + process node (what ``hack/cluster --process
  up`` starts), or the cluster of ``SPOTRUN_E2E_KUBECONFIG`` (e.g. kind) when that is set.
- ``namespace``: a fresh namespace per test whose ``default`` ServiceAccount exists.
- ``process_node``: the process node's handle (preempt, add_node, stop_lease, logs);
  tests that need it are skipped on an external cluster.

Whatever a fixture started it stops at the end of the session, failures included, and
sweeps any process left with the state dir's marker.
"""

from __future__ import annotations

import os
import re
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "hack"))

from localcluster import config, controlplane, procs, s3server, state  # noqa: E402
from localcluster.node.handle import ProcessNode  # noqa: E402


@dataclass(frozen=True)
class S3Endpoint:
    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    region: str
    bucket: str  # a bucket that exists for the whole session

    def env(self) -> dict[str, str]:
        """The variables boto3 (and the spotrun library) read."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": self.region,
        }

    def client(self) -> Any:
        """A boto3 S3 client for this endpoint."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}),
        )


@dataclass(frozen=True)
class Cluster:
    kubeconfig: str
    api: Any  # kubernetes.client.ApiClient
    process_node: ProcessNode | None  # None on an external cluster
    state_dir: Path | None

    def core(self) -> Any:
        """kubernetes.client.CoreV1Api bound to this cluster."""
        from kubernetes import client

        return client.CoreV1Api(self.api)


def _state() -> Path:
    return config.state_dir()


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Endpoint]:
    external = os.environ.get("SPOTRUN_TEST_S3_ENDPOINT")
    if external:
        yield S3Endpoint(
            external,
            os.environ["AWS_ACCESS_KEY_ID"],
            os.environ["AWS_SECRET_ACCESS_KEY"],
            os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            os.environ.get("SPOTRUN_TEST_BUCKET", "spotrun-test"),
        )
        return
    st = _state()
    record = state.load(st)
    started = not s3server.running(st, record.s3)
    try:
        if started:
            s3server.stop(st)
            record.s3 = s3server.start(st)
            state.save(st, record)
        info = record.s3
        assert info is not None
        yield S3Endpoint(info.endpoint, info.access_key, info.secret_key, info.region, info.bucket)
    finally:
        if started:
            s3server.stop(st)


def _empty(client: Any, bucket: str) -> None:
    for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=obj["Key"])


def _empty_and_delete(client: Any, bucket: str, patience: float = 60.0) -> None:
    """A test's pods may still be uploading when its bucket goes (their namespace is deleted
    after this fixture ends): a write landing between the listing and the delete makes the
    bucket not empty, so empty it again until the delete holds."""
    from botocore.exceptions import ClientError

    deadline = time.monotonic() + patience
    while True:
        _empty(client, bucket)
        try:
            client.delete_bucket(Bucket=bucket)
            return
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "BucketNotEmpty":
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


@pytest.fixture
def s3_bucket(s3: S3Endpoint) -> Iterator[str]:
    client = s3.client()
    name = f"test-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=name)
    try:
        yield name
    finally:
        _empty_and_delete(client, name)


@pytest.fixture(scope="session")
def cluster(s3: S3Endpoint) -> Iterator[Cluster]:
    from kubernetes import config as kube_config

    external = os.environ.get("SPOTRUN_E2E_KUBECONFIG")
    if external:
        api = kube_config.new_client_from_config(config_file=external)
        yield Cluster(external, api, None, None)
        return
    st = _state()
    record = state.load(st)
    started = not controlplane.running(st, record.control_plane)
    try:
        if started:
            record.control_plane = controlplane.start(st, spot=3, on_demand=1)
            state.save(st, record)
        cp = record.control_plane
        assert cp is not None
        api = kube_config.new_client_from_config(config_file=cp.kubeconfig)
        yield Cluster(cp.kubeconfig, api, ProcessNode(cp.node_control_port, st), st)
    finally:
        if started:
            controlplane.stop(st)
            record = state.load(st)
            record.control_plane = None
            state.save(st, record)


@pytest.fixture
def process_node(cluster: Cluster) -> ProcessNode:
    if cluster.process_node is None:
        pytest.skip("needs the process node of the local cluster (not an external cluster)")
    return cluster.process_node


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    core = cluster.core()
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{slug}-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name, "labels": {"spotrun.dev/test": "e2e"}}})
    deadline = time.monotonic() + 60
    default_sa = "metadata.name=default"
    while not core.list_namespaced_service_account(name, field_selector=default_sa).items:
        if time.monotonic() > deadline:
            raise TimeoutError(f"namespace {name}: the default ServiceAccount never appeared")
        time.sleep(0.1)
    try:
        yield name
    finally:
        core.delete_namespace(name)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Belt and braces: nothing started for this session's state dir outlives it unless a
    cluster was already up before (then it belongs to the developer)."""
    del session, exitstatus
    st = _state()
    if not any(procs.running_pid(st, name) for name in ("s3", *controlplane.COMPONENTS)):
        procs.sweep(st)


TIERS = ("unit", "integration", "e2e", "kind")


def untiered(items: list[pytest.Item]) -> list[str]:
    """The node ids of collected tests that carry none of the tier markers."""
    return [
        item.nodeid
        for item in items
        if not any(item.get_closest_marker(tier) for tier in TIERS)
    ]


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects the unmarked ones out of sight
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test without a tier marker would run in no tier of `make test` (which selects by
    `-m unit`, `-m integration`, `-m e2e`): refuse to collect it."""
    del config
    missing = untiered(items)
    if missing:
        raise pytest.UsageError(
            f"{len(missing)} test(s) carry no tier marker, so no tier of `make test` runs "
            f"them: {', '.join(missing)}. Fix: add `pytestmark = pytest.mark.unit` (or "
            f"integration, e2e, kind) at the top of the test file."
        )
