"""Jobs on the kind cluster, shared by the kind tier's job tests: a bare ResumableTrainingJob
(`rtj`), the example digits job's manifests as `kubectl apply -f` takes them, what a test reads
of it (status, pods, Events, the trainer's log, the steps committed in S3), and `started`, which
submits it and returns once it runs on the spot worker with a periodic checkpoint in S3."""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
import torch
import yaml

from spotrun import layout, reader
from spotrun.s3store import S3Store
from tests.kind import chart
from tests.kind.kindenv import KIND_DIR, KUBECTL, NAME, REPO, KindCluster, run, wait_for

EXAMPLES = REPO / "manifests" / "examples"
STEPS_PER_EPOCH = 45
SPOT_WORKER, ON_DEMAND_WORKER = f"{NAME}-worker2", f"{NAME}-worker"
# spec.spot.nodeSelectorTerms naming both workers: for a job that needs two nodes (a gang) or a
# choice of zones, the on-demand worker counts as spot capacity too (the field's purpose: which
# nodes this job calls spot)
BOTH_WORKERS = [
    {
        "matchExpressions": [
            {
                "key": "kubernetes.io/hostname",
                "operator": "In",
                "values": [ON_DEMAND_WORKER, SPOT_WORKER],
            }
        ]
    }
]
RESTORED = "spotrun: restored step"  # the library's log line: "... restored step N (epoch E) ..."


def rtj(
    name: str, container: dict[str, Any], s3: dict[str, str], backoff_limit: int, grace: int
) -> dict[str, Any]:
    """A spot job of one trainer CONTAINER (name added) checkpointing to this S3 server under a
    prefix of its own, its keys from the Secret `s3-credentials` (chart.s3_secret)."""
    return {
        "apiVersion": "spotrun.dev/v1alpha1",
        "kind": "ResumableTrainingJob",
        "metadata": {"name": name},
        "spec": {
            "template": {"spec": {"containers": [{"name": "trainer", **container}]}},
            "checkpoint": {
                "storage": {
                    "uri": f"s3://{s3['SPOTRUN_TEST_BUCKET']}/{name}-{secrets.token_hex(4)}",
                    "endpoint": s3["SPOTRUN_POD_S3_ENDPOINT"],
                    "secretRef": {"name": "s3-credentials"},
                }
            },
            "spot": {"enabled": True},
            "backoffLimit": backoff_limit,
            "terminationGracePeriodSeconds": grace,
        },
    }


def example_job(trainer: str, epochs: int, save_at_once: bool = True) -> dict[str, Any]:
    """job.yaml with the image and epochs substituted. SAVE_AT_ONCE sets SPOTRUN_SAVE_AT_ONCE:
    1 saves at the SIGTERM (a notice lands at a step the test can predict), 0 trains on through
    the notice (README, "Using the whole notice")."""
    job: dict[str, Any] = yaml.safe_load((EXAMPLES / "job.yaml").read_text())
    (container,) = job["spec"]["template"]["spec"]["containers"]
    container["image"] = trainer
    assert container["command"][-2:] == ["--epochs", "20"], container["command"]
    container["command"][-1] = str(epochs)
    container["env"] = [{"name": "SPOTRUN_SAVE_AT_ONCE", "value": "1" if save_at_once else "0"}]
    return job


def example_manifests(
    trainer: str,
    s3: dict[str, str],
    prefix: str,
    epochs: int,
    spot: dict[str, Any] | None = None,
    save_at_once: bool = True,
    edit: Callable[[dict[str, Any]], None] | None = None,
) -> str:
    """s3-secret.yaml + job.yaml with only the image, endpoint, bucket, credentials and epochs
    substituted (and SPOT merged into spec.spot), as one multi-document YAML for `kubectl apply
    -f`. SAVE_AT_ONCE as example_job's. EDIT, given, changes the job (a dict) after these
    substitutions."""
    secret = chart.s3_secret(s3)
    job = example_job(trainer, epochs, save_at_once)
    storage = job["spec"]["checkpoint"]["storage"]
    storage["uri"] = f"s3://{s3['SPOTRUN_TEST_BUCKET']}/{prefix}"
    storage["endpoint"] = s3["SPOTRUN_POD_S3_ENDPOINT"]
    job["spec"]["spot"].update(spot or {})
    if edit is not None:
        edit(job)
    return yaml.safe_dump_all([secret, job])


