"""Multi-node DDP end to end on the real control plane, process nodes and the real S3 server:
manifests/examples/multinode.yaml (examples/ddp, the digits CNN under DDP, gloo, as a gang of 2
pods x 2 processes under torchrun, each pod with its sidecar) runs as written (only the bucket,
endpoint and sidecar port pointed at this cluster, as the demo does with job.yaml) and succeeds.

A node preempted mid-training (every rank saves one step, the next attempt restores it, 0 steps
lost) and a rank SIGKILLed (a failure; the gang restarts from the newest checkpoint committed in
S3), both ending bit-identical to uninterrupted torchruns, are tested on kind's real pod network:
tests/kind/test_gang_on_kind.py (they ran here too until kind proved them; hack/TIERS.md).

A checkpoint missing one rank's part is never restored: tests/integration/test_gang_resume.py
(on local dirs) and tests/integration/test_gang_sidecar.py (the sidecars against the real S3
server: a part that never arrives is never committed, restore falls back past a manifest naming
a missing rank file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from e2e_support import wait_for
from operator_support import finished, running_on, steps_in_s3, submit

from localcluster import demo
from spotrun import layout

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[3] / "manifests" / "examples" / "multinode.yaml"


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
