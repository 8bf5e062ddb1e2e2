"""Capture how real kubelets and a real controller-manager end pods, as fixtures for
tests/unit/operator/test_endings.py (issue 12: classification tested on objects a real kubelet
wrote). Each case runs a pod shaped like an attempt pod (container ``trainer`` run through
``spotrun-exec``, a native sidecar ``spotrun-sidecar``, ``restartPolicy: Never``, the
operator's finalizer so that the ended pod stays readable) on the kind cluster, ends it the way
the case says, and writes the Pod, its Node (null when the Node object is gone) and its Events
to ``tests/unit/operator/fixtures/endings/kind-<case>.yaml`` with a header saying how.

    eval "$(hack/kind/up --on-demand 1 --spot 1)"
    hack/kind/registry up
    IMAGE=$(hack/kind/registry push $(hack/kind/images sidecar | cut -d= -f2))
    PYTHONPATH=hack .venv/bin/python -m tests.kind.capture_endings --image "$IMAGE" [CASE ...]

Cases (all by default, in this order): oom-killed, liveness-probe-kill, scheduler-preemption (on
the on-demand worker), drained-with-notice, abrupt-node-loss, taint-manager-unreachable (on the
spot worker; each ends with hack/kind/add-node bringing it back). About 6 min in all.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from localcluster.node import nodes
from tests.kind.kindenv import KIND_DIR, KUBECTL, NAME, REPO, run, wait_for

OUT = REPO / "tests" / "unit" / "operator" / "fixtures" / "endings"
NAMESPACE = "endings-capture"
ON_DEMAND, SPOT = f"{NAME}-worker", f"{NAME}-worker2"
FINALIZER = "spotrun.dev/outcome"
KILL_SETTLE_SECONDS = 50  # spotrun_operator.endings: when a probe kill is decided

SLEEP = "import time; time.sleep(86400)"  # no SIGTERM handler: spotrun-exec reports 143
SAVE_ON_SIGTERM = (  # what the spotrun library does on SIGTERM: save, then exit 0
    "import signal, sys, time\n"
    "def stop(*_):\n"
    "    print('saved on SIGTERM', flush=True)\n"
    "    sys.exit(0)\n"
    "signal.signal(signal.SIGTERM, stop)\n"
    "time.sleep(86400)\n"
)
EAT_MEMORY = (  # past resources.limits.memory (64Mi) within a second
    "chunks = []\nwhile True:\n    chunks.append(bytearray(16 << 20))\n"
)


@dataclass(frozen=True)
class Case:
    name: str
    node: str
    script: str
    how: str  # the header's account of how the pod ended
    outcome: str  # what endings.classify_end must say: the platform's intent, not its output
    why: str
    trainer_extra: dict[str, Any]


CASES = {
    c.name: c
    for c in (
        Case(
            "oom-killed",
            ON_DEMAND,
            EAT_MEMORY,
            "the trainer (limits.memory 64Mi) appends 16 MiB bytearrays until the kernel's OOM "
            "killer ends it; the node stays Ready",
            "Failed",
            "OOMKilled (exit code 137)",
            {"resources": {"limits": {"memory": "64Mi"}, "requests": {"memory": "64Mi"}}},
        ),
        Case(
            "liveness-probe-kill",
            ON_DEMAND,
            SLEEP,
            "the trainer's livenessProbe (exec `false`, initialDelaySeconds 5, periodSeconds 2, "
            "failureThreshold 2) fails; the kubelet kills the container (SIGTERM, forwarded by "
            "spotrun-exec to the sleeping python, which has no handler); the node stays Ready; "
            f"captured {KILL_SETTLE_SECONDS + 1} s after the trainer's finishedAt, when the "
            "operator decides a kubelet kill",
            "Failed",
            "exit code 143 (killed by the kubelet)",
            {
                "livenessProbe": {
                    "exec": {"command": ["false"]},
                    "initialDelaySeconds": 5,
                    "periodSeconds": 2,
                    "failureThreshold": 2,
                }
            },
        ),
        Case(
            "scheduler-preemption",
            ON_DEMAND,
            SLEEP,
            "the trainer requests 1500m of the on-demand worker's 2 CPUs; a pod of a "
            "PriorityClass of value 1000000 asking the same on the same node makes the "
            "scheduler preempt it (graceful delete, grace 10 s: SIGTERM, forwarded by "
            "spotrun-exec to the python without a handler)",
            "Preempted",
            "DisruptionTarget PreemptionByScheduler",
            {"resources": {"requests": {"cpu": "1500m"}}},
        ),
        Case(
            "drained-with-notice",
            SPOT,
            SAVE_ON_SIGTERM,
            "`hack/kind/preempt <spot worker> --notice 0`: the interruption taint "
            "karpenter.sh/disrupted:NoSchedule, then the Eviction API (grace 10 s); the trainer "
            "saves and exits 0 on SIGTERM; captured as soon as the pod's phase is final, "
            "before the node's container is stopped and its Node deleted",
            "Preempted",
            "DisruptionTarget EvictionByEvictionAPI",
            {},
        ),
        Case(
            "abrupt-node-loss",
            SPOT,
            SLEEP,
            "`hack/kind/preempt <spot worker> --abrupt`: `docker kill` of the node's container "
            "and its Node deleted (a VM gone with no notice); the controller-manager's pod GC "
            "fails the orphaned pod about 40 s later and deletes it (the finalizer holds it)",
            "Preempted",
            "DisruptionTarget DeletionByPodGC",
            {},
        ),
        Case(
            "taint-manager-unreachable",
            SPOT,
            SLEEP,
            "`docker kill` of the spot worker's container, its Node left in place: the node "
            "lifecycle controller marks it Unknown/unreachable after its grace period, and the "
            "taint-eviction controller deletes the pod when its toleration of "
            "node.kubernetes.io/unreachable (tolerationSeconds 5 here, 300 by default) ends; "
            "captured once the pod's deletion grace period (10 s) has run out",
            "Preempted",
            "DisruptionTarget DeletionByTaintManager",
            {},
        ),
    )
}


def log(message: str) -> None:
    print(f"[capture-endings] {message}", file=sys.stderr, flush=True)


class Cluster:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        done = run(KUBECTL, *args, env=self.env, stdin=stdin)
        if check and done.returncode != 0:
            raise SystemExit(f"[capture-endings] FAILED: kubectl {' '.join(args)}: {done.stderr}")
        return done.stdout

    def hack(self, script: str, *args: str) -> None:
        done = run(KIND_DIR / script, *args, env=self.env, timeout=900)
        if done.returncode != 0:
            raise SystemExit(f"[capture-endings] FAILED: hack/kind/{script}: {done.stderr}")

    def get(self, kind: str, name: str, namespace: str | None = NAMESPACE) -> dict[str, Any] | None:
        ns = ["-n", namespace] if namespace else []
        done = run(KUBECTL, *ns, "get", kind, name, "-o", "json", env=self.env)
        if done.returncode != 0:
            if "NotFound" in done.stderr:
                return None
            raise SystemExit(f"[capture-endings] FAILED: kubectl get {kind} {name}: {done.stderr}")
        found: dict[str, Any] = json.loads(done.stdout)
        return found

    def pod(self, name: str) -> dict[str, Any]:
        found = self.get("pod", name)
        if found is None:
            raise SystemExit(f"[capture-endings] FAILED: pod {name} is gone")
        return found

    def node(self, name: str) -> dict[str, Any] | None:
        return self.get("node", name, namespace=None)

    def events(self, pod: str) -> list[dict[str, Any]]:
        listed = json.loads(
            self.kubectl(
                "-n",
                NAMESPACE,
                "get",
                "events",
                "--field-selector",
                f"involvedObject.name={pod}",
                "-o",
                "json",
            )
        )["items"]
        listed.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
        return [
            {
                "type": e.get("type"),
                "reason": e.get("reason"),
                "message": e.get("message"),
                "source": (e.get("source") or {}).get("component") or e.get("reportingComponent"),
            }
            for e in listed
        ]

    def release(self, pod: str) -> None:
        """Lift the finalizer (as the operator does once it has read the end)."""
        if self.get("pod", pod) is not None:
            self.kubectl(
                "-n",
                NAMESPACE,
                "patch",
                "pod",
                pod,
                "--type=json",
                "-p",
                json.dumps([{"op": "remove", "path": "/metadata/finalizers"}]),
                check=False,
            )


def pod_manifest(case: Case, image: str) -> dict[str, Any]:
    trainer = {
        "name": "trainer",
        "image": image,
        "command": ["spotrun-exec", "--", "python", "-c", case.script],
        **case.trainer_extra,
    }
    tolerations: list[dict[str, Any]] = [{**nodes.SPOT_TAINT, "operator": "Equal"}]
    if case.name == "taint-manager-unreachable":
        tolerations.append(
            {
                "key": "node.kubernetes.io/unreachable",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 5,
            }
        )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"capture-{case.name}",
            "namespace": NAMESPACE,
            "labels": {"spotrun.dev/job": "capture", "spotrun.dev/attempt": "1"},
            "finalizers": [FINALIZER],
        },
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 10,
            "nodeSelector": {"kubernetes.io/hostname": case.node},
            "tolerations": tolerations,
            "initContainers": [
                {
                    "name": "spotrun-sidecar",
                    "image": image,
                    "restartPolicy": "Always",
                    "command": ["python", "-c", SAVE_ON_SIGTERM],
                }
            ],
            "containers": [trainer],
        },
    }


def phase(cluster: Cluster, pod: str) -> str:
    return str((cluster.pod(pod).get("status") or {}).get("phase"))


def ended(cluster: Cluster, pod: str) -> bool:
    return phase(cluster, pod) in ("Succeeded", "Failed")


def trim(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    """managedFields (every writer's field list) and a node's cached image list: noise."""
    if obj is None:
        return None
    obj["metadata"].pop("managedFields", None)
    (obj.get("status") or {}).pop("images", None)
    return obj


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def write(
    cluster: Cluster,
    case: Case,
    versions: str,
    pod: dict[str, Any],
    node: dict[str, Any] | None,
    at: dt.datetime,
) -> Path:
    name = pod["metadata"]["name"]
    header = [
        f"Captured on kind ({versions}), {at:%Y-%m-%d} UTC, by",
        "`python -m tests.kind.capture_endings` (tests/kind/capture_endings.py, case "
        f"{case.name}): {case.how}.",
        "The Pod and Node as the API server returned them at `expect.now`, less managedFields "
        "and the node's image list; `events` are the pod's Events (for the reader).",
        "`expect` is what the case means (tests/kind/capture_endings.py CASES), not the "
        "classifier's output.",
    ]
    lines = []
    for paragraph in header:
        words, line = paragraph.split(), "#"
        for word in words:
            if len(line) + len(word) + 1 > 98:
                lines.append(line)
                line = "#  "
            line += " " + word
        lines.append(line)
    body = {
        "expect": {
            "outcome": case.outcome,
            "why": case.why,
            "now": at.isoformat().replace("+00:00", "Z"),
        },
        "pod": trim(pod),
        "node": trim(node),
        "events": cluster.events(name),
    }
    path = OUT / f"kind-{case.name}.yaml"
    path.write_text("\n".join(lines) + "\n" + yaml.safe_dump(body, sort_keys=False, width=100))
    log(f"wrote {path.relative_to(REPO)}")
    return path


def versions_of(node: dict[str, Any]) -> str:
    info = node["status"]["nodeInfo"]
    kubelet = info["kubeletVersion"]
    runtime = info["containerRuntimeVersion"].replace("containerd://", "")
    return (
        f"kubelet and kube-controller-manager {kubelet}, kubernetes/kubernetes @ {kubelet}; "
        f"containerd {runtime}, containerd/containerd @ v{runtime}; "
        f"kernel {info['kernelVersion']}, cgroup v1; hack/kind's node image"
    )


def start(cluster: Cluster, case: Case, image: str) -> str:
    manifest = pod_manifest(case, image)
    name = str(manifest["metadata"]["name"])
    cluster.kubectl("-n", NAMESPACE, "delete", "pod", name, "--ignore-not-found", "--wait=false")
    cluster.release(name)
    wait_for(f"old {name} gone", lambda: cluster.get("pod", name) is None, 120)
    cluster.kubectl("create", "-f", "-", stdin=json.dumps(manifest))
    log(f"{name} created on {case.node}")
    return name


def running(cluster: Cluster, pod: str) -> bool:
    return phase(cluster, pod) == "Running"


def capture_on_ready_node(cluster: Cluster, case: Case, pod: str, versions: str) -> None:
    """oom-killed, liveness-probe-kill: the pod ends on its own, its node stays Ready."""
    wait_for(f"{pod} to end", lambda: ended(cluster, pod), 300)
    term = cluster.pod(pod)["status"]["containerStatuses"][0]["state"]["terminated"]
    if case.name == "liveness-probe-kill":
        finished = dt.datetime.fromisoformat(term["finishedAt"].replace("Z", "+00:00"))
        settle = finished + dt.timedelta(seconds=KILL_SETTLE_SECONDS + 1)
        time.sleep(max(0.0, (settle - now_utc()).total_seconds()))
    at = now_utc()
    write(cluster, case, versions, cluster.pod(pod), cluster.node(case.node), at)
    cluster.release(pod)


PRIORITY_CLASS = "capture-endings-high"


def capture_scheduler_preemption(cluster: Cluster, case: Case, pod: str, versions: str) -> None:
    wait_for(f"{pod} to run", lambda: running(cluster, pod), 300)
    high = {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {"name": PRIORITY_CLASS},
        "value": 1000000,
    }
    preemptor = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "capture-preemptor", "namespace": NAMESPACE},
        "spec": {
            "priorityClassName": PRIORITY_CLASS,
            "nodeSelector": {"kubernetes.io/hostname": case.node},
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "main",
                    "image": cluster.pod(pod)["spec"]["containers"][0]["image"],
                    "command": ["sleep", "3600"],
                    "resources": {"requests": {"cpu": "1500m"}},
                }
            ],
        },
    }
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps(high))
    cluster.kubectl("create", "-f", "-", stdin=json.dumps(preemptor))
    try:
        wait_for(f"{pod} to end", lambda: ended(cluster, pod), 120)
        at = now_utc()
        write(cluster, case, versions, cluster.pod(pod), cluster.node(case.node), at)
    finally:
        cluster.release(pod)
        cluster.kubectl("-n", NAMESPACE, "delete", "pod", "capture-preemptor", check=False)
        cluster.kubectl("delete", "priorityclass", PRIORITY_CLASS, check=False)


def capture_drained(cluster: Cluster, case: Case, pod: str, versions: str) -> None:
    wait_for(f"{pod} to run", lambda: running(cluster, pod), 300)
    preempt = subprocess.Popen(
        [str(KIND_DIR / "preempt"), case.node, "--notice", "0"],
        env=cluster.env,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(f"{pod} to end", lambda: ended(cluster, pod), 120)
    at = now_utc()
    node = cluster.node(case.node)
    assert node is not None, f"{case.node} was deleted before {pod}'s end could be read with it"
    write(cluster, case, versions, cluster.pod(pod), node, at)
    cluster.release(pod)
    _, err = preempt.communicate(timeout=300)
    if preempt.returncode != 0:
        raise SystemExit(f"[capture-endings] FAILED: hack/kind/preempt: {err}")
    cluster.hack("add-node", case.node)


def capture_abrupt(cluster: Cluster, case: Case, pod: str, versions: str) -> None:
    wait_for(f"{pod} to run", lambda: running(cluster, pod), 300)
    cluster.hack("preempt", case.node, "--abrupt")
    wait_for(
        f"the pod GC to fail {pod}",
        lambda: (
            any(
                c.get("type") == "DisruptionTarget"
                for c in cluster.pod(pod)["status"].get("conditions") or []
            )
            and (cluster.pod(pod)["metadata"].get("deletionTimestamp") is not None)
        ),
        300,
    )
    at = now_utc()
    write(cluster, case, versions, cluster.pod(pod), cluster.node(case.node), at)
    cluster.release(pod)
    cluster.hack("add-node", case.node)


def capture_unreachable(cluster: Cluster, case: Case, pod: str, versions: str) -> None:
    wait_for(f"{pod} to run", lambda: running(cluster, pod), 300)
    done = run("docker", "kill", case.node, env=cluster.env)
    if done.returncode != 0:
        raise SystemExit(f"[capture-endings] FAILED: docker kill {case.node}: {done.stderr}")
    log(f"{case.node} killed, its Node kept: waiting for the taint manager")

    def deletion() -> dt.datetime | None:
        text = cluster.pod(pod)["metadata"].get("deletionTimestamp")
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None

    deadline = wait_for(f"the taint manager to delete {pod}", deletion, 300)
    time.sleep(max(0.0, (deadline - now_utc()).total_seconds()) + 1)
    at = now_utc()
    write(cluster, case, versions, cluster.pod(pod), cluster.node(case.node), at)
    cluster.release(pod)
    # a cloud would delete the Node of a machine that is gone; the pod GC then removes the pod
    cluster.kubectl("delete", "node", case.node, "--wait=false")
    cluster.hack("add-node", case.node)


CAPTURE = {
    "oom-killed": capture_on_ready_node,
    "liveness-probe-kill": capture_on_ready_node,
    "scheduler-preemption": capture_scheduler_preemption,
    "drained-with-notice": capture_drained,
    "abrupt-node-loss": capture_abrupt,
    "taint-manager-unreachable": capture_unreachable,
}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--image", required=True, help="the pushed sidecar image (python, spotrun-exec)"
    )
    parser.add_argument("cases", nargs="*", metavar="CASE", help=", ".join(CASES))
    args = parser.parse_args(argv)
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}: the cases are {', '.join(CASES)}")
    cluster = Cluster(dict(os.environ))
    on_demand = cluster.node(ON_DEMAND)
    if on_demand is None or cluster.node(SPOT) is None:
        raise SystemExit(
            f"[capture-endings] FAILED: no nodes {ON_DEMAND} and {SPOT}: "
            'eval "$(hack/kind/up --on-demand 1 --spot 1)" first'
        )
    versions = versions_of(on_demand)
    cluster.kubectl("create", "namespace", NAMESPACE, check=False)
    try:
        names = [str(n) for n in args.cases] or list(CASES)
        started = {
            n: start(cluster, CASES[n], args.image) for n in names if CASES[n].node == ON_DEMAND
        }
        for name in names:
            pod = started.get(name) or start(cluster, CASES[name], args.image)
            CAPTURE[name](cluster, CASES[name], pod, versions)
    finally:
        for name in CASES:
            cluster.release(f"capture-{name}")
        cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


if __name__ == "__main__":
    main(sys.argv[1:])
