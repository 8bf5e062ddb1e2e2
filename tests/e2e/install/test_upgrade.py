"""`helm upgrade` from the previous chart to this one while a job trains: the CRD is upgraded
in place (same object, the new schema served, the running job kept and defaulted by it), the
operator pod is replaced, the job's pod is not touched, and the job finishes Succeeded in its
first attempt.

The previous chart ("version N-1") is fixtures/spotrun-0.1.0-7b599f5.tgz: charts/spotrun as
it was at commit 7b599f5 (before spec.spot.avoidReclaimedSeconds and status.placement), made
by `git archive 7b599f5 charts/spotrun | tar -x -C DIR && helm package DIR/charts/spotrun`.
A packaged chart, not `git show`, so that the test runs in a shallow clone too (CI checks
out one commit), and it is what a published release is: the package `helm push` uploads.
Nothing has been released yet, so both charts say 0.1.0; the upgrade also sets logLevel,
which replaces the operator pod as a new image tag does. The process node runs no images:
both operators run this tree's code, so this tests the chart and CRD upgrade and an operator
restart under a running job, not an older operator's code handing over to this one.
Ports of this test: operator 18961/18962, sidecar 18960."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from e2e_support import wait_for
from install_support import (
    CHART,
    PLURAL,
    RTJ,
    Tools,
    delete_jobs_and_wait,
    disown_crd,
    example_job,
    finished,
    operator_pod,
    s3_secret,
)
from kubernetes import client

pytestmark = pytest.mark.e2e

PREVIOUS = Path(__file__).resolve().parent / "fixtures" / "spotrun-0.1.0-7b599f5.tgz"
RELEASE = "spotrun-upgrade"
CRD = "resumabletrainingjobs.spotrun.dev"
NEW_FIELD = "avoidReclaimedSeconds"  # spec.spot's, added after the previous chart (default 1800)
GATE = "gate"  # the ConfigMap whose data.open the trainer waits for (its pod may read it)

# Trains until the test opens the gate (read every 20 steps): still training when the upgrade
# is done however fast or slow the machine, then ends with a final checkpoint.
TRAINER = """
import time, torch, spotrun
from kubernetes import client, config
config.load_incluster_config()
core = client.CoreV1Api()
namespace = open("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read()
torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x, y = torch.randn(64, 4), torch.randn(64, 1)
with spotrun.Checkpointer(model=model, optimizer=opt, interval_steps=20) as ckpt:
    step = ckpt.restore()
    while step % 20 or (core.read_namespaced_config_map("gate", namespace).data or {}).get(
            "open") != "yes":
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad(); loss.backward(); opt.step()
        ckpt.step()
        step += 1
        time.sleep(0.05)
print(f"trainer: the gate is open, {step} steps done", flush=True)
"""


def _gate(api: Any, namespace: str) -> None:
    """The closed gate, and leave for the namespace's default ServiceAccount to read it."""
    client.CoreV1Api(api).create_namespaced_config_map(
        namespace, {"metadata": {"name": GATE}, "data": {"open": "no"}})
    rbac = client.RbacAuthorizationV1Api(api)
    rbac.create_namespaced_role(namespace, {
        "metadata": {"name": "read-gate"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [GATE],
                   "verbs": ["get"]}]})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "read-gate"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-gate"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}]})


def _spot_schema(api: Any) -> dict[str, Any]:
    """spec.spot's properties as the API server serves the CRD, and the CRD's uid."""
    crd = client.ApiextensionsV1Api(api).read_custom_resource_definition(CRD)
    [version] = [v for v in crd.spec.versions if v.name == RTJ[1]]
    spot = version.schema.open_apiv3_schema.properties["spec"].properties["spot"]
    return {"uid": crd.metadata.uid, "fields": set(spot.properties)}


def _running_pod(core: client.CoreV1Api, namespace: str) -> Any | None:
    pod = core.read_namespaced_pod("upgrade-1", namespace)
    running = pod.status.phase == "Running" and not pod.metadata.deletion_timestamp
    return pod if running else None


def _checkpointed(custom: client.CustomObjectsApi, namespace: str) -> dict[str, Any] | None:
    job = custom.get_namespaced_custom_object(*RTJ, namespace, PLURAL, "upgrade")
    status = job.get("status") or {}
    return job if status.get("phase") == "Running" and status.get("lastCheckpoint") else None


