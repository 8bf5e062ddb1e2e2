"""Run the process node: ``python -m localcluster.node --state DIR --server URL ...``."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from .. import config, procs
from ..kubeapi import Kube, KubeError
from ..pki import Pki
from . import kubeletapi, nodes
from .control import serve
from .manager import NodeManager
from .podworker import NodeContext

Obj = dict[str, Any]


def _check_mount_namespaces() -> None:
    result = subprocess.run(["unshare", "--mount", "true"], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(
            "process node: cannot create a mount namespace (`unshare --mount` failed: "
            f"{result.stderr.strip()}); it needs root (or CAP_SYS_ADMIN) to give each pod "
            "its volumes at their mountPath"
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="process-node")
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--server", required=True)
    parser.add_argument("--control-port", type=int, required=True)
    parser.add_argument("--kubelet-port", type=int, required=True)
    parser.add_argument("--spot", type=int, default=3)
    parser.add_argument("--on-demand", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    _check_mount_namespaces()

    state: Path = args.state
    kube = Kube(args.server, Pki(state / "pki"), user="process-node")
    port = args.server.rsplit(":", 1)[1]

    def fetch(kind: str, namespace: str, name: str) -> Obj | None:
        scope = f"/namespaces/{namespace}" if namespace else ""  # "": cluster-scoped (PVs)
        try:
            obj: Obj = kube.get(f"/api/v1{scope}/{kind}/{name}")
            return obj
        except KubeError as err:
            if err.status == 404:
                return None
            raise

    def token(namespace: str, service_account: str, audience: str | None, expiration: int,
              pod_name: str, pod_uid: str) -> str:
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else None,
                "expirationSeconds": expiration,
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": pod_name,
                                   "uid": pod_uid},
            },
        }
        path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token"
        return str(kube.post(path, body)["status"]["token"])

    # The "image" every container gets: the venv (spotrun) and, once built, spotrun-exec, as
    # the sidecar image holds both (the operator's --sidecar-image injects it from there).
    try:
        entrypoint = [str(config.binary("spotrun-exec").parent)]
    except config.MissingBinaryError:
        entrypoint = []
    path = os.pathsep.join([str(config.venv_bin()), *entrypoint, "/usr/local/sbin",
                            "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"])

    def base_env(pod: Obj) -> dict[str, str]:
        return {
            "PATH": path,
            "HOME": os.environ.get("HOME", "/root"),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "HOSTNAME": pod["metadata"]["name"],
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": port,
            "KUBERNETES_SERVICE_PORT_HTTPS": port,
            "KUBERNETES_PORT": f"tcp://127.0.0.1:{port}",
            procs.MARKER_ENV: str(state),
        }

    ctx = NodeContext(kube, state, fetch, token, base_env, str(config.REPO_ROOT))
    manager = NodeManager(kube, ctx, args.kubelet_port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    for capacity_type, count in ((nodes.SPOT, args.spot), (nodes.ON_DEMAND, args.on_demand)):
        for _ in range(count):
            manager.add_node(capacity_type)
    server = serve(manager, args.control_port)
    kubelet_server = kubeletapi.serve(manager, args.kubelet_port, Pki(state / "pki"))
    threading.Thread(target=manager.lease_loop, name="leases", daemon=True).start()
    threading.Thread(target=manager.pod_loop, name="pods", daemon=True).start()
    stop.wait()
    server.shutdown()
    kubelet_server.shutdown()
    manager.shutdown()


if __name__ == "__main__":
    main()
