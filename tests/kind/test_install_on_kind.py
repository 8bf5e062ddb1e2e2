"""The install without Helm on kind, exactly as the README has it: `kubectl apply -f
manifests/crd.yaml -f manifests/install.yaml`, the files unchanged. Their image references are
the release's (ghcr.io/spotrun/operator:<version>); no registry here serves them, so
hack/kind/registry makes every node resolve ghcr.io/spotrun/... from its own registry, where
`push` also tags each build with its version. The pods' image digests are checked against what
was pushed: the nodes run the images built from this tree, not some other image of that name.

install.yaml sets no sidecar image, so this is the other pod shape than the helm tests': the
sidecar runs from the trainer's image and the command through `spotrun exec`. The example digits
job (manifests/examples/job.yaml, image as written; one epoch, this S3 server) runs to Succeeded
under that operator; `kubectl delete -f install.yaml` removes the operator.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from spotrun.version import __version__
from tests.kind import chart
from tests.kind.images import pod_image_digest, registry_manifest
from tests.kind.jobs import Job
from tests.kind.kindenv import KUBECTL, REPO, KindCluster, run

pytestmark = [pytest.mark.kind, pytest.mark.timeout(1800)]

MANIFESTS = REPO / "manifests"
NAMESPACE = "install-kind"


def pushed_digest(reference: str) -> str:
    return registry_manifest(reference)[1]


def digits_one_epoch(s3: dict[str, str]) -> list[dict[str, Any]]:
    """The example job as written but for its storage (this S3 server) and one epoch."""
    job = yaml.safe_load((MANIFESTS / "examples" / "job.yaml").read_text())
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"ghcr.io/spotrun/trainer:{__version__}", container["image"]
    container["command"][-1] = "1"
    storage = job["spec"]["checkpoint"]["storage"]
    storage["uri"] = f"s3://{s3['SPOTRUN_TEST_BUCKET']}/install-{NAMESPACE}"
    storage["endpoint"] = s3["SPOTRUN_POD_S3_ENDPOINT"]
    return [chart.s3_secret(s3), job]


def test_kubectl_apply_of_install_yaml_as_written_runs_the_example_job(
    kind_cluster: KindCluster, pushed: dict[str, str], kind_s3: dict[str, str]
) -> None:
    install = MANIFESTS / "install.yaml"
    k = kind_cluster.kubectl
    k("apply", "-f", str(MANIFESTS / "crd.yaml"), "-f", str(install))
    try:
        chart.released_operator(kind_cluster, pushed)

        k("create", "namespace", NAMESPACE)
        k("-n", NAMESPACE, "apply", "-f", "-", stdin=yaml.safe_dump_all(digits_one_epoch(kind_s3)))
        status = Job(kind_cluster, kind_s3, NAMESPACE).finished()
        assert status["phase"] == "Succeeded", status
        assert status["lastCheckpoint"]["step"] == 45  # one epoch of digits
        assert (status["attempt"], status["preemptions"], status["failures"]) == (1, 0, 0)
        pod = json.loads(k("-n", NAMESPACE, "get", "pod", "digits-1", "-o", "json"))
        assert pod_image_digest(pod, "trainer") == pushed_digest(pushed["trainer"])
        spec = pod["spec"]
        sidecars = [c["image"] for c in spec.get("initContainers", [])]
        assert sidecars == [f"ghcr.io/spotrun/trainer:{__version__}"], "the trainer's image"
        assert spec["containers"][0]["command"][:3] == ["spotrun", "exec", "--"], spec
    finally:  # not asserted: a cleanup failure must not hide the test's own
        for args in (("namespace", NAMESPACE), ("-f", str(install))):
            run(
                KUBECTL,
                "delete",
                *args,
                "--ignore-not-found",
                "--timeout=300s",
                env=kind_cluster.env,
            )
