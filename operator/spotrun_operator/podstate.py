"""Reading what the API server holds about a pod and its node: pure look-ups on the dicts the
client returns (a field that is missing or of the wrong type reads as absent, never raises)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from . import reasons as r
from .builders import LABEL_ATTEMPT

Obj = dict[str, Any]  # a Pod or Node object as the API returns it
NodeHealth = Literal["ready", "not-ready", "unreachable", "gone"]


def ts(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def parse_ts(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _dict(value: Any) -> Obj:
    return value if isinstance(value, dict) else {}


def attempt_of(pod: Obj) -> int:
    value = _dict(_dict(pod.get("metadata")).get("labels")).get(LABEL_ATTEMPT, "")
    return int(value) if isinstance(value, str) and value.isdigit() else 0


def container_status(pod: Obj, name: str, init: bool = False) -> Obj | None:
    key = "initContainerStatuses" if init else "containerStatuses"
    for cs in _dict(pod.get("status")).get(key) or []:
        if isinstance(cs, dict) and cs.get("name") == name:
            return dict(cs)
    return None


def terminated(cs: Obj | None) -> Obj:
    """``state.terminated`` of a container status ({} while it has not ended)."""
    return _dict(_dict(_dict(cs).get("state")).get("terminated"))


def condition(obj: Obj, kind: str) -> Obj | None:
    """The condition ``kind`` of a pod or node, if it has one."""
    for c in _dict(obj.get("status")).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == kind:
            return c
    return None


def has_condition(obj: Obj, kind: str) -> bool:
    return (condition(obj, kind) or {}).get("status") == "True"


def taint_keys(node: Obj | None) -> list[str]:
    taints = _dict(_dict(node).get("spec")).get("taints") or []
    return [str(t["key"]) for t in taints if isinstance(t, dict) and "key" in t]


def interruption_taint(node: Obj | None) -> str | None:
    """The key of an interruption/deletion taint on the node, if it has one."""
    return next((k for k in taint_keys(node) if k in r.INTERRUPTION_TAINTS), None)


def node_health(node: Obj | None) -> NodeHealth:
    """What the control plane knows of the node: ``gone`` (no Node object), ``unreachable``
    (its kubelet stopped posting: Ready=Unknown or the unreachable taint, or no Ready
    condition ever), ``not-ready`` (the kubelet says Ready=False: it still reports, so it will
    also report how its pods end), else ``ready``."""
    if node is None:
        return "gone"
    ready = (condition(node, r.NODE_READY) or {}).get("status")
    keys = taint_keys(node)
    if ready not in ("True", "False") or r.TAINT_UNREACHABLE in keys:
        return "unreachable"
    if ready == "False" or r.TAINT_NOT_READY in keys:
        return "not-ready"
    return "ready"


def run_seconds(pod: Obj, trainer: Obj | None) -> float:
    start = parse_ts(_dict(pod.get("status")).get("startTime"))
    end = parse_ts(terminated(trainer).get("finishedAt"))
    return max(0.0, (end - start).total_seconds()) if start and end else 0.0
