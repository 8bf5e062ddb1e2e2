"""The process node's control loops: its Nodes and their Leases, the pods bound to them,
spot interruptions (``preempt``) and fresh capacity (``add_node``)."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from ..kubeapi import Kube, KubeError
from . import nodes
from .podworker import NodeContext, PodWorker

Obj = dict[str, Any]
log = logging.getLogger("process-node")

LEASE_RENEW_SECONDS = 2.0
STATUS_HEARTBEAT_SECONDS = 30.0
WATCH_SECONDS = 60


@dataclass
class NodeEntry:
    name: str
    capacity_type: str
    uid: str = ""
    renewing: bool = True
    preempting: bool = False
    gone: bool = False


class NodeManager:
    def __init__(self, kube: Kube, ctx: NodeContext, kubelet_port: int) -> None:
        self.kube = kube
        self.ctx = ctx
        self.kubelet_port = kubelet_port
        self.nodes: dict[str, NodeEntry] = {}
        self.workers: dict[str, PodWorker] = {}
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self._counter = {nodes.SPOT: itertools.count(1), nodes.ON_DEMAND: itertools.count(1)}

    # --- nodes ------------------------------------------------------------------------------
    def add_node(self, capacity_type: str, name: str | None = None, gpus: int = 0,
                 zone: str | None = None) -> str:
        """A fresh Node; ``zone`` (topology.kubernetes.io/zone) defaults to local-a/b/c by count."""
        if capacity_type not in (nodes.SPOT, nodes.ON_DEMAND):
            raise ValueError(f"capacity type must be {nodes.SPOT!r} or {nodes.ON_DEMAND!r}")
        with self.lock:
            while name is None or name in self.nodes:
                name = f"{capacity_type}-{next(self._counter[capacity_type])}"
            entry = NodeEntry(name, capacity_type)
            self.nodes[name] = entry
        zone = zone or "local-" + "abc"[len(self.nodes) % 3]
        body = nodes.node_object(name, capacity_type, zone)
        try:
            created = self.kube.post("/api/v1/nodes", body)
        except KubeError as err:
            if err.status != 409:
                raise
            created = self.kube.get(f"/api/v1/nodes/{name}")
        entry.uid = created["metadata"]["uid"]
        self.kube.patch(
            f"/api/v1/nodes/{name}/status",
            {"status": nodes.node_status(nodes.capacity(gpus), self.kubelet_port)},
            kind="strategic",
        )
        self._renew(entry)
        self._wait_schedulable(name)
        log.info("node %s (%s) registered", name, capacity_type)
        return name

    def _wait_schedulable(self, name: str, timeout: float = 60.0) -> None:
        """Until the node lifecycle controller has lifted ``node.kubernetes.io/not-ready``.

        The API server's TaintNodesByCondition admission puts that NoSchedule taint on every
        new Node; until the controller sees Ready and removes it, the scheduler passes the node
        over (a pod created meanwhile lands on an older node: a test asking for the new one
        fails by chance)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            taints = self.kube.get(f"/api/v1/nodes/{name}")["spec"].get("taints") or []
            if not any(t.get("key") == nodes.NOT_READY_TAINT_KEY for t in taints):
                return
            time.sleep(0.1)
        log.warning("node %s still has the %s taint after %.0f s", name,
                    nodes.NOT_READY_TAINT_KEY, timeout)

    def _renew(self, entry: NodeEntry) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{entry.name}"
        try:
            self.kube.patch(path, {"spec": {"renewTime": nodes.now_micro(),
                                            "holderIdentity": entry.name}})
        except KubeError as err:
            if err.status != 404:
                raise
            self.kube.post(
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                nodes.lease_object(entry.name, entry.uid),
            )

    def stop_lease(self, name: str) -> None:
        """Stop renewing ``name``'s Lease (a hung kubelet); the node goes NotReady."""
        self.nodes[name].renewing = False

    def lease_loop(self) -> None:
        last_status = time.monotonic()
        while not self.stopping.wait(LEASE_RENEW_SECONDS):
            heartbeat = time.monotonic() - last_status > STATUS_HEARTBEAT_SECONDS
            for entry in list(self.nodes.values()):
                if entry.gone or not entry.renewing:
                    continue
                try:
                    self._renew(entry)
                    if heartbeat:
                        self.kube.patch(
                            f"/api/v1/nodes/{entry.name}/status",
                            {"status": {"conditions": nodes.conditions()}},
                            kind="strategic",
                        )
                except KubeError as err:
                    log.warning("node %s: heartbeat failed: %s", entry.name, err)
            if heartbeat:
                last_status = time.monotonic()
            self._notice_deleted_nodes()

    def _notice_deleted_nodes(self) -> None:
        try:
            listed = self.kube.get("/api/v1/nodes")["items"]
        except KubeError as err:
            log.warning("listing nodes failed: %s", err)
            return
        present = {n["metadata"]["name"] for n in listed}
        for entry in list(self.nodes.values()):
            if not entry.gone and entry.uid and entry.name not in present:
                self.node_gone(entry.name)

    def node_gone(self, name: str) -> None:
        """The Node is deleted (the machine is gone): its processes die, its pods are GC'd."""
        entry = self.nodes[name]
        entry.gone = True
        with self.lock:
            doomed = [w for w in self.workers.values() if w.pod["spec"].get("nodeName") == name]
        for worker in doomed:
            worker.stop_now()
        for worker in doomed:
            worker.join(10)
            self._gc_orphan(worker.pod)
        log.info("node %s is gone", name)

    def _gc_orphan(self, pod: Obj) -> None:
        """What the pod GC controller does to a pod whose node no longer exists."""
        meta = pod["metadata"]
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
        condition = {
            "type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC",
            "message": "PodGC: node no longer exists", "lastTransitionTime": nodes.now(),
        }
        try:
            self.kube.patch(path + "/status",
                            {"status": {"phase": "Failed", "conditions": [condition]}},
                            kind="strategic")
            self.kube.delete(path, {"gracePeriodSeconds": 0,
                                    "preconditions": {"uid": meta["uid"]}})
        except KubeError as err:
            if err.status not in (404, 409):
                log.warning("pod %s/%s: orphan cleanup failed: %s", meta["namespace"],
                            meta["name"], err)

    # --- spot interruption ------------------------------------------------------------------
    def preempt(self, name: str, notice_seconds: float) -> None:
        """A spot interruption: taint, notice, evict (DisruptionTarget), grace, delete Node."""
        entry = self.nodes.get(name)
        if entry is None or entry.gone:
            raise KeyError(f"no live process node named {name!r}")
        entry.preempting = True
        threading.Thread(target=self._preempt, args=(entry, notice_seconds),
                         name=f"preempt-{name}", daemon=True).start()

    def _preempt(self, entry: NodeEntry, notice_seconds: float) -> None:
        try:
            node = self.kube.get(f"/api/v1/nodes/{entry.name}")
            taints = [t for t in node["spec"].get("taints") or []
                      if t["key"] != nodes.INTERRUPTION_TAINT["key"]]
            taints.append(dict(nodes.INTERRUPTION_TAINT, timeAdded=nodes.now()))
            self.kube.patch(
                f"/api/v1/nodes/{entry.name}",
                {"metadata": {"annotations": {"spotrun.dev/interruption-notice": nodes.now()}},
                 "spec": {"taints": taints}},
            )
            log.info("node %s: spot interruption notice, %ss", entry.name, notice_seconds)
            self.stopping.wait(notice_seconds)
            pods = self._pods_on(entry.name)
            grace = 0
            for pod in pods:
                meta = pod["metadata"]
                if pod["status"].get("phase") in ("Succeeded", "Failed"):
                    continue
                # a pod deleted already (the operator's own delete on the taint) still has
                # its grace period: the node stays until it ends, as a cloud's notice does
                grace = max(grace, int(pod["spec"].get("terminationGracePeriodSeconds", 30)))
                if meta.get("deletionTimestamp"):
                    continue
                eviction = {"apiVersion": "policy/v1", "kind": "Eviction",
                            "metadata": {"name": meta["name"], "namespace": meta["namespace"]}}
                try:
                    self.kube.post(
                        f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/eviction",
                        eviction,
                    )
                except KubeError as err:
                    if err.status != 404:
                        log.warning("evicting %s/%s: %s", meta["namespace"], meta["name"], err)
            deadline = time.monotonic() + grace + 5
            while time.monotonic() < deadline and any(
                p["status"].get("phase") not in ("Succeeded", "Failed")
                for p in self._pods_on(entry.name)
            ):
                self.stopping.wait(0.2)
            self.kube.delete(f"/api/v1/nodes/{entry.name}")
        except KubeError as err:
            log.error("node %s: preemption failed: %s", entry.name, err)
        finally:
            self.node_gone(entry.name)

    def _pods_on(self, node: str) -> list[Obj]:
        result: list[Obj] = self.kube.get(
            "/api/v1/pods", {"fieldSelector": f"spec.nodeName={node}"}
        )["items"]
        return result

    # --- pods ---------------------------------------------------------------------------
    def sync(self, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        node = self.nodes.get(pod["spec"].get("nodeName") or "")
        with self.lock:
            worker = self.workers.get(uid)
            if worker is not None:
                worker.update(pod)
                return
            if node is None or node.gone:
                return
            phase = (pod.get("status") or {}).get("phase")
            if phase in ("Succeeded", "Failed"):
                if pod["metadata"].get("deletionTimestamp"):
                    self._gc_orphan(pod)
                return
            worker = PodWorker(pod, self.ctx)
            self.workers[uid] = worker
        worker.start()

    def worker_of(self, namespace: str, name: str) -> PodWorker | None:
        with self.lock:
            for worker in self.workers.values():
                if worker.namespace == namespace and worker.pod_name == name:
                    return worker
        return None

    def forget(self, pod: Obj) -> None:
        with self.lock:
            worker = self.workers.pop(pod["metadata"]["uid"], None)
        if worker is not None:
            worker.stop_now()

    def pod_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                listed = self.kube.get("/api/v1/pods")
                seen = set()
                for pod in listed["items"]:
                    seen.add(pod["metadata"]["uid"])
                    self.sync(pod)
                with self.lock:
                    stale = [w.pod for uid, w in self.workers.items() if uid not in seen]
                for pod in stale:
                    self.forget(pod)
                version = listed["metadata"]["resourceVersion"]
                for event in self.kube.watch(
                    "/api/v1/pods", {"resourceVersion": version}, WATCH_SECONDS
                ):
                    if self.stopping.is_set():
                        return
                    if event["type"] == "ERROR":
                        break
                    if event["type"] == "DELETED":
                        self.forget(event["object"])
                    else:
                        self.sync(event["object"])
            except (KubeError, OSError, ValueError) as err:
                log.warning("pod watch: %s; listing again", err)
                self.stopping.wait(1.0)
            self._reap_workers()

    def _reap_workers(self) -> None:
        with self.lock:
            for uid, worker in list(self.workers.items()):
                if not worker.is_alive() and worker.gone.is_set():
                    del self.workers[uid]

    def shutdown(self) -> None:
        self.stopping.set()
        with self.lock:
            workers = list(self.workers.values())
        for worker in workers:
            worker.stop_now()
        for worker in workers:
            worker.join(10)
