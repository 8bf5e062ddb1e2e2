"""How an attempt's pod ended, read the way the kubelet and the controller-manager write it.

``classify_end(pod, node, suspended, trainer)`` returns an ``Ended`` (SUCCEEDED, PREEMPTED,
FAILED or SUSPENDED) or None while the pod has not ended. Pure: it reads the Pod and Node
objects only (no Events; see the last paragraph).

What each component writes (kubernetes/kubernetes; fixtures in tests/unit/operator/fixtures/):

- Graceful node shutdown (GKE spot, a VM's ACPI shutdown; pkg/kubelet/nodeshutdown): phase
  Failed, ``status.reason: Terminated``, message "Pod was terminated in response to imminent
  node shutdown.", condition DisruptionTarget reason TerminationByKubelet. A preemption.
- Node-pressure eviction (pkg/kubelet/eviction): phase Failed, ``status.reason: Evicted``,
  DisruptionTarget TerminationByKubelet. The platform's doing: a preemption.
- Eviction API (kubectl drain, Karpenter, cluster-autoscaler, AWS NTH; pkg/registry/core/pod/
  storage/eviction.go): DisruptionTarget EvictionByEvictionAPI, then a graceful delete
  (``deletionTimestamp``). Scheduler preemption: DisruptionTarget PreemptionByScheduler, then a
  delete. Both preemptions.
- A node that stops reporting (pkg/controller/nodelifecycle): its Ready condition turns
  Unknown (reason NodeStatusUnknown, "Kubelet stopped posting node status.") and it gets the
  NoExecute taint node.kubernetes.io/unreachable (Ready=False: node.kubernetes.io/not-ready).
  Nothing updates its pods' phase: they stay Running. The pod is *lost* once it is deleted and
  its grace period has run out while the kubelet is silent: the taint-eviction controller
  deletes it when its toleration (300 s by default) ends (DisruptionTarget
  DeletionByTaintManager, pkg/controller/tainteviction); PodGC sets phase Failed with
  DisruptionTarget DeletionByPodGC once the Node object is deleted (pkg/controller/podgc);
  older controller-managers set ``status.reason: NodeLost``. A lost pod is a preemption. A
  deleted pod on a Ready or NotReady-but-reporting node is waited for: its kubelet will say how
  it ended (the trainer may still be saving).
- A liveness or startup probe failure (pkg/kubelet/kuberuntime computePodActions; attempt pods
  have ``restartPolicy: Never``, so the container is not restarted and the pod ends): the
  kubelet sends SIGTERM, then SIGKILL at the grace deadline; the container ends with exit 143
  or 137, ``reason: Error``; phase Failed. No DisruptionTarget, no deletion, no status.reason;
  the node stays Ready. Events say it ("Unhealthy: Liveness probe failed: ...", "Killing:
  Container trainer failed liveness probe"), restartCount stays 0.
- An OOM kill: exit 137, ``reason: OOMKilled``, phase Failed, nothing else.

The rule: a pod is preempted when the platform left a sign on it (DisruptionTarget, a
preemption ``status.reason``, a deletion) or, for a trainer that did not exit on its own
(killed by a signal: 143/137, or no exit code), when its node is gone, unreachable, not ready
or tainted for interruption. Exit 143/137 alone is NOT a sign: with none of the above the
kubelet killed the trainer on a healthy node (a failing probe) — a failure, counted against
``backoffLimit``. OOMKilled is a failure unless the platform's signs say otherwise (an
eviction), and a node's state never explains it (the runtime reported it, so the node was up).

A trainer the operator runs under torchrun (a gang's pod, or ``procsPerNode > 1``: its
container carries ``PET_NNODES``) leaves exit 1, not 143, when SIGTERM ends it: torchrun
forwards the signal to its workers, waits for them (they save and exit 0), then re-raises its
``SignalException`` (torch/distributed/launcher/api.py, ``launch_agent``), an uncaught
exception. For such a trainer exit 1 is read like 143: its node's state explains it, and it is
decided only once the node has had time to be seen as silent (below).

A kubelet kill is decided only once the node has had time to be seen as silent: a VM
switched off without graceful node shutdown may SIGTERM its containers while its kubelet still
reports their exit, and the node controller marks the node unreachable only after its grace
period (``--node-monitor-grace-period``, 50 s since Kubernetes 1.32, 40 s before). Until
``KILL_SETTLE_SECONDS`` after the trainer's ``finishedAt`` such an end is undecided (None).

Limit: a trainer that saves and exits 0 on the kubelet's SIGTERM after a failed liveness probe
(the spotrun library does) leaves a Succeeded pod with no trace of the kill in the Pod or Node;
only the pod's "Killing" Event tells it, and this operator does not read Events. Attempt pods
should not carry liveness probes on the trainer; the sidecar's probes do not end the pod.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from . import models as m
from . import reasons as r
from .gang import TORCHRUN_NNODES
from .podstate import (
    Obj,
    condition,
    container_status,
    has_condition,
    interruption_taint,
    node_health,
    parse_ts,
    run_seconds,
    terminated,
)
from .reports import sidecar_report

KILL_SETTLE_SECONDS = 50.0  # the node controller's default node-monitor-grace-period


class Outcome(enum.Enum):
    SUCCEEDED = "Succeeded"
    PREEMPTED = "Preempted"
    FAILED = "Failed"
    SUSPENDED = "Suspended"
    TEMPLATE_CHANGED = "TemplateChanged"  # the operator stopped it for a new spec.template


@dataclass(frozen=True)
class Ended:
    outcome: Outcome
    why: str
    exit_code: int | None = None
    message: str = ""
    checkpoint: m.CheckpointRef | None = None
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)


def platform_signs(pod: Obj) -> list[str]:
    """What the platform wrote on the pod itself when it ended it (empty: nothing)."""
    status = pod.get("status") or {}
    signs = []
    if has_condition(pod, r.POD_DISRUPTION_TARGET):
        reason = (condition(pod, r.POD_DISRUPTION_TARGET) or {}).get("reason")
        signs.append(f"{r.POD_DISRUPTION_TARGET} {reason}" if reason else r.POD_DISRUPTION_TARGET)
    if status.get("reason") in r.PREEMPTION_REASONS:
        signs.append(str(status["reason"]))
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        signs.append("pod deleted")
    return signs


def node_signs(pod: Obj, node: Obj | None) -> list[str]:
    """Why the pod's node explains a trainer killed by a signal: gone, unreachable, not
    ready, tainted for interruption (empty: a healthy node, or a pod never scheduled)."""
    name = (pod.get("spec") or {}).get("nodeName")
    if not name:
        return []
    health = node_health(node)
    if health != "ready":
        return [f"node {name} {health.replace('-', ' ')}"]
    taint = interruption_taint(node)
    return [f"node {name} tainted {taint}"] if taint else []


TORCHRUN_SIGNAL_EXIT = 1  # torchrun's exit when SIGTERM stopped it (module docstring)


def signal_exits(pod: Obj, trainer_name: str) -> frozenset[int]:
    """The trainer's exit codes that a signal may have caused: 143 and 137, and 1 for a
    trainer the operator runs under torchrun (it sets ``PET_NNODES`` in its env)."""
    for c in (pod.get("spec") or {}).get("containers") or []:
        if isinstance(c, dict) and c.get("name") == trainer_name:
            names = {e.get("name") for e in c.get("env") or [] if isinstance(e, dict)}
            if TORCHRUN_NNODES in names:
                return r.KILL_EXITS | {TORCHRUN_SIGNAL_EXIT}
    return r.KILL_EXITS


def classify_end(
    pod: Obj,
    node: Obj | None,
    suspended: bool,
    trainer_name: str,
    *,
    now: datetime | None = None,
    template_changed: bool = False,
) -> Ended | None:
    """How the pod of an attempt ended; None while it has not ended (module docstring).

    ``now`` decides whether a deleted pod on a silent node has outlived its grace period (lost);
    without it the grace period counts as over. When the job is suspended, an end the platform
    (or the operator) caused is Suspended, not Preempted. When the pod runs an older
    ``spec.template`` (``template_changed``, ``templates.py``), an end whose only sign is the
    delete (the operator's, for the new template) is TemplateChanged; a platform's sign on the
    pod or its node still makes it a preemption."""
    phase = (pod.get("status") or {}).get("phase")
    if phase not in ("Succeeded", "Failed"):
        return _lost(pod, node, suspended, now)
    trainer = container_status(pod, trainer_name)
    term = terminated(trainer)
    code = term.get("exitCode") if isinstance(term.get("exitCode"), int) else None
    oom = term.get("reason") == r.OOM_KILLED
    report = sidecar_report(pod)
    checkpoint, metrics = report if report is not None else (None, {})
    seconds = run_seconds(pod, trainer)
    signs = platform_signs(pod)
    by_signal = not oom and (code is None or code in signal_exits(pod, trainer_name))
    if by_signal:
        signs += node_signs(pod, node)
    if signs and template_changed and not suspended and signs == ["pod deleted"]:
        why = "stopped for a changed spec.template"
        return Ended(Outcome.TEMPLATE_CHANGED, why, code, "", checkpoint, seconds, metrics)
    if signs:
        outcome = Outcome.SUSPENDED if suspended else Outcome.PREEMPTED
        why = "suspended" if suspended else ", ".join(signs)
        return Ended(outcome, why, code, "", checkpoint, seconds, metrics)
    if phase == "Succeeded":
        return Ended(Outcome.SUCCEEDED, "exit 0", 0, "", checkpoint, seconds, metrics)
    if by_signal and code is not None and not _settled(term, now):
        return None
    why, message = _failure(pod, trainer_name, code, oom, term)
    return Ended(Outcome.FAILED, why, code, message, checkpoint, seconds, metrics)


def _settled(term: Obj, now: datetime | None) -> bool:
    """Whether a node that died with the trainer would be marked unreachable by now."""
    text = term.get("finishedAt")
    finished = parse_ts(text) if isinstance(text, str) else None
    if now is None or finished is None:
        return True
    return (now - finished).total_seconds() >= KILL_SETTLE_SECONDS


def _failure(pod: Obj, trainer: str, code: int | None, oom: bool, term: Obj) -> tuple[str, str]:
    """(why, message) of an end nothing interrupted: the user's code, its memory, its probes."""
    own = str(term.get("message") or term.get("reason") or "").strip()
    name = (pod.get("metadata") or {}).get("name", "the pod")
    if oom:
        hint = (
            f"container {trainer} of {name} ran out of memory (killed by the kernel's OOM "
            "killer); raise its resources.limits.memory in spec.template or use less memory"
        )
        return f"OOMKilled (exit code {code})", _join(hint, own if own != r.OOM_KILLED else "")
    if code in r.KILL_EXITS:
        hint = (
            f"the kubelet killed container {trainer} of {name} on a Ready node without any "
            "sign of a disruption: a failing livenessProbe or startupProbe does that "
            f"(kubectl describe pod {name}: Killing events); fix or relax the probe"
        )
        return f"exit code {code} (killed by the kubelet)", _join(hint, own)
    return f"exit code {code}", own


def _join(first: str, second: str) -> str:
    return f"{first}; {second}" if first and second and second != "Error" else first


def _lost(pod: Obj, node: Obj | None, suspended: bool, now: datetime | None) -> Ended | None:
    """A pod deleted on a node that is gone or silent, past its grace period: nothing will
    ever report its end. None for any other pod that has not ended."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    deadline = parse_ts(meta.get("deletionTimestamp"))
    health = node_health(node)
    if deadline is None or not spec.get("nodeName") or health not in ("gone", "unreachable"):
        return None
    if now is not None and now < deadline:
        return None
    why = f"pod lost: node {spec['nodeName']} {health}"
    reason = (condition(pod, r.POD_DISRUPTION_TARGET) or {}).get("reason")
    if reason:
        why += f", {r.POD_DISRUPTION_TARGET} {reason}"
    start = parse_ts((pod.get("status") or {}).get("startTime"))
    seconds = max(0.0, (deadline - start).total_seconds()) if start else 0.0
    outcome = Outcome.SUSPENDED if suspended else Outcome.PREEMPTED
    return Ended(outcome, "suspended" if suspended else why, None, "", None, seconds)
