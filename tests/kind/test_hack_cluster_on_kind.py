"""README's `hack/cluster` block as written, on kind (the default): `up` reuses the session's
cluster and pushes nothing new, `eval "$(hack/cluster env)"` gives a shell the cluster and S3,
`preempt NODE` takes the spot worker away and `add-node NODE` brings it back, and `down` leaves
no container, network or S3 volume of the cluster behind.

`down` removes the session's cluster, so this module runs last in the kind tier (conftest.py's
collection hook); the session's own teardown then finds nothing left to remove.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from localcluster.kindcluster import parse_exports
from tests.kind.jobs import SPOT_WORKER
from tests.kind.kindenv import NAME, REPO, KindCluster, run, wait_for
from tests.unit.test_readme_commands import README, readme_commands

pytestmark = [pytest.mark.kind, pytest.mark.timeout(1800)]


def readme_hack_cluster_lines() -> list[str]:
    """The README's `hack/cluster ...` commands, comments dropped, in the README's order."""
    return [c for c in readme_commands(README.read_text()) if "hack/cluster " in c]


def hack_cluster(kind_cluster: KindCluster, line: str, node: str = "") -> str:
    """One README line, run by bash from the repository root, NODE replaced by `node`."""
    command = line.replace("NODE", node) if node else line
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=REPO,
        env=_user_env(kind_cluster),
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert done.returncode == 0, f"{command}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def _user_env(kind_cluster: KindCluster) -> dict[str, str]:
    """The session's environment without what `hack/cluster env` is meant to provide."""
    hidden = (
        "KUBECONFIG",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "SPOTRUN_CLUSTER",
    )
    return {k: v for k, v in kind_cluster.env.items() if k not in hidden}


def _containers(kind_cluster: KindCluster) -> list[str]:
    names = kind_cluster.docker("ps", "-a", "--format", "{{.Names}}").split()
    return sorted(n for n in names if n == NAME or n.startswith(f"{NAME}-"))


@pytest.mark.skipif(
    os.environ.get("SPOTRUN_KIND_KEEP") == "1",
    reason="SPOTRUN_KIND_KEEP=1 asks to keep the cluster this test removes",
)
def test_the_readme_hack_cluster_commands_drive_the_kind_cluster_and_down_leaves_nothing(
    kind_cluster: KindCluster, pushed: dict[str, str], kind_s3: dict[str, str]
) -> None:
    up, env, preempt, add_node, down = readme_hack_cluster_lines()
    assert (up, down) == ("hack/cluster up", "hack/cluster down")
    assert env == 'eval "$(hack/cluster env)"'
    assert preempt.startswith("hack/cluster preempt NODE"), preempt
    assert add_node == "hack/cluster add-node NODE"
    before = _containers(kind_cluster)

    # up: the cluster that runs is reused (the same containers), its images already pushed
    said = hack_cluster(kind_cluster, up)
    assert f"kind cluster {NAME} up in" in said, said
    assert _containers(kind_cluster) == before
    for name in ("operator", "sidecar", "trainer"):
        assert pushed[name] in said, (pushed[name], said[-2000:])

    # env: a shell that evaluated it reaches the API server and S3, and knows the pods' endpoint
    probe = (
        f'{env} && kubectl get nodes -o name && echo "pods: $SPOTRUN_POD_S3_ENDPOINT" && '
        f'"{REPO}/.venv/bin/python" -c "import boto3, os; '
        "print('bucket:', boto3.client('s3').head_bucket("
        "Bucket=os.environ['SPOTRUN_TEST_BUCKET'])['ResponseMetadata']['HTTPStatusCode'])\""
    )
    shown = hack_cluster(kind_cluster, probe)
    assert f"node/{SPOT_WORKER}" in shown and f"node/{NAME}-control-plane" in shown, shown
    assert f"pods: {kind_s3['SPOTRUN_POD_S3_ENDPOINT']}" in shown, shown
    assert "bucket: 200" in shown, shown
    exported = parse_exports(hack_cluster(kind_cluster, "hack/cluster env"))
    assert exported["SPOTRUN_TRAINER_IMAGE"] == pushed["trainer"]

    # preempt: the spot worker is tainted, drained and gone; add-node brings the same one back
    said = hack_cluster(kind_cluster, preempt, SPOT_WORKER)
    assert f"node {SPOT_WORKER} is gone" in said, said
    assert f"node/{SPOT_WORKER}" not in kind_cluster.kubectl("get", "nodes", "-o", "name")
    hack_cluster(kind_cluster, add_node, SPOT_WORKER)

    def spot_ready() -> bool:
        node = json.loads(kind_cluster.kubectl("get", "node", SPOT_WORKER, "-o", "json"))
        return any(
            c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"]
        )

    wait_for(f"{SPOT_WORKER} Ready again", spot_ready, 600)

    # down: no container of the cluster (nodes, registry, S3), no kind network, no S3 volume
    said = hack_cluster(kind_cluster, down)
    assert "down: the kind cluster, its registry and S3 containers are removed" in said, said
    assert _containers(kind_cluster) == []
    # kind's network goes with its last container; another cluster on this engine keeps it
    networks = kind_cluster.docker("network", "ls", "--format", "{{.Name}}").split()
    if "kind" in networks:
        attached = kind_cluster.docker(
            "network", "inspect", "kind", "--format", "{{range .Containers}}{{.Name}} {{end}}"
        ).split()
        assert not [n for n in attached if n.startswith(f"{NAME}-")], attached
    volumes = kind_cluster.docker("volume", "ls", "--format", "{{.Name}}").split()
    assert f"{NAME}-s3-data" not in volumes, volumes
    assert run("docker", "ps", env=kind_cluster.env).returncode == 0  # the engine still runs
