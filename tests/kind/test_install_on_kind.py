"""The install without Helm on kind: `kubectl apply -f manifests/crd.yaml -f
manifests/install.yaml`, as the README has it, with only the operator's image reference replaced
by the pushed one (install.yaml names the release's ghcr.io image, which no registry here
serves). install.yaml sets no sidecar image, so this is the other pod shape than the helm tests':
the sidecar runs from the trainer's image and the command through `spotrun exec`. The example
digits job (one epoch) runs to Succeeded under that operator; `kubectl delete -f install.yaml`
removes the operator.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kind import chart
from tests.kind.kindenv import REPO, KindCluster, wait_for

pytestmark = [pytest.mark.kind, pytest.mark.timeout(1800)]

MANIFESTS = REPO / "manifests"
NAMESPACE = "install-kind"


def with_operator_image(image: str) -> str:
    """manifests/install.yaml with the Deployment's image set to IMAGE, nothing else changed."""
    docs = list(yaml.safe_load_all((MANIFESTS / "install.yaml").read_text()))
    (deployment,) = [d for d in docs if d and d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"].startswith("ghcr.io/spotrun/operator:"), container["image"]
    container["image"] = image
    return yaml.safe_dump_all(docs)


def digits_one_epoch(trainer: str, s3: dict[str, str]) -> list[dict[str, Any]]:
    job = yaml.safe_load((MANIFESTS / "examples" / "job.yaml").read_text())
    (container,) = job["spec"]["template"]["spec"]["containers"]
    container["image"] = trainer
    container["command"][-1] = "1"
    storage = job["spec"]["checkpoint"]["storage"]
    storage["uri"] = f"s3://{s3['SPOTRUN_TEST_BUCKET']}/install-{NAMESPACE}"
    storage["endpoint"] = s3["SPOTRUN_POD_S3_ENDPOINT"]
    return [chart.s3_secret(s3), job]


def finished(cluster: KindCluster) -> dict[str, Any] | None:
    got = json.loads(cluster.kubectl("-n", NAMESPACE, "get", "rtj", "digits", "-o", "json"))
    status: dict[str, Any] = got.get("status", {})
    return status if status.get("phase") in ("Succeeded", "Failed") else None


def test_kubectl_apply_of_install_yaml_runs_the_example_job(
    kind_cluster: KindCluster, pushed: dict[str, str], kind_s3: dict[str, str], tmp_path: Path
) -> None:
    install = tmp_path / "install.yaml"
    install.write_text(with_operator_image(pushed["operator"]))
    k = kind_cluster.kubectl
    k("apply", "-f", str(MANIFESTS / "crd.yaml"), "-f", str(install))
    try:
        k("-n", chart.NAMESPACE, "rollout", "status", "deployment", "--timeout=300s")
        k("create", "namespace", NAMESPACE)
        job = yaml.safe_dump_all(digits_one_epoch(pushed["trainer"], kind_s3))
        k("-n", NAMESPACE, "apply", "-f", "-", stdin=job)
        status = wait_for("the job to finish", lambda: finished(kind_cluster), 600)
        assert status["phase"] == "Succeeded", status
        assert status["lastCheckpoint"]["step"] == 45  # one epoch of digits
        assert (status["attempt"], status["preemptions"], status["failures"]) == (1, 0, 0)
        pod = json.loads(k("-n", NAMESPACE, "get", "pod", "digits-1", "-o", "json"))["spec"]
        sidecar = [c for c in pod.get("initContainers", []) if c["name"] != "spotrun-entrypoint"]
        assert [c["image"] for c in sidecar] == [pushed["trainer"]], "the trainer's image"
        assert pod["containers"][0]["command"][:3] == ["spotrun", "exec", "--"], pod["containers"]
    finally:
        k("delete", "namespace", NAMESPACE, "--ignore-not-found", "--timeout=300s")
        k("delete", "-f", str(install), "--ignore-not-found", "--timeout=300s")
