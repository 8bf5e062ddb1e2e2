"""A pod's node affinity: the template's own merged with the operator's, dropping none of it.

A NodeSelector's terms are ORed and a term's expressions ANDed, so the template's required
terms and ours (spot or on-demand nodes) are joined pairwise: a node must satisfy one of theirs
AND one of ours. Preferred terms (each scored by its weight) are simply listed together:
theirs first, then ours, less those of ours that no node the required terms allow could meet
(``never_met``). The rest of the template's affinity (podAffinity, podAntiAffinity) is kept as
it is. Pure: dicts in, a new dict out.
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


def _excludes(preference: Obj, term: Obj) -> bool:
    """A node that satisfies the required ``term`` never meets ``preference``: one of the
    preference's NotIn expressions excludes every value the term allows for that key (In)."""
    wanted = _list((preference.get("preference") or {}).get("matchExpressions"))
    pinned = [e for e in _list(term.get("matchExpressions")) if isinstance(e, dict)]
    for avoid in wanted:
        if not isinstance(avoid, dict) or avoid.get("operator") != "NotIn":
            continue
        excluded = set(_list(avoid.get("values")))
        for need in pinned:
            allowed = set(_list(need.get("values")))
            same_key = need.get("key") == avoid.get("key")
            if same_key and need.get("operator") == "In" and allowed and allowed <= excluded:
                return True
    return False


def never_met(preference: Obj, terms: list[Obj]) -> bool:
    """No node that satisfies one of the required ``terms`` could meet ``preference`` (a
    preferred term). Such a preference changes nothing for kube-scheduler, but Karpenter's
    scheduling simulation ANDs it with the requirement: ``karpenter.sh/nodepool In [p]`` and
    ``NotIn [p]`` become "no such label", which every node outside Karpenter's pools matches,
    so Karpenter takes them for room for the pod (it launches nothing for it, and it removes
    the node the pod runs on as underutilized)."""
    return bool(terms) and all(_excludes(preference, term) for term in terms)


def merged(own: Any, required: list[Obj], preferred: list[Obj]) -> Obj:
    """The affinity of a pod whose template says ``own``: its required node terms ANDed with
    ``required`` (ours), its preferred terms followed by those of ``preferred`` (ours) that a
    node it may use could meet."""
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
    meetable = [t for t in preferred if not never_met(t, terms)]
    prefer = _list(node.get(PREFERRED)) + copy.deepcopy(meetable)
    if prefer:
        node[PREFERRED] = prefer
    if node:
        affinity["nodeAffinity"] = node
    return affinity
