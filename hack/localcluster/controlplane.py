"""etcd, kube-apiserver, kube-scheduler, kube-controller-manager and the process node.

All listen on loopback at free ports; certs, kubeconfigs, logs and pid files live in the
state dir. ``start`` returns once the API server is ready, the scheduler and controller
manager are healthy and every process node reports Ready.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import urllib3

from . import config, pki, procs
from .kubeapi import Kube
from .state import ControlPlaneInfo, write_kubeconfig

# Stopped in this order (the process node first, so its pods end before the API does).
COMPONENTS = ("node", "kube-controller-manager", "kube-scheduler", "kube-apiserver", "etcd")
SERVICE_CIDR = "10.0.0.0/24"


def _healthy(url: str, pki_: pki.Pki | None = None) -> bool:
    kwargs: dict[str, str] = {"cert_reqs": "CERT_NONE"}
    if pki_ is not None:
        kwargs = {
            "cert_reqs": "CERT_REQUIRED",
            "ca_certs": str(pki_.ca_crt),
            "cert_file": str(pki_.crt("admin")),
            "key_file": str(pki_.key("admin")),
        }
    http = urllib3.PoolManager(**kwargs)  # type: ignore[arg-type]
    try:
        with warnings.catch_warnings():  # the scheduler's and controller manager's
            warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
            resp = http.request("GET", url, timeout=2.0, retries=False)
    except urllib3.exceptions.HTTPError:
        return False
    return resp.status == 200


def _await(state: Path, name: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    log = state / "logs" / f"{name}.log"
    pid = int(procs.pid_file(state, name).read_text())
    while not check():
        if not procs.is_alive(pid):
            tail = "".join(log.read_text(errors="replace").splitlines(True)[-15:])
            raise RuntimeError(f"{name} exited while starting; last lines of {log}:\n{tail}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} was not ready within {timeout:.0f}s; see {log}")
        time.sleep(0.2)


def running(state: Path, info: ControlPlaneInfo | None) -> bool:
    if info is None or any(procs.running_pid(state, c) is None for c in COMPONENTS):
        return False
    return _healthy(f"{info.server}/readyz", pki.Pki(state / "pki"))


def stop(state: Path) -> None:
    for name in COMPONENTS:
        procs.stop(state, name, timeout=15.0 if name == "node" else 10.0)


def start(
    state: Path,
    spot: int,
    on_demand: int,
    node_monitor_grace_seconds: int = 20,
    timeout: float = 120.0,
    progress: Callable[[str], None] = lambda _: None,
) -> ControlPlaneInfo:
    stop(state)
    # Containers of an earlier run whose process node was killed without a chance to stop them.
    s3 = procs.running_pid(state, "s3")
    procs.sweep(state, keep=[s3] if s3 else [])
    for leftover in ("etcd", "node"):
        shutil.rmtree(state / leftover, ignore_errors=True)
    keys = pki.ensure(state / "pki")
    ports = procs.free_ports(7)
    info = ControlPlaneInfo(
        etcd_port=ports[0],
        etcd_peer_port=ports[1],
        apiserver_port=ports[2],
        scheduler_port=ports[3],
        controller_manager_port=ports[4],
        node_control_port=ports[5],
        kubelet_port=ports[6],
        kubeconfig=str(state / "kubeconfig"),
        node_monitor_grace_seconds=node_monitor_grace_seconds,
        spot=spot,
        on_demand=on_demand,
    )
    _start_etcd(state, info)
    progress(f"etcd ready on 127.0.0.1:{info.etcd_port}")
    _start_apiserver(state, info, keys)
    progress(f"kube-apiserver ready at {info.server}")
    write_kubeconfig(Path(info.kubeconfig), info.server, keys, "admin")
    for name in ("kube-scheduler", "kube-controller-manager", "process-node"):
        write_kubeconfig(state / f"{name}.kubeconfig", info.server, keys, name)
    _start_scheduler(state, info)
    progress("kube-scheduler healthy")
    _start_controller_manager(state, info, keys, node_monitor_grace_seconds)
    progress("kube-controller-manager healthy")
    _start_node(state, info, timeout)
    progress(f"process node ready: {spot} spot + {on_demand} on-demand nodes")
    return info


def _start_etcd(state: Path, info: ControlPlaneInfo) -> None:
    client = f"http://127.0.0.1:{info.etcd_port}"
    peer = f"http://127.0.0.1:{info.etcd_peer_port}"
    procs.start(
        state,
        "etcd",
        [
            str(config.binary("etcd")),
            "--name=default",
            f"--data-dir={state / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        ],
    )
    _await(state, "etcd", lambda: _healthy(f"{client}/health"), 30)


def _start_apiserver(state: Path, info: ControlPlaneInfo, keys: pki.Pki) -> None:
    procs.start(
        state,
        "kube-apiserver",
        [
            str(config.binary("kube-apiserver")),
            f"--etcd-servers=http://127.0.0.1:{info.etcd_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={info.apiserver_port}",
            f"--cert-dir={state / 'apiserver-certs'}",
            f"--tls-cert-file={keys.crt('apiserver')}",
            f"--tls-private-key-file={keys.key('apiserver')}",
            f"--client-ca-file={keys.ca_crt}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={info.server}",
            f"--service-account-key-file={keys.sa_pub}",
            f"--service-account-signing-key-file={keys.sa_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            "--endpoint-reconciler-type=none",
            # `kubectl logs`: the API server calls the process node's kubelet API.
            f"--kubelet-client-certificate={keys.crt('apiserver-kubelet-client')}",
            f"--kubelet-client-key={keys.key('apiserver-kubelet-client')}",
            f"--kubelet-certificate-authority={keys.ca_crt}",
            "--kubelet-preferred-address-types=InternalIP",
            "--profiling=false",
            "--v=1",
        ],
    )
    _await(state, "kube-apiserver", lambda: _healthy(f"{info.server}/readyz", keys), 90)


def _start_scheduler(state: Path, info: ControlPlaneInfo) -> None:
    kubeconfig = state / "kube-scheduler.kubeconfig"
    procs.start(
        state,
        "kube-scheduler",
        [
            str(config.binary("kube-scheduler")),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={info.scheduler_port}",
            f"--cert-dir={state / 'scheduler-certs'}",
            "--leader-elect=false",
            "--v=1",
        ],
    )
    url = f"https://127.0.0.1:{info.scheduler_port}/healthz"
    _await(state, "kube-scheduler", lambda: _healthy(url), 60)


def _start_controller_manager(
    state: Path, info: ControlPlaneInfo, keys: pki.Pki, grace: int
) -> None:
    kubeconfig = state / "kube-controller-manager.kubeconfig"
    procs.start(
        state,
        "kube-controller-manager",
        [
            str(config.binary("kube-controller-manager")),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={info.controller_manager_port}",
            f"--cert-dir={state / 'controller-manager-certs'}",
            "--leader-elect=false",
            "--controllers=*",
            "--use-service-account-credentials=true",
            f"--root-ca-file={keys.ca_crt}",
            f"--service-account-private-key-file={keys.sa_key}",
            f"--cluster-signing-cert-file={keys.ca_crt}",
            f"--cluster-signing-key-file={keys.ca_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--node-monitor-grace-period={grace}s",
            "--node-monitor-period=1s",
            "--v=1",
        ],
    )
    url = f"https://127.0.0.1:{info.controller_manager_port}/healthz"
    _await(state, "kube-controller-manager", lambda: _healthy(url), 60)


def node_python() -> str:
    venv_python = config.venv_bin() / "python"
    return str(venv_python) if venv_python.exists() else sys.executable


def _start_node(state: Path, info: ControlPlaneInfo, timeout: float) -> None:
    env = dict(os.environ, PYTHONPATH=str(config.HACK_DIR))
    procs.start(
        state,
        "node",
        [
            node_python(),
            "-m",
            "localcluster.node",
            f"--state={state}",
            f"--server={info.server}",
            f"--control-port={info.node_control_port}",
            f"--kubelet-port={info.kubelet_port}",
            f"--spot={info.spot}",
            f"--on-demand={info.on_demand}",
        ],
        env=env,
        cwd=config.REPO_ROOT,
    )
    kube = Kube(info.server, pki.Pki(state / "pki"))

    def nodes_ready() -> bool:
        items = kube.get("/api/v1/nodes")["items"]
        ready = [
            n
            for n in items
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in n.get("status", {}).get("conditions", [])
            )
        ]
        return len(ready) >= info.spot + info.on_demand

    _await(state, "node", nodes_ready, timeout)

    def default_namespace_ready() -> bool:
        # Pods are refused until their ServiceAccount exists; kubectl users expect `default`.
        sa = kube.get("/api/v1/namespaces/default/serviceaccounts")["items"]
        ca = kube.get("/api/v1/namespaces/default/configmaps")["items"]
        return any(o["metadata"]["name"] == "default" for o in sa) and any(
            o["metadata"]["name"] == "kube-root-ca.crt" for o in ca
        )

    _await(state, "kube-controller-manager", default_namespace_ready, timeout)
