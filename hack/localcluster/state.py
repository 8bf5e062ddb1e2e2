"""The state dir's record of what runs where (``<state>/cluster.json``) and the kubeconfig."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .pki import Pki


@dataclass
class S3Info:
    port: int
    access_key: str
    secret_key: str
    region: str
    bucket: str

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class ControlPlaneInfo:
    etcd_port: int
    etcd_peer_port: int
    apiserver_port: int
    scheduler_port: int
    controller_manager_port: int
    node_control_port: int
    kubelet_port: int
    kubeconfig: str
    node_monitor_grace_seconds: int
    spot: int
    on_demand: int

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"


@dataclass
class ClusterRecord:
    s3: S3Info | None = None
    control_plane: ControlPlaneInfo | None = None
    extra: dict[str, str] = field(default_factory=dict)


def record_path(state: Path) -> Path:
    return state / "cluster.json"


def load(state: Path) -> ClusterRecord:
    try:
        raw = json.loads(record_path(state).read_text())
    except FileNotFoundError:
        return ClusterRecord()
    try:
        s3 = S3Info(**raw["s3"]) if raw.get("s3") else None
        cp = ControlPlaneInfo(**raw["control_plane"]) if raw.get("control_plane") else None
    except TypeError:  # written by another version: treat as unknown (pid files still stop it)
        return ClusterRecord()
    return ClusterRecord(s3=s3, control_plane=cp, extra=raw.get("extra", {}))


def save(state: Path, record: ClusterRecord) -> None:
    state.mkdir(parents=True, exist_ok=True)
    tmp = record_path(state).with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(record), indent=2) + "\n")
    tmp.replace(record_path(state))


def write_kubeconfig(path: Path, server: str, pki: Pki, user: str) -> None:
    """A kubeconfig for ``server`` authenticating with the client cert ``user``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "spotrun-local",
                "cluster": {"server": server, "certificate-authority": str(pki.ca_crt)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate": str(pki.crt(user)),
                    "client-key": str(pki.key(user)),
                },
            }
        ],
        "contexts": [
            {
                "name": "spotrun-local",
                "context": {"cluster": "spotrun-local", "user": user, "namespace": "default"},
            }
        ],
        "current-context": "spotrun-local",
    }
    # JSON is valid YAML, so kubectl, helm and the Python client all read it.
    path.write_text(json.dumps(config, indent=2) + "\n")
