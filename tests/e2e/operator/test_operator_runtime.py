"""The operator at runtime: /metrics (jobs by phase, preemptions, reaction time), live
progress while an attempt runs, ttlSecondsAfterFinished, and checkpoint.deleteOnJobDeletion
against the real S3 server (true: the prefix is emptied by a cleanup pod; false: it stays).
Sidecar ports 18600-18699."""

from __future__ import annotations

import re
import socket
import urllib.request
from dataclasses import dataclass
from typing import Any

import pytest
from e2e_support import wait_for
from kubernetes import client
from operator_support import (
    ARGS,
    PLURAL,
    events_once,
    get_job,
    gone,
    rtj_body,
    running_on,
    s3_checkpoint,
    status_of,
    steps_in_s3,
    submit,
    trainer,
)
from prometheus_client.parser import text_string_to_metric_families
from test_operator_pvc import claim, committed_steps  # noqa: F401 (claim: a fixture)

pytestmark = pytest.mark.e2e

# A small real trainer: the spotrun Checkpointer, a checkpoint every EVERY steps with its loss.
TRAINER = """
import os, time, torch, spotrun
torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x, y = torch.randn(64, 4), torch.randn(64, 1)
every, steps = int(os.environ["EVERY"]), int(os.environ["STEPS"])
with spotrun.Checkpointer(model=model, optimizer=opt, interval_steps=every, keep=2) as ckpt:
    ckpt.restore()
    while ckpt.global_step < steps:
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad(); loss.backward(); opt.step()
        ckpt.step(metrics={"loss": loss.item()})
        time.sleep(float(os.environ["PAUSE"]))
"""


def rtj(
    name: str, bucket: str, endpoint: str, port: int, steps: int, pause: float = 0.0, **spec: Any
) -> dict[str, Any]:
    env = {"EVERY": "20", "STEPS": str(steps), "PAUSE": str(pause)}
    return rtj_body(name, trainer(["python", "-c", TRAINER], env),
                    s3_checkpoint(bucket, name, endpoint, port, **spec.pop("checkpoint", {})),
                    terminationGracePeriodSeconds=15, **spec)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Ports:
    metrics: int
    health: int


