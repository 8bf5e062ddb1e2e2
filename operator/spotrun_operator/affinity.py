"""A pod's node affinity: the template's own merged with the operator's, dropping none of it.

A NodeSelector's terms are ORed and a term's expressions ANDed, so the template's required
terms and ours (spot or on-demand nodes) are joined pairwise: a node must satisfy one of theirs
AND one of ours. Preferred terms (each scored by its weight) are simply listed together:
theirs first, then ours. The rest of the template's affinity (podAffinity, podAntiAffinity)
is kept as it is. Pure: dicts in, a new dict out.
"""

from __future__ import annotations

import copy
from typing import Any

from .models import NO_REQUIREMENTS, has_requirements

Obj = dict[str, Any]
REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"
PREFERRED = "preferredDuringSchedulingIgnoredDuringExecution"


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _both(theirs: Obj, ours: Obj) -> Obj:
    """One term that holds where both terms hold. A term without requirements (empty, or a
    misspelled key) is refused: joined, it would drop out and leave the other side alone."""
    for side, term in (("the template's", theirs), ("the operator's", ours)):
        if not has_requirements(term):
            raise ValueError(f"{side} required node affinity term {term!r}: {NO_REQUIREMENTS}")
    out: Obj = {}
    for key in ("matchExpressions", "matchFields"):
        joined = _list(theirs.get(key)) + _list(ours.get(key))
        if joined:
            out[key] = joined
    return out


def merged(own: Any, required: list[Obj], preferred: list[Obj]) -> Obj:
    """The affinity of a pod whose template says ``own``: its required node terms ANDed with
    ``required`` (ours), its preferred terms followed by ``preferred`` (ours)."""
    affinity: Obj = copy.deepcopy(own) if isinstance(own, dict) else {}
    node = affinity.get("nodeAffinity")
    node = node if isinstance(node, dict) else {}
    selector = node.get(REQUIRED)
    theirs = [
        t
        for t in _list(selector.get("nodeSelectorTerms") if isinstance(selector, dict) else None)
        if isinstance(t, dict)
    ]
    ours = copy.deepcopy(required)
    terms = [_both(a, b) for a in theirs for b in ours] if theirs and ours else theirs or ours
    if terms:
        node[REQUIRED] = {"nodeSelectorTerms": terms}
    prefer = _list(node.get(PREFERRED)) + copy.deepcopy(preferred)
    if prefer:
        node[PREFERRED] = prefer
    if node:
        affinity["nodeAffinity"] = node
    return affinity
