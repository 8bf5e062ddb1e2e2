"""Multi-node DDP jobs end to end on the real control plane, process nodes and the real S3
server: examples/ddp (the digits CNN under DDP, gloo) as a gang of 2 pods x 2 processes under
torchrun, each pod with its sidecar.

- manifests/examples/multinode.yaml runs as written (only the bucket, endpoint and sidecar port
  pointed at this cluster, as the demo does with job.yaml) and succeeds;
- one node preempted mid-training: all 4 ranks stop at the same step and save it, attempt 2 (2
  pods, world size 4) restores that step (0 steps lost), and the final checkpoint in S3 equals,
  tensor for tensor, that of the same script run uninterrupted with torchrun on 2 x 2 local
  processes;
- a rank SIGKILLed (no save): a failure (charged to backoffLimit); the whole gang restarts from
  the newest checkpoint committed in S3 and ends bit-identical too.

A checkpoint missing one rank's part is never restored: tests/integration/test_gang_resume.py
(on local dirs) and tests/integration/test_gang_sidecar.py (the sidecars against the real S3
server: a part that never arrives is never committed, restore falls back past a manifest naming
a missing rank file).

Each rank writes the sample ids of every step to ``--trace`` (a host folder: process-node pods
are host processes), named by rank and pid: what tells which step each rank trained last, what
each attempt restored, and which process to SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from e2e_support import wait_for
from operator_support import (
    events_once,
    finished,
    rtj_body,
    running_on,
    s3_checkpoint,
    steps_in_s3,
    submit,
    trainer,
)

from localcluster import demo
from spotrun import layout, reader
from spotrun.localstore import LocalStore
from spotrun.s3store import S3Store
from tests.integration.test_gang_resume import launch, restore_like_the_sidecar

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[3] / "manifests" / "examples" / "multinode.yaml"
EPOCHS = 3
STEPS = EPOCHS * 23  # 1437 training samples in global batches of 4 ranks x 16
ARGS = ["--epochs", str(EPOCHS), "--save-every", "10"]
Trace = dict[str, list[dict[str, Any]]]


def ddp_job(name: str, bucket: str, endpoint: str, port: int, trace: Path,
            **spec: Any) -> dict[str, Any]:
    """examples/ddp on 2 nodes x 2 processes; a short step delay keeps it preemptible."""
    command = ["torchrun", "examples/ddp/train.py", *ARGS, "--step-delay", "0.1",
               "--trace", str(trace)]
    return rtj_body(name, trainer(command), s3_checkpoint(bucket, name, endpoint, port),
                    nodes={"max": 2}, procsPerNode=2, terminationGracePeriodSeconds=20,
                    **spec)


def read_trace(trace: Path) -> Trace:
    """Each rank process's lines (file name: rank-R-world-W-pid-P.jsonl)."""
    out: Trace = {}
    for f in sorted(trace.glob("rank-*.jsonl")):
        lines = [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
        out[f.name] = lines
    return out


def attempt_of(trace: Trace, restored: int) -> Trace:
    """The rank processes that restored ``restored`` (0: the first attempt)."""
    return {f: x for f, x in trace.items() if x and x[0].get("restored") == restored}


def steps(lines: list[dict[str, Any]]) -> list[int]:
    return [int(x["step"]) for x in lines if "step" in x]


def furthest(trace: Path) -> int:
    return max((s for lines in read_trace(trace).values() for s in steps(lines)), default=0)


def pid_of(trace: Trace, rank: int) -> int:
    names = [f for f in trace if f.startswith(f"rank-{rank}-")]
    assert len(names) == 1, names
    return int(names[0].removesuffix(".jsonl").split("-")[5])


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], dict[str, Any]]]:
    """The same training uninterrupted: 2 torchruns x 2 processes on 127.0.0.1, no operator
    (started once, in the background); call it for its final checkpoint's tensors."""
    base = tmp_path_factory.mktemp("ddp-reference")
    gang = launch(base, 2, 2, base / "trace", *ARGS)
    tensors: dict[str, Any] = {}

    def final() -> dict[str, Any]:
        if not tensors:
            assert gang.wait() == [0, 0], gang.text()[-4000:]
            restore_like_the_sidecar(base, 2)  # node 1's rank files beside node 0's manifest
            loaded = reader.load_verified(LocalStore(str(base / "node-0")),
                                          layout.step_dirname(STEPS))
            tensors.update(reader.tensors_of(loaded))
        return tensors

    yield final
    for p in gang.nodes:
        if p.poll() is None:
            p.kill()
            p.wait()