@pytest.fixture
def ports(monkeypatch: pytest.MonkeyPatch) -> Ports:
    """Requested before ``operator``: the operator process starts with the environment of
    --metrics-port and of kopf's --liveness."""
    chosen = Ports(_free_port(), _free_port())
    monkeypatch.setenv("SPOTRUN_METRICS_PORT", str(chosen.metrics))
    monkeypatch.setenv("SPOTRUN_LIVENESS", f"http://127.0.0.1:{chosen.health}/healthz")
    return chosen


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def scrape(port: int) -> dict[str, float]:
    """The operator's /metrics, read by prometheus_client's parser, as {series: value}: the
    series is the sample's name with its labels, as the exposition writes them."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


def test_metrics_and_live_progress_of_a_running_preempted_job(
    cluster, namespace, ports, operator, process_node, s3, s3_bucket
):
    core, custom = submit(cluster, namespace, s3, rtj(
        "live", s3_bucket, s3.endpoint_url, 18601, steps=100000, pause=0.05,
        spot={"backoffSeconds": 0}))
    node = wait_for(lambda: running_on(core, namespace, "live-1"), "live-1 to run", timeout=90)

    # While attempt 1 runs, status.progress follows the sidecar's newest durable checkpoint.
    seen: list[int] = []

    def advanced() -> bool:
        st = status_of(custom, namespace, "live")
        step = (st.get("lastCheckpoint") or {}).get("step")
        if st.get("phase") == "Running" and st.get("attempt") == 1 and step is not None:
            if not seen or step > seen[-1]:
                seen.append(step)
        return len(seen) >= 3

    wait_for(advanced, "status.lastCheckpoint.step to advance 3 times while Running",
             timeout=60, interval=0.5)
    st = status_of(custom, namespace, "live")
    assert re.fullmatch(r"step \d+ \(epoch 0\), loss [0-9.e+-]+", st["progress"]), st
    assert st["lastCheckpoint"]["uri"].startswith(f"s3://{s3_bucket}/live/checkpoints/step-")
    assert st["lastCheckpoint"]["time"]
    metrics = wait_for(lambda: (m := scrape(ports.metrics))
                       .get('spotrun_jobs{phase="Running"}') == 1.0 and m,
                       "the metrics to show one Running job")
    assert metrics["spotrun_preemptions_total"] == 0.0
    assert metrics["spotrun_reconcile_duration_seconds_count"] > 0
    assert metrics["process_resident_memory_bytes"] > 0
    assert wait_for(lambda: healthy(ports.health), "kopf's liveness endpoint to answer 200")

    process_node.preempt(node)
    process_node.add_node("spot")
    wait_for(lambda: running_on(core, namespace, "live-2"), "live-2 to run", timeout=90)
    metrics = wait_for(lambda: (m := scrape(ports.metrics))
                       .get("spotrun_preemptions_total") == 1.0
                       and m.get('spotrun_jobs{phase="Running"}') == 1.0 and m,
                       "the metrics to count the preemption and the job Running again")
    assert metrics["spotrun_reaction_seconds_count"] == 1.0
    assert metrics["spotrun_failures_total"] == 0.0
    assert metrics['spotrun_jobs{phase="Restarting"}'] == 0.0
    assert status_of(custom, namespace, "live")["preemptions"] == 1


def test_ttl_deletes_a_finished_job(cluster, namespace, operator, s3, s3_bucket):
    core, custom = submit(cluster, namespace, s3, rtj(
        "brief", s3_bucket, s3.endpoint_url, 18602, steps=40, ttlSecondsAfterFinished=3))
    done = wait_for(lambda: status_of(custom, namespace, "brief").get("phase") == "Succeeded",
                    "the job to succeed", timeout=90)
    assert done
    wait_for(lambda: gone(custom, namespace, "brief"), "the finished job to delete itself",
             timeout=30)
    wait_for(lambda: not core.list_namespaced_pod(
        namespace, label_selector="spotrun.dev/job=brief").items, "its pods to go", timeout=30)
    assert steps_in_s3(s3, s3_bucket, "brief")[-1] == 40  # the checkpoints stay (default)


def test_delete_on_job_deletion_removes_the_prefix_and_the_default_keeps_it(
    cluster, namespace, operator, s3, s3_bucket
):
    core, custom = submit(
        cluster, namespace, s3,
        rtj("purged", s3_bucket, s3.endpoint_url, 18603, steps=40,
            checkpoint={"deleteOnJobDeletion": True}),
        rtj("kept", s3_bucket, s3.endpoint_url, 18604, steps=40))
    for name in ("purged", "kept"):
        wait_for(lambda n=name: status_of(custom, namespace, n).get("phase") == "Succeeded",
                 f"{name} to succeed", timeout=90)
        assert steps_in_s3(s3, s3_bucket, name)[-1] == 40
    kept = steps_in_s3(s3, s3_bucket, "kept")
    finalizers = get_job(custom, namespace, "purged")["metadata"].get("finalizers") or []
    assert "spotrun.dev/checkpoint-cleanup" in finalizers
    assert "spotrun.dev/checkpoint-cleanup" not in (
        get_job(custom, namespace, "kept")["metadata"].get("finalizers") or [])
    # Only the job's checkpoint layout goes: other data under the prefix and a sibling stay.
    s3.client().put_object(Bucket=s3_bucket, Key="purged/notes.txt", Body=b"x")
    s3.client().put_object(Bucket=s3_bucket, Key="purged-other/keep.txt", Body=b"x")

    for name in ("purged", "kept"):
        custom.delete_namespaced_custom_object(*ARGS, namespace, PLURAL, name)
    wait_for(lambda: gone(custom, namespace, "purged") and gone(custom, namespace, "kept"),
             "both jobs to go", timeout=90)
    keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket=s3_bucket).get("Contents", [])]
    assert [k for k in keys if k.startswith("purged/")] == ["purged/notes.txt"], keys
    assert "purged-other/keep.txt" in keys
    assert steps_in_s3(s3, s3_bucket, "kept") == kept
    reasons = [r for r, _ in events_once(core, namespace, "purged", {"CheckpointsDeleted": 1})]
    assert "CheckpointsDeleted" in reasons
    assert not core.list_namespaced_pod(
        namespace, label_selector="spotrun.dev/cleanup-of").items  # the cleanup pod is gone


def test_delete_on_job_deletion_empties_the_pvc_path(cluster, namespace, operator, claim):  # noqa: F811
    custom = client.CustomObjectsApi(cluster.api)
    body = rtj("onpvc", "unused", "http://unused", 18605, steps=40,
               checkpoint={"deleteOnJobDeletion": True})
    body["spec"]["checkpoint"]["storage"] = {"pvc": {"claimName": "checkpoints"}}
    custom.create_namespaced_custom_object(*ARGS, namespace, PLURAL, body)
    wait_for(lambda: status_of(custom, namespace, "onpvc").get("phase") == "Succeeded",
             "the job to succeed", timeout=90)
    assert committed_steps(claim / "onpvc")[-1] == 40  # the job's own sub-path of the claim
    custom.delete_namespaced_custom_object(*ARGS, namespace, PLURAL, "onpvc")
    wait_for(lambda: gone(custom, namespace, "onpvc"), "the job to go", timeout=90)
    left = claim / "onpvc" / "checkpoints"  # purge deletes the job's checkpoint layout only
    assert committed_steps(claim / "onpvc") == [] and not list(left.glob("step-*"))
