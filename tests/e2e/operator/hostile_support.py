"""Hostile sidecars for the operator's e2e test and bench/slow_status_bench.py: jobs whose
attempt pod is ours, with a sidecar that serves /status as a tenant attacking the operator
would (slow-loris, or a redirect to an "internal" URL), and a preemption as the pod GC marks
one (status patch), so the operator's reaction can be timed.

On the process node images are ignored and pods share the host network: the pod
``<job>-1`` is created by us in the shape the operator gives it (labels, sidecar init
container named ``spotrun-sidecar`` with ``SPOTRUN_SIDECAR_PORT``), while the job is
suspended; resuming the job makes the operator adopt it (its create answers 409).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from e2e_support import IMAGE, SPOT_TOLERATION, wait_for
from kubernetes import client

ARGS = ("spotrun.dev", "v1alpha1")
PLURAL = "resumabletrainingjobs"
SIDECAR = "spotrun-sidecar"

# What the redirect target and the slow-loris would hand over: never allowed into a status.
SECRET_STEP = 424242
SLOW_STEP = 777777

# The hostile sidecar: MODE slow (a valid report, one byte every 0.5 s: about a minute per
# answer) or redirect (302 to TARGET_PORT, where a valid-looking "internal" report waits).
# Each connection appends a line to HITS (HITS.target for the redirect target).
SERVER = f"""
import json, os, socket, threading, time
port, mode, hits = int(os.environ["SPOTRUN_SIDECAR_PORT"]), os.environ["MODE"], os.environ["HITS"]

def answer(body, status="200 OK", extra=""):
    head = f"HTTP/1.0 {{status}}\\r\\nContent-Type: application/json\\r\\n"
    return (head + f"Content-Length: {{len(body)}}\\r\\n{{extra}}\\r\\n").encode() + body

def note(path):
    with open(path, "a") as f:
        f.write("hit\\n")

def slow(conn):
    note(hits)
    conn.recv(4096)
    for byte in answer(json.dumps({{"step": {SLOW_STEP}, "uri": "s3://slow/loris"}}).encode()):
        conn.sendall(bytes([byte]))
        time.sleep(0.5)

def redirect(conn):
    note(hits)
    conn.recv(4096)
    where = f"http://127.0.0.1:{{os.environ['TARGET_PORT']}}/status"
    conn.sendall(answer(b"", "302 Found", f"Location: {{where}}\\r\\n"))

def target(conn):
    note(hits + ".target")
    conn.recv(4096)
    body = {{"step": {SECRET_STEP}, "uri": "s3://internal/secret", "metrics": {{"loss": 0.5}}}}
    conn.sendall(answer(json.dumps(body).encode()))

def serve(port, handle):
    server = socket.create_server(("0.0.0.0", port))
    while True:
        conn, _ = server.accept()
        def run(conn=conn):
            try:
                handle(conn)
            except OSError:
                pass
            finally:
                conn.close()
        threading.Thread(target=run, daemon=True).start()

if mode == "redirect":
    where = int(os.environ["TARGET_PORT"])
    threading.Thread(target=serve, args=(where, target), daemon=True).start()
serve(port, slow if mode == "slow" else redirect)
"""


def hostile_job(name: str, port: int, bucket: str) -> dict[str, Any]:
    """A suspended job whose sidecar listens on ``port`` (its own: the host network)."""
    container = {"name": "trainer", "image": IMAGE, "command": ["python", "-c", "0"]}
    return {
        "apiVersion": "/".join(ARGS),
        "kind": "ResumableTrainingJob",
        "metadata": {"name": name},
        "spec": {
            "template": {"spec": {"containers": [container]}},
            "checkpoint": {"storage": {"uri": f"s3://{bucket}/{name}"}, "sidecarPort": port},
            "suspend": True,
        },
    }


def hostile_pod(job: dict[str, Any], mode: str, hits: Path, target_port: int = 0) -> dict[str, Any]:
    """Attempt 1's pod of ``job`` as the operator would make it, but with a hostile sidecar."""
    meta, port = job["metadata"], job["spec"]["checkpoint"]["sidecarPort"]
    env = {
        "SPOTRUN_SIDECAR_PORT": str(port),
        "MODE": mode,
        "HITS": str(hits),
        "TARGET_PORT": str(target_port),
    }
    sidecar = {
        "name": SIDECAR,
        "image": IMAGE,
        "restartPolicy": "Always",
        "command": ["python", "-c", SERVER],
        "env": [{"name": k, "value": v} for k, v in env.items()],
    }
    trainer = {
        "name": "trainer",
        "image": IMAGE,
        "command": ["python", "-c", "import time; time.sleep(3600)"],
    }
    owner = {
        "apiVersion": "/".join(ARGS),
        "kind": "ResumableTrainingJob",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    labels = {
        "spotrun.dev/job": meta["name"],
        "spotrun.dev/attempt": "1",
        "spotrun.dev/capacity": "spot",
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{meta['name']}-1", "labels": labels, "ownerReferences": [owner]},
        "spec": {
            "initContainers": [sidecar],
            "containers": [trainer],
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "tolerations": [SPOT_TOLERATION],
        },
    }


def start_hostile(
    core: client.CoreV1Api,
    custom: client.CustomObjectsApi,
    namespace: str,
    body: dict[str, Any],
    mode: str,
    hits: Path,
    target_port: int = 0,
) -> None:
    """Create the job suspended, wait until the operator saw it, put our pod in place of its
    attempt 1, then resume the job: the operator adopts the pod and asks its sidecar."""
    name = body["metadata"]["name"]
    job = custom.create_namespaced_custom_object(*ARGS, namespace, PLURAL, body)
    wait_for(lambda: phase_of(custom, namespace, name) == "Suspended", f"{name} to be Suspended")
    core.create_namespaced_pod(namespace, hostile_pod(job, mode, hits, target_port))
    custom.patch_namespaced_custom_object(
        *ARGS, namespace, PLURAL, name, {"spec": {"suspend": False}}
    )


def phase_of(custom: client.CustomObjectsApi, namespace: str, name: str) -> str | None:
    job = custom.get_namespaced_custom_object(*ARGS, namespace, PLURAL, name)
    return (job.get("status") or {}).get("phase")


def hit_count(hits: Path) -> int:
    return len(hits.read_text().splitlines()) if hits.exists() else 0


def stir(core: client.CoreV1Api, namespace: str, pods: list[str], mark: str) -> None:
    """A pod event for each of ``pods`` (an annotation changes), so the operator reconciles
    their jobs right now, as a tenant can make it do at will (a flapping readiness probe)."""
    for pod in pods:
        body = {"metadata": {"annotations": {"spotrun.dev/e2e-stir": mark}}}
        core.patch_namespaced_pod(pod, namespace, body)


def mark_preempted(core: client.CoreV1Api, namespace: str, pod: str) -> None:
    """End ``pod`` the way the pod GC reports a reclaimed node's pod: phase Failed, reason
    DeletionByPodGC, condition DisruptionTarget (a preemption to the operator)."""
    now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    body = {
        "status": {
            "phase": "Failed",
            "reason": "DeletionByPodGC",
            "message": "the node of this pod was reclaimed",
            "conditions": [
                {
                    "type": "DisruptionTarget",
                    "status": "True",
                    "reason": "DeletionByPodGC",
                    "lastTransitionTime": now,
                    "message": "PodGC: node no longer exists",
                }
            ],
        }
    }
    core.patch_namespaced_pod_status(pod, namespace, body)
