"""The operator on the kind cluster: `helm install` of charts/spotrun with the pushed operator
image (explicit image.repository/tag, sidecar.image: never a coincidence of tags)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import yaml

from localcluster import kindcluster
from spotrun.version import __version__
from tests.kind.images import pod_image_digest, registry_manifest
from tests.kind.kindenv import HELM, REPO, KindCluster, run

RELEASE, NAMESPACE = "spotrun", "spotrun-system"


def install(cluster: KindCluster, pushed: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """helm install --wait with the values `hack/demo` uses on kind (kindcluster's); the caller
    asserts its exit code and calls uninstall."""
    return helm(cluster, pushed, "install")


def upgrade(
    cluster: KindCluster, pushed: dict[str, str], *values: str
) -> subprocess.CompletedProcess[str]:
    """helm upgrade --wait of the release to the same images, with VALUES (--set ...) added."""
    return helm(cluster, pushed, "upgrade", *values)


def helm(
    cluster: KindCluster, pushed: dict[str, str], command: str, *values: str
) -> subprocess.CompletedProcess[str]:
    return run(
        HELM,
        command,
        RELEASE,
        REPO / "charts" / "spotrun",
        "--namespace",
        NAMESPACE,
        "--create-namespace",
        "--take-ownership",  # of the CRD, when `kubectl apply -f manifests/crd.yaml` made it
        *kindcluster.helm_image_values(pushed),
        *values,
        "--wait",
        "--timeout",
        "10m",
        env=cluster.env,
        timeout=900,
    )


def uninstall(cluster: KindCluster) -> None:
    run(
        HELM, "uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", env=cluster.env, timeout=300
    )
    cluster.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found")


def s3_secret(s3: dict[str, str]) -> dict[str, Any]:
    """manifests/examples/s3-secret.yaml with hack/kind/s3's credentials."""
    secret: dict[str, Any] = yaml.safe_load(
        (REPO / "manifests" / "examples" / "s3-secret.yaml").read_text()
    )
    secret["stringData"] = {
        "AWS_ACCESS_KEY_ID": s3["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": s3["AWS_SECRET_ACCESS_KEY"],
    }
    return secret



def released_operator(cluster: KindCluster, pushed: dict[str, str]) -> dict[str, Any]:
    """The operator's one pod once its Deployment has rolled out, checked to run the release's
    reference (ghcr.io/spotrun/operator:<version>, as the chart's default and install.yaml name
    it) with the digest pushed from this tree: not some other image of that name."""
    cluster.kubectl("-n", NAMESPACE, "rollout", "status", "deployment", "--timeout=300s")
    listed = json.loads(cluster.kubectl("-n", NAMESPACE, "get", "pods", "-o", "json"))
    running = [p for p in listed["items"] if not p["metadata"].get("deletionTimestamp")]
    assert len(running) == 1, [p["metadata"]["name"] for p in running]
    pod: dict[str, Any] = running[0]
    assert pod["spec"]["containers"][0]["image"] == f"ghcr.io/spotrun/operator:{__version__}"
    assert pod_image_digest(pod, "operator") == registry_manifest(pushed["operator"])[1]
    return pod
