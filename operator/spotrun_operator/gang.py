"""Multi-node attempts (``spec.nodes.max > 1``): names, rendezvous and placement of a gang.

Pure functions. An attempt of a gang job is ``nodes.max`` pods ``<job>-<attempt>-<rank>``,
one per node (required pod anti-affinity on ``kubernetes.io/hostname`` among the attempt's
pods), created in one pass, rank 0 first. torchrun finds its peers by static rendezvous: each
pod gets ``PET_NNODES``, ``PET_NODE_RANK``, ``PET_NPROC_PER_NODE``, ``PET_MASTER_ADDR``,
``PET_MASTER_PORT`` (torchrun reads an unset option from ``PET_<OPTION>``) and
``MASTER_ADDR``/``MASTER_PORT``, so the user's command is simply ``torchrun train.py``.
``MASTER_ADDR`` is rank 0's DNS name ``<hostname>.<service>``: every pod has ``hostname``
and ``subdomain`` set, and the job owns a headless Service (``publishNotReadyAddresses``) of
that subdomain. ``MASTER_PORT``: the trainer container's port named ``rendezvous`` if the
template declares one, else 29500.

Pods of one gang may share a network namespace (the process node runs every pod on the host
network), so each rank's sidecar listens on ``spec.checkpoint.sidecarPort + rank``
(``SPOTRUN_SIDECAR_PORT``, which the trainer reads too); the operator reads rank 0's.

A job with ``nodes.max == 1`` keeps the single pod ``<job>-<attempt>`` and none of this env,
except that ``procsPerNode > 1`` sets the torchrun variables for one node.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from . import owners
from .models import JobSpec

LABEL_RANK = "spotrun.dev/rank"
DEFAULT_MASTER_PORT = 29500
PORT_NAME = "rendezvous"
HOSTNAME_KEY = "kubernetes.io/hostname"
MAX_LABEL = 63  # a DNS label: a pod's hostname, a Service's name
HASH_DIGITS = 6  # a Service name that is not the job's own ends in this much of its hash


def is_gang(spec: JobSpec) -> bool:
    """Whether an attempt of this job is a gang of ranked pods."""
    return spec.nodes.max > 1


def attempt_nodes(spec: JobSpec, asked: int | None) -> int:
    """The pods of a gang job's next attempt: what the last one could place (``asked``:
    status.gangNodes, gangplan.fewer_nodes), kept within today's nodes.min..max; else max."""
    most = spec.nodes.max
    return most if asked is None else min(max(asked, spec.nodes.least), most)


def pod_name(job: str, attempt: int, rank: int) -> str:
    """Deterministic: one name per rank of an attempt (a retried create conflicts)."""
    return f"{job}-{attempt}-{rank}"


def pod_names(job: str, attempt: int, nodes: int) -> list[str]:
    return [pod_name(job, attempt, rank) for rank in range(nodes)]


def _label(text: str, tail: str = "") -> str:
    """``text`` as a DNS label ending in ``tail``: dots and other characters become ``-``,
    cut so the whole fits 63 characters, no ``-`` at the cut."""
    head = re.sub(r"[^a-z0-9-]", "-", text.lower())
    return head[: MAX_LABEL - len(tail)].rstrip("-") + tail


def service_name(job: str) -> str:
    """The job's headless Service: the job's name as a DNS-1035 label (a leading digit gets
    the prefix ``rtj-``). A name that had to change to fit (jobs ``a.b`` and ``a-b`` would
    both give ``a-b``) ends in ``-`` and 6 hex digits of the job name's hash."""
    name = job if job[:1].isalpha() else f"rtj-{job}"
    plain = _label(name)
    if plain == job:
        return plain
    return _label(name, "-" + hashlib.sha256(job.encode()).hexdigest()[:HASH_DIGITS])


def service_conflict(service: dict[str, Any] | None, job: str, uid: str) -> str | None:
    """Why the Service a create found in the way (409) is not the job's own (None: it is,
    or it is gone again): it must carry an ownerReference to the job's uid."""
    held = owners.foreign_owner(service, uid)
    if held is None:
        return None
    name = ((service or {}).get("metadata") or {}).get("name")
    return (
        f"Service {name} exists and is not job {job}'s (owned by {held}): the gang's pods "
        f"resolve MASTER_ADDR <rank0>.{name} through it, so they are not created"
    )


def hostname(job: str, attempt: int, rank: int) -> str:
    """The pod's ``hostname``: its name, or as much of the job's name as fits in 63."""
    return _label(job, f"-{attempt}-{rank}")


def master_addr(job: str, attempt: int) -> str:
    """Rank 0's DNS name within the namespace: ``<hostname>.<service>``."""
    return f"{hostname(job, attempt, 0)}.{service_name(job)}"


def master_port(trainer: dict[str, Any]) -> int:
    """The trainer container's port named ``rendezvous``, else 29500."""
    for port in trainer.get("ports") or []:
        if isinstance(port, dict) and port.get("name") == PORT_NAME:
            number = port.get("containerPort")
            if isinstance(number, int):
                return number
    return DEFAULT_MASTER_PORT


TORCHRUN_NNODES = "PET_NNODES"  # in every torchrun env: endings tells a torchrun trainer by it


def torchrun_env(
    job: str, attempt: int, rank: int, nodes: int, procs: int, port: int, grace: int
) -> dict[str, str]:
    """torchrun's static rendezvous for rank ``rank`` of ``nodes`` pods of ``procs`` each.
    One pod (``nodes == 1``) is its own master at 127.0.0.1. On SIGTERM torchrun gives its
    workers ``TORCH_ELASTIC_SHUTDOWN_TIMEOUT`` seconds (default 30) before SIGKILL: set to
    the pod's grace period, so that a save using the whole notice is not cut at 30 s."""
    addr = master_addr(job, attempt) if nodes > 1 else "127.0.0.1"
    return {
        TORCHRUN_NNODES: str(nodes),
        "PET_NODE_RANK": str(rank),
        "PET_NPROC_PER_NODE": str(procs),
        "PET_MASTER_ADDR": addr,
        "PET_MASTER_PORT": str(port),
        "MASTER_ADDR": addr,
        "MASTER_PORT": str(port),
        "TORCH_ELASTIC_SHUTDOWN_TIMEOUT": str(grace),
    }


def anti_affinity(job: str, attempt: int, job_label: str, attempt_label: str) -> dict[str, Any]:
    """The required term that keeps two pods of one attempt off one node."""
    return {
        "labelSelector": {"matchLabels": {job_label: job, attempt_label: str(attempt)}},
        "topologyKey": HOSTNAME_KEY,
    }


def add_anti_affinity(affinity: dict[str, Any], term: dict[str, Any]) -> dict[str, Any]:
    """``affinity`` with ``term`` added to its required pod anti-affinity terms."""
    out = dict(affinity)
    anti = dict(out.get("podAntiAffinity") or {})
    key = "requiredDuringSchedulingIgnoredDuringExecution"
    anti[key] = [*(anti.get(key) or []), term]
    out["podAntiAffinity"] = anti
    return out


def rank_of(pod: dict[str, Any]) -> int | None:
    """The rank label of a gang pod (None: not a gang pod, or a broken label)."""
    value = ((pod.get("metadata") or {}).get("labels") or {}).get(LABEL_RANK)
    return int(value) if isinstance(value, str) and value.isascii() and value.isdigit() else None
