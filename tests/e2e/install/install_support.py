"""Helpers of the install tests: helm/kubectl runs, the example job made to fit the test's
S3 and ports, waiting for a job to finish and cleaning jobs up before the operator goes."""

from __future__ import annotations

import copy
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from e2e_support import IMAGE, wait_for
from kubernetes import client

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "spotrun"
MANIFESTS = REPO / "manifests"
EXAMPLES = MANIFESTS / "examples"
RTJ = ("spotrun.dev", "v1alpha1")
PLURAL = "resumabletrainingjobs"


@dataclass(frozen=True)
class Tools:
    helm_bin: Path
    kubectl_bin: Path
    kubeconfig: Path

    def _run(self, binary: Path, args: tuple[str, ...], stdin: str | None) -> str:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        done = subprocess.run([str(binary), *args], input=stdin, env=env, text=True,
                              capture_output=True, timeout=300)
        if done.returncode != 0:
            raise AssertionError(f"{binary.name} {' '.join(args)} failed ({done.returncode}):\n"
                                 f"{done.stderr}{done.stdout[-4000:]}")
        return done.stdout

    def helm(self, *args: str) -> str:
        return self._run(self.helm_bin, args, None)

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        return self._run(self.kubectl_bin, args, stdin)


def docs_of(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def load(path: Path) -> list[dict[str, Any]]:
    return docs_of(path.read_text())


def example_job(name: str, bucket: str, endpoint: str, *, epochs: int, port: int,
                path: Path = EXAMPLES / "job.yaml") -> dict[str, Any]:
    """An example job as a user adapts it: its name, S3 bucket and endpoint, a short run,
    a sidecar port of its own (the process node shares the host network), the test image."""
    job = copy.deepcopy(load(path)[0])
    job["metadata"]["name"] = name
    spec = job["spec"]
    trainer = spec["template"]["spec"]["containers"][0]
    trainer["image"] = IMAGE if "SPOTRUN_E2E_IMAGE" in os.environ else trainer["image"]
    command = trainer["command"]
    command[command.index("--epochs") + 1] = str(epochs)
    storage = spec["checkpoint"]["storage"]
    storage["uri"] = f"s3://{bucket}/{name}"
    storage["endpoint"] = endpoint
    spec["checkpoint"]["sidecarPort"] = port
    return job


def s3_secret(access_key_id: str, secret_access_key: str) -> dict[str, Any]:
    """manifests/examples/s3-secret.yaml with the test server's keys filled in."""
    secret = load(EXAMPLES / "s3-secret.yaml")[0]
    secret["stringData"] = {"AWS_ACCESS_KEY_ID": access_key_id,
                            "AWS_SECRET_ACCESS_KEY": secret_access_key}
    return secret


def run_example_job(api: Any, namespace: str, s3: Any, bucket: str, port: int) -> dict[str, Any]:
    """The example Secret and job (``digits``, one epoch, its sidecar on ``port``) created in
    ``namespace`` for the test's S3 server, as a user applies them; the job once it finished."""
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    core.create_namespaced_secret(namespace, s3_secret(s3.access_key_id, s3.secret_access_key))
    custom.create_namespaced_custom_object(*RTJ, namespace, PLURAL, example_job(
        "digits", bucket, s3.endpoint_url, epochs=1, port=port))
    return wait_for(lambda: finished(custom, namespace, "digits"), "the job to finish",
                    timeout=300, interval=1)


def finished(custom: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any] | None:
    job = custom.get_namespaced_custom_object(*RTJ, namespace, PLURAL, name)
    phase = job.get("status", {}).get("phase")
    return dict(job) if phase in ("Succeeded", "Failed") else None


def delete_jobs_and_wait(api: Any, namespace: str) -> None:
    """Delete the namespace's jobs while the operator still runs (it releases their pods'
    finalizers), and wait until jobs and pods are gone."""
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    for item in custom.list_namespaced_custom_object(*RTJ, namespace, PLURAL)["items"]:
        custom.delete_namespaced_custom_object(*RTJ, namespace, PLURAL, item["metadata"]["name"])
    wait_for(lambda: not custom.list_namespaced_custom_object(*RTJ, namespace, PLURAL)["items"]
             and not core.list_namespaced_pod(namespace, label_selector="spotrun.dev/job").items,
             f"the jobs of {namespace} and their pods to be gone", timeout=120)


def operator_pod(core: client.CoreV1Api, namespace: str, release: str) -> Any | None:
    """The operator's pod once it runs (Running and ready)."""
    pods = core.list_namespaced_pod(
        namespace, label_selector=f"app.kubernetes.io/instance={release},"
                                  "app.kubernetes.io/component=operator").items
    for p in pods:
        ready = [c for c in p.status.conditions or [] if c.type == "Ready"]
        if p.status.phase == "Running" and ready and ready[0].status == "True":
            return p
    return None


def render(helm_bin: Path, *sets: str, namespace: str = "spotrun-system",
           release: str = "spotrun") -> list[dict[str, Any]]:
    """``helm template`` of the chart with ``--set`` values."""
    args = [a for s in sets for a in ("--set", s)]
    out = subprocess.run([str(helm_bin), "template", release, str(CHART), "-n", namespace, *args],
                         check=True, capture_output=True, text=True).stdout
    return docs_of(out)


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def disown_crd(api: Any, name: str = "resumabletrainingjobs.spotrun.dev") -> None:
    """Drop what an uninstalled release left on the CRD it kept: the CRD is then as
    `kubectl apply -f manifests/crd.yaml` leaves it, owned by no release (a later `helm
    install` adopts it with --take-ownership, as over any existing CRD). The CRD itself
    stays: other tests' session fixtures rely on it."""
    helm_meta: dict[str, Any] = {"metadata": {
        "annotations": {"meta.helm.sh/release-name": None, "meta.helm.sh/release-namespace": None,
                        "helm.sh/resource-policy": None},
        "labels": {"app.kubernetes.io/managed-by": None}}}
    client.ApiextensionsV1Api(api).patch_custom_resource_definition(name, helm_meta)