def test_helm_upgrade_keeps_a_running_job_running_and_upgrades_the_crd_in_place(
    cluster: Any, tools: Tools, namespace: str, s3: Any, s3_bucket: str
) -> None:
    core, custom = cluster.core(), client.CustomObjectsApi(cluster.api)
    sets = ["ports.health=18961", "ports.metrics=18962", f"watchNamespaces={{{namespace}}}"]
    flags = [a for s in sets for a in ("--set", s)]
    # --take-ownership: the CRD may be there (other tests apply the current one).
    tools.helm("install", RELEASE, str(PREVIOUS), "-n", namespace, "--take-ownership",
               "--wait", "--timeout", "180s", *flags)
    try:
        before = _spot_schema(cluster.api)
        assert NEW_FIELD not in before["fields"], "the previous chart's CRD is not the old one"
        old_operator = wait_for(lambda: operator_pod(core, namespace, RELEASE),
                                "the previous chart's operator to run", timeout=120)

        core.create_namespaced_secret(namespace, s3_secret(s3.access_key_id,
                                                           s3.secret_access_key))
        _gate(cluster.api, namespace)
        job = example_job("upgrade", s3_bucket, s3.endpoint_url, epochs=1, port=18960)
        job["spec"]["template"]["spec"]["containers"][0]["command"] = [
            "python", "-c", TRAINER]
        custom.create_namespaced_custom_object(*RTJ, namespace, PLURAL, job)
        created = wait_for(lambda: _checkpointed(custom, namespace),
                           "the job to run and report a checkpoint", timeout=180, interval=1)
        trainer = wait_for(lambda: _running_pod(core, namespace), "upgrade-1 to run")

        tools.helm("upgrade", RELEASE, str(CHART), "-n", namespace, "--wait", "--timeout",
                   "180s", *flags, "--set", "logLevel=DEBUG")

        after = _spot_schema(cluster.api)
        assert after["uid"] == before["uid"], "the CRD was deleted and created again"
        assert NEW_FIELD in after["fields"], "helm upgrade left the previous CRD in place"
        new_operator = wait_for(
            lambda: (p := operator_pod(core, namespace, RELEASE)) is not None
            and p.metadata.uid != old_operator.metadata.uid and p, "the new operator to run")
        env = {e.name: e.value for e in new_operator.spec.containers[0].env}
        assert env["SPOTRUN_LOG_LEVEL"] == "DEBUG"  # this chart's pod, not the old one

        # The job outlived the upgrade in its first pod, and the new schema serves it.
        still = custom.get_namespaced_custom_object(*RTJ, namespace, PLURAL, "upgrade")
        assert still["metadata"]["uid"] == created["metadata"]["uid"]
        assert still["status"]["phase"] == "Running", still["status"]
        assert still["spec"]["spot"][NEW_FIELD] == 1800  # the new CRD's default, on read
        pod = core.read_namespaced_pod("upgrade-1", namespace)
        assert pod.metadata.uid == trainer.metadata.uid
        assert [c.restart_count for c in pod.status.container_statuses] == [0] * len(
            pod.status.container_statuses)

        core.patch_namespaced_config_map(GATE, namespace, {"data": {"open": "yes"}})
        done = wait_for(lambda: finished(custom, namespace, "upgrade"), "the job to finish",
                        timeout=240, interval=1)
        status = done["status"]
        assert status["phase"] == "Succeeded", status
        assert (status["attempt"], status["preemptions"], status["failures"]) == (1, 0, 0)
        assert status["lastCheckpoint"]["finalSaved"] is True, status
        assert status["lastCheckpoint"]["step"] % 20 == 0 and status["lastCheckpoint"]["step"] >= (
            created["status"]["lastCheckpoint"]["step"]), status
        log = core.read_namespaced_pod_log(new_operator.metadata.name, namespace,
                                           container="operator")
        assert f"{namespace}/upgrade: Completed" in log  # the new operator saw it to its end
        assert f"created pod {namespace}/upgrade-" not in log  # and started no pod of it
    finally:
        delete_jobs_and_wait(cluster.api, namespace)
        tools.helm("uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", "120s")
        disown_crd(cluster.api)