def assert_final_equals_reference(s3: Any, bucket: str, name: str, want: dict[str, Any],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    remote = S3Store.from_uri(f"s3://{bucket}/{name}", s3.endpoint_url)
    got = reader.tensors_of(reader.load_verified(remote, layout.step_dirname(STEPS)))
    assert sorted(got) == sorted(want)
    differ = [k for k in want if not (got[k].dtype == want[k].dtype and torch.equal(got[k],
                                                                                    want[k]))]
    assert differ == [], f"tensors not bit-identical to the uninterrupted run: {differ}"


def manifest_in_s3(s3: Any, bucket: str, name: str, step: int) -> dict[str, Any]:
    key = f"{name}/{layout.CHECKPOINTS}/{layout.step_dirname(step)}/{layout.MANIFEST}"
    body = s3.client().get_object(Bucket=bucket, Key=key)["Body"].read()
    manifest: dict[str, Any] = json.loads(body)
    return manifest


def done(custom: Any, namespace: str, name: str, timeout: float = 420) -> dict[str, Any]:
    job = wait_for(lambda: finished(custom, namespace, name), f"{name} to finish",
                   timeout=timeout)
    status: dict[str, Any] = job["status"]
    assert status["phase"] == "Succeeded", status
    return status


def history(status: dict[str, Any]) -> list[tuple[int, str, int]]:
    return [(h["attempt"], h.get("outcome", ""), h["worldSize"])
            for h in status.get("gangHistory") or []]


def test_the_multinode_example_runs_as_written(
    cluster, namespace, operator, process_node, s3, s3_bucket
):
    job = demo.load_job(EXAMPLE, s3_bucket, s3.endpoint_url)
    job["spec"]["checkpoint"]["sidecarPort"] = 18931
    name = job["metadata"]["name"]
    core, custom = submit(cluster, namespace, s3, job)
    nodes = [wait_for(lambda p=p: running_on(core, namespace, p), f"{p} to run", timeout=180)
             for p in (f"{name}-1-0", f"{name}-1-1")]
    assert nodes[0] != nodes[1]
    status = done(custom, namespace, name, timeout=480)
    final = 5 * 23  # --epochs 5
    assert (status["attempt"], status["preemptions"], status["failures"]) == (1, 0, 0)
    assert history(status) == [(1, "Succeeded", 4)]
    assert status["lastCheckpoint"]["step"] == final
    assert final in steps_in_s3(s3, s3_bucket, "digits-ddp")
    manifest = manifest_in_s3(s3, s3_bucket, "digits-ddp", final)
    assert manifest["world"]["world_size"] == 4, manifest


def test_a_preempted_node_stops_every_rank_at_one_step_and_the_gang_resumes_it_bit_exact(
    cluster, namespace, operator, process_node, s3, s3_bucket, tmp_path, reference, monkeypatch
):
    trace = tmp_path / "trace"
    core, custom = submit(cluster, namespace, s3,
                          ddp_job("ddp", s3_bucket, s3.endpoint_url, 18941, trace))
    wait_for(lambda: furthest(trace) >= 12, "the gang to train 12 steps", timeout=240)
    node = running_on(core, namespace, "ddp-1-1")
    assert node is not None
    process_node.preempt(node)
    process_node.add_node("spot")  # the cloud brings capacity back

    status = done(custom, namespace, "ddp")
    assert (status["attempt"], status["preemptions"], status["failures"]) == (2, 1, 0)
    assert history(status) == [(1, "Preempted", 4), (2, "Succeeded", 4)]
    assert status["lastCheckpoint"]["step"] == STEPS
    events = events_once(core, namespace, "ddp", {"Preempted": 1})
    assert any(r == "Preempted" and "rank 1 (ddp-1-1" in m for r, m in events), events

    seen = read_trace(trace)
    first = attempt_of(seen, 0)
    assert len(first) == 4, sorted(seen)
    last = {f: steps(lines)[-1] for f, lines in first.items()}
    saved = set(last.values())
    assert len(saved) == 1 and STEPS > min(saved) >= 12, last  # every rank stopped at one step
    step = saved.pop()
    manifest = manifest_in_s3(s3, s3_bucket, "ddp", step)
    assert (manifest["reason"], manifest["world"]["world_size"]) == ("preemption", 4), manifest
    second = attempt_of(seen, step)  # 0 steps lost: every rank of attempt 2 restored it
    assert len(second) == 4 and len(seen) == 8, {f: lines[0] for f, lines in seen.items()}
    assert {steps(lines)[0] for lines in second.values()} == {step + 1}
    assert {steps(lines)[-1] for lines in second.values()} == {STEPS}

    assert_final_equals_reference(s3, s3_bucket, "ddp", reference(), monkeypatch)


def test_a_rank_sigkilled_fails_the_attempt_and_the_gang_restarts_from_the_newest_committed(
    cluster, namespace, operator, process_node, s3, s3_bucket, tmp_path, reference, monkeypatch
):
    trace = tmp_path / "trace"
    core, custom = submit(cluster, namespace, s3, ddp_job(
        "kill", s3_bucket, s3.endpoint_url, 18951, trace, backoffLimit=1))
    wait_for(lambda: steps_in_s3(s3, s3_bucket, "kill") and furthest(trace) >= 25,
             "a committed checkpoint and 25 steps", timeout=240)
    os.kill(pid_of(read_trace(trace), 3), signal.SIGKILL)  # rank 3 (node 1): no save

    status = done(custom, namespace, "kill")
    assert (status["attempt"], status["preemptions"], status["failures"]) == (2, 0, 1)
    assert history(status) == [(1, "Failed", 4), (2, "Succeeded", 4)]
    events = events_once(core, namespace, "kill", {"AttemptFailed": 1})
    failed = [m for r, m in events if r == "AttemptFailed"]
    assert len(failed) == 1 and "retry 1 of 1" in failed[0], events

    seen = read_trace(trace)
    first = attempt_of(seen, 0)
    reached = max(s for lines in first.values() for s in steps(lines))
    newest = max(s for s in steps_in_s3(s3, s3_bucket, "kill") if s <= reached)
    second = attempt_of(seen, newest)
    assert len(second) == 4, {f: lines[0] for f, lines in seen.items()}
    assert {steps(lines)[0] for lines in second.values()} == {newest + 1}

    assert_final_equals_reference(s3, s3_bucket, "kill", reference(), monkeypatch)
