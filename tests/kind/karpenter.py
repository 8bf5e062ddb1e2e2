"""A real Karpenter beside the kind cluster, for tests/kind/test_karpenter_on_kind.py.

Karpenter's kwok provider (sigs.k8s.io/karpenter/kwok: Karpenter's own controllers over a fake
cloud whose "instances" are Node objects) and KWOK (sigs.k8s.io/kwok: it makes those nodes Ready
and the pods bound to them Running, as a kubelet would report them) run as host processes
against the kind cluster's API server; hack/kind/build-parts builds both (`karpenter kwok`:
`make test-kind` starts it in the background as the tier begins), with Karpenter's CRDs and
KWOK's stage files beside them.

What the fake nodes and pods are not: no container runs on them and they have no network. KWOK
gives their pods no IP here (its pod-ready stage without the podIP part), so the operator finds
no sidecar to call for them (operator/spotrun_operator/live.py); the nodes' addresses are
127.0.0.1, which nothing in the test contacts. The kind workers carry no karpenter.sh/nodepool
label, so pods that select a NodePool never land on them.
"""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import yaml

from tests.kind.kindenv import CACHE, KUBECTL, VERSIONS, KindCluster, run, wait_for

KARPENTER_DIR = CACHE / "bin" / f"karpenter-{VERSIONS['KARPENTER_VERSION']}"
KWOK_DIR = CACHE / "bin" / f"kwok-{VERSIONS['KWOK_VERSION']}"
# The nodes Karpenter's kwok provider creates carry this annotation; KWOK manages only those.
FAKE_NODE = "kwok.x-k8s.io/node=fake"
NODEPOOL = "karpenter.sh/nodepool"
UNBLOCK = '{"metadata":{"finalizers":null}}'
# KWOK's stages (kustomize/stage in its module): nodes made Ready with their leases renewed (else
# kube-controller-manager calls them unreachable), bound pods made Running, deleted pods removed
# (a delete with grace 0, which keeps the operator's finalizer, as a kubelet's does) once they
# have ended (POD_TERMINATED, below: a selector added to KWOK's pod-delete).
STAGES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-delete.yaml",
)
POD_IPS = "{{ $podIPs := PodIPsWith"
# What a kubelet writes of a deleted pod's containers once it has stopped them (SIGTERM obeyed:
# exit 143), before the pod object goes: without it the operator would wait for an ended
# attempt's outcome until its grace and a minute more (warmstart.LOST_AFTER_SECONDS).
POD_TERMINATED: dict[str, Any] = {
    "apiVersion": "kwok.x-k8s.io/v1alpha1",
    "kind": "Stage",
    "metadata": {"name": "pod-terminated"},
    "spec": {
        "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
        "selector": {
            "matchExpressions": [
                {"key": ".metadata.deletionTimestamp", "operator": "Exists"},
                {"key": ".status.phase", "operator": "In", "values": ["Pending", "Running"]},
            ]
        },
        "next": {
            "statusTemplate": "\n".join(
                [
                    "{{ $now := Now }}",
                    "phase: Failed",
                    "containerStatuses:",
                    "{{ range .spec.containers }}",
                    "- name: {{ .name | Quote }}",
                    "  image: {{ .image | Quote }}",
                    "  ready: false",
                    "  restartCount: 0",
                    "  state:",
                    "    terminated:",
                    "      exitCode: 143",
                    "      reason: Error",
                    "      finishedAt: {{ $now | Quote }}",
                    "{{ end }}",
                ]
            )
        },
    },
}
ENDED = {"key": ".status.phase", "operator": "NotIn", "values": ["Pending", "Running"]}
# KWOK's options: a --config file gets none of its defaults, so its workers are counted here (the
# values of its own kustomize/kwok/kwok.yaml); node leases of 40 s, as a kubelet's.
KWOK_CONFIGURATION = {
    "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
    "kind": "KwokConfiguration",
    "options": {
        "nodeLeaseDurationSeconds": 40,
        "nodeLeaseParallelism": 4,
        "nodePlayStageParallelism": 4,
        "podPlayStageParallelism": 4,
        "podsOnNodeSyncParallelism": 1,
    },
}


