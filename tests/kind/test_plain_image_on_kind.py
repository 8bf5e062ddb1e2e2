"""A job whose image holds nothing of spotrun (issue 16): the local torch base (Debian's Python +
torch from PyPI, hack/kind/images' `torch`, pushed as it is) runs a plain script through a spot
interruption on kind. The operator (helm-installed with sidecar.image) injects spotrun-exec by an
init container and runs the sidecar from the sidecar image, so the pod starts; the preemption is
classified and the next attempt starts from scratch, which is what such a job loses: nothing
saves at the notice and nothing is restored.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kind import chart
from tests.kind.jobs import Job, hack, rtj
from tests.kind.kindenv import NAME, KindCluster, wait_for

pytestmark = [pytest.mark.kind, pytest.mark.timeout(3600)]

NAMESPACE, JOB = "plain-kind", "plain"
STEPS = 300  # 0.1 s each, in attempt 2; attempt 1 trains until its SIGTERM

SCRIPT = f"""
import importlib.metadata, os, time, torch
try:
    importlib.metadata.distribution("spotrun")
    print("spotrun installed: True", flush=True)
except importlib.metadata.PackageNotFoundError:
    print("spotrun installed: False", flush=True)
torch.manual_seed(0)
w = torch.zeros(4)
steps = {STEPS} if os.environ.get("SPOTRUN_ATTEMPT") != "1" else 10**9  # 1: until SIGTERM
for step in range(steps):
    w += torch.randn(4) * 0.01
    if step % 50 == 0:
        print("step", step, flush=True)
    time.sleep(0.1)
print("done", round(float(w.sum()), 6), flush=True)
"""


def job_manifest(image: str, s3: dict[str, str]) -> dict[str, Any]:
    container = {
        "image": image,
        "command": ["python", "-c", SCRIPT],
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}},
    }
    return rtj(JOB, container, s3, backoff_limit=0, grace=30)


@pytest.fixture
def plain(
    kind_cluster: KindCluster,
    pushed: dict[str, str],
    kind_s3: dict[str, str],
    operator: None,
    tmp_path: Path,
) -> Iterator[Job]:
    manifests = tmp_path / "plain.yaml"
    manifests.write_text(
        yaml.safe_dump_all([chart.s3_secret(kind_s3), job_manifest(pushed["torch"], kind_s3)])
    )
    kind_cluster.kubectl("create", "namespace", NAMESPACE)
    try:
        kind_cluster.kubectl("-n", NAMESPACE, "apply", "-f", str(manifests))
        yield Job(kind_cluster, kind_s3, NAMESPACE, JOB)
    finally:
        kind_cluster.delete_namespace(NAMESPACE)


def test_a_job_in_an_image_without_spotrun_runs_through_a_preemption(
    plain: Job, kind_cluster: KindCluster, pushed: dict[str, str]
) -> None:
    first = wait_for("plain-1 to train", lambda: plain.log_with(f"{JOB}-1", "step 50"), 900)
    assert "spotrun installed: False" in first, first
    spec = plain.pod(f"{JOB}-1")["spec"]
    (trainer,) = spec["containers"]
    assert trainer["image"] == pushed["torch"]
    assert trainer["command"][:2] == ["/spotrun/bin/spotrun-exec", "--"], trainer["command"]
    assert spec["nodeName"] == f"{NAME}-worker2", "a spot job runs on the spot worker"

    node = spec["nodeName"]
    hack(kind_cluster, "preempt", node, "--notice", "5")
    hack(kind_cluster, "add-node", node)

    status = plain.finished()
    assert status["phase"] == "Succeeded", status
    assert (status["preemptions"], status["failures"], status["attempt"]) == (1, 0, 2), status
    # what a script without the library loses: no checkpoint, attempt 2 starts over
    assert not status.get("lastCheckpoint"), status
    second = plain.trainer_log(f"{JOB}-2")
    # the script's own lines (not spotrun-exec's, nor torch's warning that numpy is missing)
    own = [line for line in second.splitlines() if line.startswith(("spotrun ", "step ", "done "))]
    assert own[:2] == ["spotrun installed: False", "step 0"], second
    assert "done " in second, second
