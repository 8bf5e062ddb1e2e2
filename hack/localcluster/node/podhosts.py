"""A stand-in for pod DNS on the process node: an /etc/hosts per container.

The process node has no cluster DNS and runs every pod on the host network at 127.0.0.1.
A pod with ``hostname`` and ``subdomain`` (a multi-node job's pods, whose rank 0 is
``MASTER_ADDR=<hostname>.<subdomain>``) gets, bind mounted at ``/etc/hosts`` of each of its
containers, the host's own hosts file plus one line per pod of its namespace that has both
fields: ``127.0.0.1 <hostname>.<subdomain> <hostname>.<subdomain>.<ns>.svc
<hostname>.<subdomain>.<ns>.svc.cluster.local``. It is written when the container starts; a
pod created later is not in it (a gang's rank 0 is created first, and every rank needs only
rank 0's name). Other pods keep the host's /etc/hosts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

Obj = dict[str, Any]
HOST_FILE = Path("/etc/hosts")


def names(pod: Obj) -> list[str]:
    """The DNS names a pod with hostname and subdomain has in its namespace (else none)."""
    spec, meta = pod.get("spec") or {}, pod.get("metadata") or {}
    host, sub, ns = spec.get("hostname"), spec.get("subdomain"), meta.get("namespace")
    if not (isinstance(host, str) and host and isinstance(sub, str) and sub and ns):
        return []
    short = f"{host}.{sub}"
    return [short, f"{short}.{ns}.svc", f"{short}.{ns}.svc.cluster.local"]


def hosts_text(base: str, pods: list[Obj]) -> str:
    """``base`` (the host's hosts file) and a 127.0.0.1 line for each pod's names."""
    lines = [base.rstrip("\n"), "# process node: pods with hostname and subdomain"]
    lines += ["127.0.0.1 " + " ".join(found) for pod in pods if (found := names(pod))]
    return "\n".join(lines) + "\n"


def write(pod: Obj, namespace_pods: list[Obj], pod_dir: Path) -> Path | None:
    """The hosts file for ``pod``'s containers, or None when the pod has no subdomain."""
    if not names(pod):
        return None
    base = HOST_FILE.read_text() if HOST_FILE.exists() else "127.0.0.1 localhost\n"
    path = pod_dir / "etc-hosts"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(hosts_text(base, namespace_pods))
    return path
