"""The project's images on the kind cluster: pushed to hack/kind/registry, pulled by the node
that runs them; the operator installed by `helm install` with explicit image values.

`pytest -m kind tests/kind/test_images_on_kind.py` builds what is missing (the images, the node
image, the registry), brings the cluster up and removes it (hack/kind/down) at the end.
"""

from __future__ import annotations

import json

import pytest

from spotrun.version import __version__
from tests.kind import chart
from tests.kind.images import registry_manifest
from tests.kind.kindenv import KIND_DIR, NAME, REPO, KindCluster, run

pytestmark = [pytest.mark.kind, pytest.mark.timeout(3600)]


def _crictl_images(kind_cluster: KindCluster, node: str) -> str:
    return kind_cluster.docker("exec", node, "crictl", "images", "-o", "json")


def test_the_trainer_image_is_pulled_by_the_node_that_runs_it_and_runs_there(
    pushed: dict[str, str], kind_cluster: KindCluster
) -> None:
    image = pushed["trainer"]
    repository = image.rsplit(":", 1)[0]
    script = (
        "id -u; python -c 'import torch, spotrun; print(torch.__version__, spotrun.__version__)';"
        f" test -e {REPO} && echo host-repo-visible || echo no-host-repo"
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "trainer-image", "namespace": "default"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "trainer", "image": image, "command": ["sh", "-c", script]}],
        },
    }
    try:
        kind_cluster.kubectl("apply", "-f", "-", stdin=json.dumps(pod))
        kind_cluster.kubectl(
            "wait",
            "pod/trainer-image",
            "--for=jsonpath={.status.phase}=Succeeded",
            "--timeout=900s",
        )
        lines = kind_cluster.kubectl("logs", "trainer-image").splitlines()
        assert lines[0] == "1000"
        assert lines[1].split()[1] == __version__ and lines[2] == "no-host-repo", lines
        node = kind_cluster.kubectl(
            "get", "pod", "trainer-image", "-o", "jsonpath={.spec.nodeName}"
        )
        assert node == f"{NAME}-worker"
        assert repository in _crictl_images(kind_cluster, node)
        # the control plane ran nothing from it, so it holds none of its 4 GB
        assert repository not in _crictl_images(kind_cluster, f"{NAME}-control-plane")
    finally:
        kind_cluster.kubectl("delete", "pod", "trainer-image", "--ignore-not-found", "--wait=false")


def test_helm_installs_the_operator_image_non_root_with_a_read_only_root(
    pushed: dict[str, str], kind_cluster: KindCluster
) -> None:
    install = chart.install(kind_cluster, pushed)
    namespace = chart.NAMESPACE
    try:
        assert install.returncode == 0, install.stderr
        pods = json.loads(kind_cluster.kubectl("-n", namespace, "get", "pods", "-o", "json"))[
            "items"
        ]
        assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
        pod = pods[0]
        (container,) = pod["spec"]["containers"]
        assert container["image"] == pushed["operator"]
        security = {**pod["spec"].get("securityContext", {}), **container["securityContext"]}
        assert security["runAsNonRoot"] is True and security["readOnlyRootFilesystem"] is True
        name = pod["metadata"]["name"]
        status = pod["status"]["containerStatuses"][0]
        assert status["ready"] and status["restartCount"] == 0, status
        # what the kubelet enforced, seen from inside: not root, and / cannot be written
        probe = (
            "import os\ntry:\n    open('/probe', 'w')\n    print(os.getuid(), 'written')\n"
            "except OSError as e:\n    print(os.getuid(), e.strerror)"
        )
        inside = kind_cluster.kubectl("-n", namespace, "exec", name, "--", "python", "-c", probe)
        assert inside.strip() == "65532 Read-only file system"
        log = kind_cluster.kubectl("-n", namespace, "logs", name)
        assert f"spotrun operator {__version__} starting" in log.splitlines()[0]
    finally:
        chart.uninstall(kind_cluster)


def test_the_registry_holds_each_image_as_built_with_its_layers_uncompressed(
    pushed: dict[str, str], built: dict[str, str], kind_cluster: KindCluster
) -> None:
    for name in ("operator", "trainer"):
        manifest, _ = registry_manifest(pushed[name])
        local = json.loads(kind_cluster.docker("image", "inspect", built[name]))[0]
        # the image's own config and diff IDs: what the node runs is what was built
        assert manifest["config"]["digest"] == local["Id"]
        assert [layer["digest"] for layer in manifest["layers"]] == local["RootFS"]["Layers"]
        assert {layer["mediaType"] for layer in manifest["layers"]} == {
            "application/vnd.oci.image.layer.v1.tar"
        }
    # pushed again: nothing is exported or sent but the manifest
    again = run(KIND_DIR / "registry", "push", built["trainer"], env=kind_cluster.env, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "the config and all" in again.stderr and "layers are there already" in again.stderr
    assert again.stdout.strip() == pushed["trainer"]
