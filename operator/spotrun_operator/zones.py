"""Retry elsewhere: after an attempt is preempted, the next attempts prefer nodes outside the
zone and node pool it ran in, for ``spec.spot.avoidReclaimedSeconds`` (docs/reference.md).

- ``placement``: where an attempt's pod runs, read off its Node: the zone label and the first
  node-pool label present (``POOL_LABELS``). Each value is checked as a Kubernetes label value
  (at most 63 characters, alphanumerics with ``-_.`` inside): one that is not is not used, and
  the problem says which node, which label and why. ``observe`` records the placement in
  ``status.placement`` the first time the attempt's pod is seen on its node, since that node may
  be gone by the time the attempt's end is seen.
- ``reclaim``: the avoid list after a preemption: expired entries dropped, the place added (or
  renewed when it was there already), newest last, at most ``MAX_AVOIDED``.
- ``preferred_terms``: preferred node-affinity terms, one per avoided zone and one per avoided
  pool, each ``NotIn`` that place. Its weight is the share of the place's window still ahead
  (100 just after the preemption, 1 near its end), so where every zone was reclaimed the
  scheduler leans to the one reclaimed longest ago. Preferences only: where only avoided
  nodes have room, the pod runs there.

Pure functions; ``observe``/``reclaimed``/``prefer`` act on a ``Planner`` like the rest of the
decisions.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta
from typing import Any

from . import models as m
from .plan import Planner
from .podstate import Obj, parse_ts, ts

ZONE_LABEL = "topology.kubernetes.io/zone"
# GKE, EKS managed node groups, Karpenter, AKS: the first one a node carries names its pool.
POOL_LABELS = (
    "cloud.google.com/gke-nodepool",
    "eks.amazonaws.com/nodegroup",
    "karpenter.sh/nodepool",
    "kubernetes.azure.com/agentpool",
)
MAX_WEIGHT = 100  # the scheduler's limit for a preferred term
# The places an AvoidingZone Event lists fit in this many characters: an Event's message is cut
# at 1024 (kube.py), and the note and the newest places come first.
DESCRIBE_CHARS = 800
_LABEL_VALUE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")


def label_problem(value: Any) -> str | None:
    """Why ``value`` is no Kubernetes label value (None when it is one)."""
    if not isinstance(value, str):
        return f"is a {type(value).__name__}, not a string"
    if len(value) > 63:
        return f"has {len(value)} characters (at most 63)"
    if not _LABEL_VALUE.fullmatch(value):
        return f"{value[:63]!r} is not alphanumerics with -_. inside"
    return None


def _label(node_name: str, labels: dict[str, Any], key: str, problems: list[str]) -> str | None:
    value = labels.get(key)
    if value is None or value == "":
        return None
    problem = label_problem(value)
    if problem is None:
        return str(value)
    problems.append(
        f"node {node_name}: label {key} {problem}: the attempt's place is not avoided after a "
        "preemption; fix the node's label (a label value: at most 63 alphanumerics, -_. inside)"
    )
    return None


def placement(node_name: str, node: Obj, attempt: int) -> tuple[m.Placement, list[str]]:
    """Where ``attempt`` runs: ``node``'s zone and pool, with the problems of labels not used."""
    meta = node.get("metadata")
    labels = meta.get("labels") if isinstance(meta, dict) else None
    labels = labels if isinstance(labels, dict) else {}
    problems: list[str] = []
    zone = _label(node_name, labels, ZONE_LABEL, problems)
    pool_label = next((k for k in POOL_LABELS if labels.get(k) not in (None, "")), None)
    pool = _label(node_name, labels, pool_label, problems) if pool_label else None
    where = m.Placement(
        attempt=attempt,
        node=node_name[:253],
        zone=zone,
        poolLabel=pool_label if pool else None,
        pool=pool,
    )
    return where, problems


def active(avoiding: list[m.AvoidedPlace] | None, now: datetime) -> list[m.AvoidedPlace]:
    """The entries whose window has not ended at ``now``."""
    return [a for a in avoiding or [] if (until := parse_ts(a.until)) is not None and until > now]


