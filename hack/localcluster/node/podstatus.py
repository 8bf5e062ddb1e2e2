"""What the process node knows about each container, and the pod status a kubelet reports.

``ContainerRun`` is the node's record of one container; ``pod_status`` turns the records
into the API's ``status`` (phase, conditions, init/container statuses). Pure functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .container import Process
from .nodes import now
from .probes import ProbeState

Obj = dict[str, Any]

INIT, SIDECAR, MAIN = "init", "sidecar", "main"


@dataclass
class ContainerRun:
    spec: Obj
    kind: str
    restart_count: int = 0
    waiting_reason: str = "PodInitializing"
    waiting_message: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    reason: str = ""
    message: str = ""
    last_terminated: Obj | None = None
    started: bool = False
    ready: bool = False
    process: Process | None = field(default=None, repr=False)
    startup: ProbeState | None = None
    readiness: ProbeState | None = None
    liveness: ProbeState | None = None
    backoff_until: float = 0.0
    log_path: str = ""

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def running(self) -> bool:
        return self.process is not None and self.exit_code is None

    @property
    def terminated(self) -> bool:
        return self.exit_code is not None

    def terminated_state(self) -> Obj:
        return {
            "exitCode": self.exit_code,
            "reason": self.reason or ("Completed" if self.exit_code == 0 else "Error"),
            "message": self.message,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "containerID": f"process://{self.process.pid}" if self.process else "",
        }


def container_status(run: ContainerRun) -> Obj:
    if run.terminated:
        state: Obj = {"terminated": {k: v for k, v in run.terminated_state().items() if v != ""}}
    elif run.running:
        state = {"running": {"startedAt": run.started_at}}
    else:
        waiting: Obj = {"reason": run.waiting_reason}
        if run.waiting_message:
            waiting["message"] = run.waiting_message
        state = {"waiting": waiting}
    out: Obj = {
        "name": run.name,
        "image": run.spec.get("image", ""),
        "imageID": "",
        "restartCount": run.restart_count,
        "started": run.running and run.started,
        "ready": run.running and run.ready,
        "state": state,
        "lastState": {"terminated": run.last_terminated} if run.last_terminated else {},
    }
    if run.process is not None:
        out["containerID"] = f"process://{run.process.pid}"
    return out


def _condition(kind: str, ok: bool, previous: dict[str, Obj], reason: str = "") -> Obj:
    status = "True" if ok else "False"
    old = previous.get(kind)
    since = old["lastTransitionTime"] if old and old.get("status") == status else now()
    out: Obj = {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": since}
    if reason and not ok:
        out["reason"] = reason
    return out


def pod_status(
    pod: Obj,
    phase: str,
    init_runs: list[ContainerRun],
    main_runs: list[ContainerRun],
    initialized: bool,
    start_time: str,
    reason: str = "",
    message: str = "",
) -> Obj:
    previous = {c["type"]: c for c in (pod.get("status") or {}).get("conditions") or []}
    terminal = phase in ("Succeeded", "Failed")
    sidecars = [r for r in init_runs if r.kind == SIDECAR]
    ready = (
        not terminal
        and all(r.running and r.ready for r in main_runs)
        and all(r.running and r.ready for r in sidecars)
    )
    not_ready = "PodCompleted" if terminal else "ContainersNotReady"
    conditions = [
        _condition("PodReadyToStartContainers", not terminal, previous),
        _condition("Initialized", initialized, previous, "ContainersNotInitialized"),
        _condition("Ready", ready, previous, not_ready),
        _condition("ContainersReady", ready, previous, not_ready),
        _condition("PodScheduled", True, previous),
    ]
    status: Obj = {
        "phase": phase,
        "conditions": conditions,
        "hostIP": "127.0.0.1",
        "hostIPs": [{"ip": "127.0.0.1"}],
        "podIP": "127.0.0.1",
        "podIPs": [{"ip": "127.0.0.1"}],
        "startTime": start_time,
        "qosClass": (pod.get("status") or {}).get("qosClass", "BestEffort"),
        "initContainerStatuses": [container_status(r) for r in init_runs],
        "containerStatuses": [container_status(r) for r in main_runs],
    }
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    return status