def multinode_manifests(
    trainer: str,
    s3: dict[str, str],
    prefix: str,
    args: list[str],
    edit: Callable[[dict[str, Any]], None] | None = None,
) -> str:
    """s3-secret.yaml + multinode.yaml (2 pods x 2 torchrun workers) with these substituted: the
    trainer image, the endpoint and bucket (and the Secret's keys), the training ARGS instead of
    `--epochs 5`, SPOTRUN_SAVE_AT_ONCE=1 (save on the SIGTERM: the preempted step is the one every
    rank stops at), a CPU request of 250m instead of 2 (a kind node offers the host's two cores,
    part of them requested already) and BOTH_WORKERS as spot capacity. EDIT, given, changes the
    job (a dict) after these substitutions."""
    job = yaml.safe_load((EXAMPLES / "multinode.yaml").read_text())
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["torchrun", "examples/ddp/train.py", "--epochs", "5"]
    container["image"] = trainer
    container["command"] = [*container["command"][:2], *args]
    container["env"] = [{"name": "SPOTRUN_SAVE_AT_ONCE", "value": "1"}]
    container["resources"]["requests"]["cpu"] = "250m"
    storage = job["spec"]["checkpoint"]["storage"]
    storage["uri"] = f"s3://{s3['SPOTRUN_TEST_BUCKET']}/{prefix}"
    storage["endpoint"] = s3["SPOTRUN_POD_S3_ENDPOINT"]
    job["spec"]["spot"]["nodeSelectorTerms"] = BOTH_WORKERS
    if edit is not None:
        edit(job)
    return yaml.safe_dump_all([chart.s3_secret(s3), job])