def without_pod_ips(stage: str) -> str:
    """KWOK's pod-ready STAGE without the block that gives a pod its IPs (from `{{ $podIPs :=`
    to the `{{ end }}` that closes its `{{ with $podIPs }}`): the pods stay addressless."""
    lines = stage.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.strip().startswith(POD_IPS)), None)
    if start is None:
        raise ValueError("no pod IP block in this pod-ready stage (KWOK changed it?)")
    depth, end = 0, start + 1
    for end in range(start + 1, len(lines)):
        text = lines[end].strip()
        if text.startswith(("{{ with ", "{{ range ", "{{ if ")):
            depth += 1
        elif text == "{{ end }}":
            depth -= 1
            if depth == 0:
                break
    else:
        raise ValueError("the pod IP block of this pod-ready stage never ends")
    return "".join(lines[:start] + lines[end + 1 :])


def deleted_once_ended(stage: str) -> str:
    """KWOK's pod-delete STAGE for ended pods only (ENDED added to its selector): a deleted pod
    that still runs goes through POD_TERMINATED first."""
    doc = yaml.safe_load(stage)
    expressions = doc["spec"]["selector"]["matchExpressions"]
    if {"key": ".metadata.deletionTimestamp", "operator": "Exists"} not in expressions:
        raise ValueError("this pod-delete stage does not select deleted pods (KWOK changed it?)")
    expressions.append(ENDED)
    return str(yaml.safe_dump(doc, sort_keys=False))


