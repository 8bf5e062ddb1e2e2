"""Fixtures of the operator's e2e tests: the CRD, the RBAC, and the operator itself running
as ``python -m spotrun_operator --namespace NS`` under a ServiceAccount token bound to exactly
the ClusterRole of ``manifests/rbac.yaml`` (never as admin, no access to Secrets)."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # e2e_support

REPO = Path(__file__).resolve().parents[3]
MANIFESTS = REPO / "manifests"


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.fixture(scope="session")
def crd(cluster: Any) -> dict[str, Any]:
    """Apply manifests/crd.yaml (create or replace) and wait until it is Established."""
    from e2e_support import wait_for
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    ext = client.ApiextensionsV1Api(cluster.api)
    body = _docs(MANIFESTS / "crd.yaml")[0]
    name = body["metadata"]["name"]
    try:
        current = ext.read_custom_resource_definition(name)
        body["metadata"]["resourceVersion"] = current.metadata.resource_version
        ext.replace_custom_resource_definition(name, body)
    except ApiException as err:
        if err.status != 404:
            raise
        ext.create_custom_resource_definition(body)

    def established() -> bool:
        conds = ext.read_custom_resource_definition(name).status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conds)

    wait_for(established, "the CRD to be Established")
    return body


@pytest.fixture(scope="session")
def cluster_role(cluster: Any) -> str:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    rbac = client.RbacAuthorizationV1Api(cluster.api)
    role = next(d for d in _docs(MANIFESTS / "rbac.yaml") if d["kind"] == "ClusterRole")
    try:
        rbac.create_cluster_role(role)
    except ApiException as err:
        if err.status != 409:
            raise
        rbac.replace_cluster_role(role["metadata"]["name"], role)
    return str(role["metadata"]["name"])


class Operator:
    """The operator as a subprocess; ``kill()`` is SIGKILL, ``start()`` starts a new one."""

    def __init__(self, namespace: str, kubeconfig: Path, log: Path, args: Sequence[str] = (),
                 env: Mapping[str, str] | None = None) -> None:
        self.namespace, self.kubeconfig, self.log_path = namespace, kubeconfig, log
        self.args, self.env = list(args), dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, **self.env, "KUBECONFIG": str(self.kubeconfig)}
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "spotrun_operator", "--namespace", self.namespace,
             *self.args],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _service_account_kubeconfig(cluster: Any, namespace: str, sa: str, path: Path) -> None:
    from kubernetes import client

    core = client.CoreV1Api(cluster.api)
    token = core.create_namespaced_service_account_token(
        sa, namespace, {"spec": {"expirationSeconds": 3600}}).status.token
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    server = admin["clusters"][0]["cluster"]
    cluster_entry: dict[str, Any] = {"server": server["server"]}
    if "certificate-authority-data" in server:
        cluster_entry["certificate-authority-data"] = server["certificate-authority-data"]
    elif "certificate-authority" in server:
        ca = Path(server["certificate-authority"]).read_bytes()
        cluster_entry["certificate-authority-data"] = base64.b64encode(ca).decode()
    else:
        cluster_entry["insecure-skip-tls-verify"] = True
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "operator",
        "clusters": [{"name": "local", "cluster": cluster_entry}],
        "users": [{"name": sa, "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "local", "user": sa}}],
    }))


@pytest.fixture
def operator(
    cluster: Any, namespace: str, crd: Any, cluster_role: str, tmp_path: Path
) -> Iterator[Operator]:
    """The operator for ``namespace``, running under its own least-privilege ServiceAccount."""
    with operators(cluster, namespace, cluster_role, tmp_path) as ops:
        yield ops[0]


@contextmanager
def operators(
    cluster: Any, namespace: str, cluster_role: str, tmp_path: Path, count: int = 1,
    args: Sequence[str] = (), env: Mapping[str, str] | None = None,
) -> Iterator[list[Operator]]:
    """``count`` operators for ``namespace`` (with ``args`` and ``env``) under one ServiceAccount
    bound to ``cluster_role``; afterwards the jobs are deleted and the operators stopped."""
    from e2e_support import allowing
    from kubernetes import client

    core = client.CoreV1Api(cluster.api)
    rbac = client.RbacAuthorizationV1Api(cluster.api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "spotrun-operator"}})
    binding = f"spotrun-operator-{namespace}"
    rbac.create_cluster_role_binding({
        "metadata": {"name": binding, "labels": {"spotrun.dev/test": "e2e"}},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": cluster_role},
        "subjects": [{"kind": "ServiceAccount", "name": "spotrun-operator",
                      "namespace": namespace}],
    })
    kubeconfig = tmp_path / "operator.kubeconfig"
    _service_account_kubeconfig(cluster, namespace, "spotrun-operator", kubeconfig)
    # POD_ID: kopf's identity of the replica in a peering (a Deployment sets it to the pod name).
    ops = [Operator(namespace, kubeconfig, tmp_path / f"operator{i or ''}.log", args,
                    {**(env or {}), "POD_ID": f"operator-{i}"}) for i in range(count)]
    for op in ops:
        op.start()
    try:
        yield ops
    finally:
        _delete_jobs_and_wait(cluster, namespace)
        for op in ops:
            op.stop()
        _strip_finalizers(core, namespace)
        with allowing(404):
            rbac.delete_cluster_role_binding(binding)
        for op in ops:
            print(f"--- operator log ({op.log_path}) ---\n{op.log()[-6000:]}")


def _delete_jobs_and_wait(cluster: Any, namespace: str) -> None:
    from kubernetes import client

    custom = client.CustomObjectsApi(cluster.api)
    core = client.CoreV1Api(cluster.api)
    args = ("spotrun.dev", "v1alpha1", namespace, "resumabletrainingjobs")
    for item in custom.list_namespaced_custom_object(*args)["items"]:
        custom.delete_namespaced_custom_object(*args, item["metadata"]["name"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pods = core.list_namespaced_pod(namespace, label_selector="spotrun.dev/job").items
        jobs = custom.list_namespaced_custom_object(*args)["items"]
        if not pods and not jobs:
            return
        time.sleep(0.5)


def _strip_finalizers(core: Any, namespace: str) -> None:
    """Whatever the operator left (it was stopped), so the namespace can go."""
    for pod in core.list_namespaced_pod(namespace).items:
        if pod.metadata.finalizers:
            core.patch_namespaced_pod(pod.metadata.name, namespace,
                                      {"metadata": {"finalizers": None}})