def s3_client(s3: dict[str, str]) -> Any:
    """A boto3 S3 client of this S3 server through the host's endpoint."""
    return boto3.client(
        "s3",
        endpoint_url=s3["AWS_ENDPOINT_URL_S3"],
        aws_access_key_id=s3["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=s3["AWS_SECRET_ACCESS_KEY"],
        region_name=s3["AWS_DEFAULT_REGION"],
    )


def committed_steps(s3: dict[str, str], prefix: str) -> list[int]:
    """Steps whose MANIFEST is in the bucket (the host's endpoint)."""
    listed = s3_client(s3).list_objects_v2(
        Bucket=s3["SPOTRUN_TEST_BUCKET"], Prefix=f"{prefix}/{layout.CHECKPOINTS}/"
    )
    steps = []
    for obj in listed.get("Contents", []):
        parts = obj["Key"].split("/")
        if parts[-1] == layout.MANIFEST and (step := layout.parse_step_dirname(parts[-2])):
            steps.append(step)
    return sorted(steps)


def hack(cluster: KindCluster, script: str, *args: str) -> str:
    done = run(KIND_DIR / script, *args, env=cluster.env, timeout=900)
    assert done.returncode == 0, f"hack/kind/{script} {' '.join(args)}:\n{done.stderr}"
    return done.stderr


class Job:
    """A ResumableTrainingJob in its own namespace (the example's `digits` unless named), and
    what a test reads of it."""

    def __init__(
        self, cluster: KindCluster, s3: dict[str, str], namespace: str, name: str = "digits"
    ) -> None:
        self.cluster, self.s3, self.name = cluster, s3, name
        self.namespace, self.prefix = namespace, f"{name}-{secrets.token_hex(4)}"

    def k(self, *args: str) -> str:
        return self.cluster.kubectl("-n", self.namespace, *args)

    def job(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(
            self.k("get", "resumabletrainingjob", self.name, "-o", "json")
        )
        return found

    def status(self) -> dict[str, Any]:
        return dict(self.job().get("status") or {})

    def last_step(self) -> int | None:
        """status.lastCheckpoint.step: what the operator knows was saved."""
        ref = self.status().get("lastCheckpoint") or {}
        return ref.get("step") if isinstance(ref.get("step"), int) else None

    def pod(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.k("get", "pod", name, "-o", "json"))
        return found

    def avoided(self, pod: str) -> list[tuple[str, str]]:
        """(key, value) of each NotIn in POD's preferred node terms: the places the operator's
        retry elsewhere keeps it away from (docs/retry-elsewhere.md)."""
        affinity = self.pod(pod)["spec"]["affinity"]["nodeAffinity"]
        return [
            (e["key"], value)
            for term in affinity.get("preferredDuringSchedulingIgnoredDuringExecution", [])
            for e in term["preference"]["matchExpressions"]
            if e["operator"] == "NotIn"
            for value in e["values"]
        ]

    def running_node(self, pod: str) -> str | None:
        for p in json.loads(self.k("get", "pods", "-o", "json"))["items"]:
            if p["metadata"]["name"] == pod and p["status"].get("phase") == "Running":
                return str(p["spec"]["nodeName"])
        return None

    def evict(self, pod: str) -> None:
        """POD evicted through the Eviction API, as a drain, Karpenter or a node termination
        handler does it (the API server marks it DisruptionTarget; its kubelet sends SIGTERM)."""
        eviction = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": pod, "namespace": self.namespace},
        }
        path = f"/api/v1/namespaces/{self.namespace}/pods/{pod}/eviction"
        self.cluster.kubectl("create", "--raw", path, "-f", "-", stdin=json.dumps(eviction))

    def trainer_log(self, pod: str) -> str:
        """The pod's trainer log; empty while there is none yet."""
        env = self.cluster.env
        done = run(KUBECTL, "-n", self.namespace, "logs", pod, "-c", "trainer", env=env)
        return done.stdout if done.returncode == 0 else ""

    def log_with(self, pod: str, text: str) -> str:
        """The trainer log once it holds TEXT; empty before."""
        log = self.trainer_log(pod)
        return log if text in log else ""

    @contextmanager
    def followed(self, pod: str, container: str, path: Path) -> Iterator[Path]:
        """POD's CONTAINER log, followed into PATH (`kubectl logs -f`) until the container ends:
        once a node is gone, the kubelet that holds its pods' logs is gone with it."""
        with path.open("wb") as out:
            follow = subprocess.Popen(
                [str(KUBECTL), "-n", self.namespace, "logs", "-f", pod, "-c", container],
                env=self.cluster.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            try:
                yield path
            finally:
                follow.terminate()
                follow.wait(timeout=30)

    def restored_in(self, pod: str, step: int) -> str:
        """Waits until POD runs and its trainer has restored, asserts the step it restored was
        STEP, and returns the node it runs on."""
        node = wait_for(f"{pod} to run", lambda: self.running_node(pod), 900)
        log = wait_for(f"{pod} to restore", lambda: self.log_with(pod, RESTORED), 300)
        assert f"{RESTORED} {step} " in log, log[-2000:]
        return node

    def assert_final_equals(
        self, step: int, want: dict[str, torch.Tensor], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The checkpoint of STEP the job committed in S3 holds WANT's tensors bit for bit:
        the same names, dtypes and values."""
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
            monkeypatch.setenv(key, self.s3[key])
        uri = f"s3://{self.s3['SPOTRUN_TEST_BUCKET']}/{self.prefix}"
        remote = S3Store.from_uri(uri, self.s3["AWS_ENDPOINT_URL_S3"])
        got = reader.tensors_of(reader.load_verified(remote, layout.step_dirname(step)))
        assert sorted(got) == sorted(want)
        differ = [k for k in want if not (got[k].dtype == want[k].dtype and got[k].equal(want[k]))]
        assert differ == [], f"tensors not bit-identical to the uninterrupted run: {differ}"

    def events(self, reason: str) -> list[str]:
        selector = f"involvedObject.name={self.name}"
        listed = json.loads(self.k("get", "events", "--field-selector", selector, "-o", "json"))[
            "items"
        ]
        return [e["message"] for e in listed if e["reason"] == reason]

    def finished(self) -> dict[str, Any]:
        return wait_for(
            "the job to finish",
            lambda: st if (st := self.status()).get("phase") in ("Succeeded", "Failed") else None,
            900,
        )


# conftest.py's start_digits fixture:
# start_digits(namespace, epochs, spot=None, save_at_once=True, edit=None) -> Job
StartDigits = Callable[..., Job]


@contextmanager
def started(
    cluster: KindCluster,
    s3: dict[str, str],
    trainer: str,
    namespace: str,
    workdir: Path,
    epochs: int,
    spot: dict[str, Any] | None = None,
    save_at_once: bool = True,
    edit: Callable[[dict[str, Any]], None] | None = None,
) -> Iterator[Job]:
    """The example submitted with kubectl apply -f in its own NAMESPACE; yields once digits-1
    runs on the spot worker and a periodic checkpoint is in S3. The namespace is deleted after
    (while the operator runs: its finalizer on the job must be lifted by it)."""
    d = Job(cluster, s3, namespace)
    manifests = workdir / f"{namespace}.yaml"
    manifests.write_text(example_manifests(trainer, s3, d.prefix, epochs, spot, save_at_once, edit))
    cluster.kubectl("create", "namespace", namespace)
    try:
        d.k("apply", "-f", str(manifests))
        node = wait_for("digits-1 to run", lambda: d.running_node("digits-1"), 900)
        assert node == SPOT_WORKER, "the spot job runs on the spot worker"
        wait_for("a periodic checkpoint in S3", lambda: committed_steps(s3, d.prefix), 300)
        yield d
    finally:
        cluster.delete_namespace(namespace)


@contextmanager
def gang_started(
    cluster: KindCluster,
    s3: dict[str, str],
    namespace: str,
    workdir: Path,
    manifests: Callable[[str], str],
) -> Iterator[Job]:
    """The multinode example's gang `digits-ddp`, MANIFESTS(prefix) (its YAML for the job's S3
    prefix) applied in its own NAMESPACE; yields once both pods of attempt 1 run, one per worker,
    and a checkpoint is committed in S3. The namespace is deleted after."""
    job = Job(cluster, s3, namespace, name="digits-ddp")
    path = workdir / f"{namespace}.yaml"
    path.write_text(manifests(job.prefix))
    cluster.kubectl("create", "namespace", namespace)
    try:
        job.k("apply", "-f", str(path))
        placed = {
            wait_for(f"{pod} to run", lambda p=pod: job.running_node(p), 900)  # type: ignore[misc]
            for pod in ("digits-ddp-1-0", "digits-ddp-1-1")
        }
        assert placed == {ON_DEMAND_WORKER, SPOT_WORKER}, "one pod of the gang per node"
        wait_for("a committed checkpoint", lambda: committed_steps(s3, job.prefix), 600)
        yield job
    finally:
        cluster.delete_namespace(namespace)