def kwok_config(stages: Path) -> str:
    """KWOK's --config: KWOK_CONFIGURATION, the STAGES read from the folder STAGES (pod-ready
    without pod IPs, pod-delete for ended pods) and POD_TERMINATED."""
    docs = [yaml.safe_dump(KWOK_CONFIGURATION, sort_keys=False)]
    for name in STAGES:
        text = (stages / name).read_text()
        if name.endswith("pod-ready.yaml"):
            text = without_pod_ips(text)
        elif name.endswith("pod-delete.yaml"):
            text = deleted_once_ended(text)
        docs.append(text)
    docs.append(yaml.safe_dump(POD_TERMINATED, sort_keys=False))
    return "---\n".join(d if d.endswith("\n") else d + "\n" for d in docs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ready(port: int) -> bool | None:
    """Karpenter's /readyz answers 200 (its CRD check passes once the CRDs are established)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            return r.status == 200 or None
    except OSError:
        return None


class Karpenter:
    """What a test reads of Karpenter's objects in the kind cluster."""

    def __init__(self, cluster: KindCluster, logs: Path) -> None:
        self.cluster, self.logs = cluster, logs
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def ended(self) -> str:
        """What ended of Karpenter and KWOK, with its log's end; empty while both run."""
        return "".join(
            f"{name} exited ({proc.returncode}): "
            f"{(self.logs / f'{name}.log').read_text(errors='replace')[-2000:]}\n"
            for name, proc in self.processes.items()
            if proc.poll() is not None
        )

    def nodes(self, pool: str) -> list[str]:
        """The nodes of this NodePool (Karpenter labels them karpenter.sh/nodepool); asserts
        first that Karpenter and KWOK still run (else nothing would change any more)."""
        assert not (ended := self.ended()), ended
        return (
            self.cluster.kubectl("get", "nodes", "-l", f"{NODEPOOL}={pool}", "-o", "name")
            .replace("node/", "")
            .split()
        )

    def node(self, name: str) -> dict[str, Any] | None:
        found = json.loads(self.cluster.kubectl("get", "nodes", "-o", "json"))["items"]
        return next((n for n in found if n["metadata"]["name"] == name), None)

    def events_on(self, node: str, reason: str) -> list[str]:
        """The messages of Events of REASON about NODE (Karpenter's, in any namespace)."""
        selector = f"involvedObject.name={node},reason={reason}"
        listed = self.cluster.kubectl(
            "get", "events", "-A", "--field-selector", selector, "-o", "json"
        )
        return [e["message"] for e in json.loads(listed)["items"]]

    def log(self) -> str:
        """Karpenter's log so far (for a failed assert's message)."""
        return (self.logs / "karpenter.log").read_text(errors="replace")[-4000:]


def _started(stack: ExitStack, karpenter: Karpenter, args: list[str], env: dict[str, str]) -> None:
    """ARGS started (in a session of its own: a ^C to the tests reaches it only through this
    stack), its output in <logs>/<name>.log, stopped when STACK closes."""
    name = Path(args[0]).name
    out = stack.enter_context((karpenter.logs / f"{name}.log").open("wb"))
    proc = subprocess.Popen(
        args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    karpenter.processes[name] = proc

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    stack.callback(stop)


@contextmanager
def running(cluster: KindCluster, workdir: Path) -> Iterator[Karpenter]:
    """Karpenter's CRDs applied, KWOK and Karpenter started against CLUSTER (logs in WORKDIR);
    at the end every NodePool is deleted and its nodes with it (Karpenter's termination), both
    processes are stopped (Karpenter first) and the CRDs removed."""
    crds = sorted((KARPENTER_DIR / "crds").glob("*.yaml"))
    assert crds, f"no CRDs in {KARPENTER_DIR}: run hack/kind/build-parts karpenter kwok"
    config = workdir / "kwok.yaml"
    config.write_text(kwok_config(KWOK_DIR / "stages"))
    kubeconfig = cluster.env["KUBECONFIG"]
    with ExitStack() as stack:
        cluster.kubectl("apply", *(f"--filename={c}" for c in crds))
        stack.callback(
            lambda: cluster.kubectl(
                "delete", "--ignore-not-found", *(f"--filename={c}" for c in crds)
            )
        )
        cluster.kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            *(f"--filename={c}" for c in crds),
        )
        kwok = [
            str(KWOK_DIR / "kwok"),
            f"--kubeconfig={kubeconfig}",
            f"--config={config}",
            f"--manage-nodes-with-annotation-selector={FAKE_NODE}",
            "--node-ip=127.0.0.1",
        ]
        karpenter = Karpenter(cluster, workdir)
        _started(stack, karpenter, kwok, cluster.env)
        health = free_port()
        env = {
            **cluster.env,
            "DISABLE_LEADER_ELECTION": "true",  # one replica, outside the cluster
            "METRICS_PORT": str(free_port()),
            "HEALTH_PROBE_PORT": str(health),
            "LOG_LEVEL": "debug",
        }
        _started(stack, karpenter, [str(KARPENTER_DIR / "karpenter")], env)
        stack.callback(_remove_nodepools, karpenter)
        wait_for("Karpenter's /readyz", lambda: ready(health), 120)
        assert not (ended := karpenter.ended()), ended
        yield karpenter


def _remove_nodepools(karpenter: Karpenter) -> None:
    """Every NodePool deleted, then the wait until Karpenter has terminated their NodeClaims
    (it drains and deletes each node). If Karpenter is gone or does not finish, what is left
    is removed without it: the finalizers of its NodeClaims and nodes lifted, the objects
    deleted (the CRDs could not go otherwise)."""
    cluster = karpenter.cluster
    cluster.kubectl("delete", "nodepools.karpenter.sh", "--all", "--wait=false")

    def gone() -> bool | None:
        left = cluster.kubectl("get", "nodeclaims.karpenter.sh", "-o", "name").strip()
        return not left or bool(karpenter.ended()) or None

    try:
        wait_for("Karpenter to remove its NodeClaims", gone, 300)
    finally:
        for kind, *selector in (("nodeclaims.karpenter.sh",), ("nodes", "-l", NODEPOOL)):
            left = cluster.kubectl("get", kind, *selector, "-o", "name").split()
            if left:
                cluster.kubectl("delete", *left, "--ignore-not-found", "--wait=false")
            for name in left:  # gone meanwhile or not: kubectl's answer does not matter
                run(KUBECTL, "patch", name, "--type=merge", "-p", UNBLOCK, env=cluster.env)