def reclaim(
    avoiding: list[m.AvoidedPlace] | None, where: m.Placement, now: datetime, seconds: int
) -> list[m.AvoidedPlace]:
    """The avoid list once the attempt at ``where`` was preempted at ``now``."""
    same = (where.zone, where.poolLabel, where.pool)
    kept = [a for a in active(avoiding, now) if (a.zone, a.poolLabel, a.pool) != same]
    now = now.replace(microsecond=0)
    entry = m.AvoidedPlace(
        **where.model_dump(),
        reclaimedAt=ts(now),
        until=ts(now + timedelta(seconds=seconds)),
    )
    return [*kept, entry][-m.MAX_AVOIDED :]


def _weight(entry: m.AvoidedPlace, now: datetime) -> int:
    start, until = parse_ts(entry.reclaimedAt), parse_ts(entry.until)
    if start is None or until is None or until <= start:
        return 1
    left = (until - now).total_seconds() / (until - start).total_seconds()
    return max(1, min(MAX_WEIGHT, math.ceil(MAX_WEIGHT * left)))


def preferred_terms(avoiding: list[m.AvoidedPlace] | None, now: datetime) -> list[Obj]:
    """Preferred node-affinity terms away from the places still avoided at ``now``."""
    weights: dict[tuple[str, str], int] = {}
    for entry in active(avoiding, now):
        places = [(ZONE_LABEL, entry.zone), (entry.poolLabel, entry.pool)]
        for key, value in places:
            if key and value:
                weights[key, value] = max(weights.get((key, value), 0), _weight(entry, now))
    return [
        {
            "weight": weight,
            "preference": {
                "matchExpressions": [{"key": key, "operator": "NotIn", "values": [value]}]
            },
        }
        for (key, value), weight in weights.items()
    ]


def describe(avoiding: list[m.AvoidedPlace], budget: int = DESCRIBE_CHARS) -> str:
    """``zone local-b (...) until 12:40:00Z; zone local-a (...) until 12:30:00Z; and 3 more``:
    the newest first, as many as fit in ``budget`` characters (at least one)."""
    parts: list[str] = []
    newest_first = list(reversed(avoiding))
    for a in newest_first:
        place = f"zone {a.zone}" if a.zone else "no zone"
        if a.pool:
            place += f", node pool {a.poolLabel}={a.pool}"
        part = f"{place} (attempt {a.attempt} preempted on node {a.node}) until {a.until}"
        if parts and sum(len(x) + 2 for x in [*parts, part]) > budget:
            break
        parts.append(part)
    left = len(newest_first) - len(parts)
    return "; ".join(parts) + (f"; and {left} more (status.avoiding)" if left else "")


def observe(p: Planner, pod: Obj, node: Obj | None) -> None:
    """Record where the current attempt's pod runs, once (``status.placement``)."""
    st = p.st
    name = (pod.get("spec") or {}).get("nodeName")
    if node is None or not isinstance(name, str) or not name:
        return
    if st.placement is not None and st.placement.attempt == st.attempt:
        return
    st.placement, problems = placement(name, node, st.attempt)
    for problem in problems:
        p.event(m.REASON_NODE_LABEL, problem, warning=True)


def forget_expired(p: Planner) -> None:
    """Entries whose window ended leave ``status.avoiding``."""
    if p.st.avoiding:
        p.st.avoiding = active(p.st.avoiding, p.now) or None


def reclaimed(p: Planner, attempt: int) -> None:
    """``attempt`` was preempted: avoid where it ran (if known) for avoidReclaimedSeconds."""
    st, seconds = p.st, p.spec.spot.avoidReclaimedSeconds
    where = st.placement
    if seconds == 0 or where is None or where.attempt != attempt:
        return
    if where.zone is None and where.pool is None:
        return
    st.avoiding = reclaim(st.avoiding, where, p.now, seconds)


def prefer(p: Planner, pod_name: str) -> list[Obj]:
    """The preferred terms of the attempt ``pod_name`` about to be created, told in an Event."""
    avoiding = active(p.st.avoiding, p.now)
    if p.spec.spot.avoidReclaimedSeconds == 0 or not avoiding:
        return []
    p.event(
        m.REASON_AVOIDING_ZONE,
        f"{pod_name} prefers nodes outside the places reclaimed lately, a preference, not a "
        f"requirement (spec.spot.avoidReclaimedSeconds); newest first: {describe(avoiding)}",
    )
    return preferred_terms(avoiding, p.now)
