"""`make demo` on kind: `hack/demo` against the session's cluster, as a user runs it.

The demo reuses the cluster, registry and S3 server the session fixtures brought up
(hack/kind/up, registry, s3: `hack/cluster up` finds them running and pushes only what
changed), `helm install`s the chart with the pushed images, submits manifests/examples/job.yaml
with the trainer image, the pods' S3 endpoint, the bucket and --epochs 100 substituted, gives
the spot worker an interruption notice (hack/kind/preempt --notice 5), then loses it abruptly
(--abrupt), hack/kind/add-node bringing it back after each; then the summary and the picture.
On a cluster that was up before, it removes only its namespace and helm release.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from tests.kind.kindenv import HELM, KUBECTL, NAME, REPO, KindCluster, run

pytestmark = [pytest.mark.kind, pytest.mark.timeout(3600)]

SPOT_WORKER = f"{NAME}-worker2"


def test_the_demo_on_kind_survives_a_notice_and_an_abrupt_loss_and_draws_its_report(
    kind_cluster: KindCluster, pushed: dict[str, str], kind_s3: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "demo-report.png"
    # the session's cluster must be left as the demo found it, whatever the caller keeps
    env = {**kind_cluster.env, "SPOTRUN_KIND_KEEP": "0"}
    env.pop("SPOTRUN_CLUSTER", None)
    try:
        done = run(
            REPO / "hack" / "demo",  # kind: the default
            "--seed",
            "11",
            "--out",
            str(out),
            env=env,
            timeout=3000,
        )
    except subprocess.TimeoutExpired:  # killed: its own cleanup never ran
        run(HELM, "uninstall", "spotrun", "--namespace", "spotrun-system", env=env)
        for namespace in ("spotrun-demo", "spotrun-system"):
            run(KUBECTL, "delete", "namespace", namespace, "--ignore-not-found", env=env)
        kind_cluster.restore_workers()
        raise
    print(done.stdout)
    print(done.stderr[-6000:])
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()

    assert "spotrun demo on kind: reusing cluster" in lines[0]
    (summary,) = [line for line in lines if line.startswith("job ")]
    assert summary.startswith("job Succeeded") and "3 attempt(s), 2 preemption(s)" in summary
    notice, abrupt = [line for line in lines if line.startswith("preemption ")]
    assert f"node {SPOT_WORKER}" in notice and "attempt 1" in notice
    assert "on SIGTERM" in notice and ": 0 steps lost" in notice, notice
    # no final save after an abrupt loss: attempt 3 restores a periodic checkpoint
    assert "no final save" in abrupt and "attempt 3 restored step" in abrupt, abrupt
    assert re.search(r": \d+ steps lost", abrupt), abrupt
    attempts = [line for line in lines if re.match(r"attempt \d: pod ", line)]
    assert [a.split()[3] for a in attempts] == ["digits-1", "digits-2", "digits-3"], attempts
    assert all(f"on {SPOT_WORKER} (spot)" in a for a in attempts), attempts
    assert any(line.startswith("pod time: ") for line in lines)
    assert any(line.startswith("cost at $") for line in lines)
    assert f"picture: {out}" in lines

    # the live rows: both preemptions announced as they were done, the count reaching 2
    announced = [line for line in lines if line.startswith(f"# preempting {SPOT_WORKER}")]
    assert len(announced) == 2, announced
    assert "interruption notice" in announced[0] and "abrupt loss" in announced[1], announced
    rows = [line.split() for line in lines if line.startswith("digits ")]
    assert any(row[5:6] == ["2"] for row in rows), "live rows show 2 preemptions"

    image = Image.open(out).convert("RGB")
    assert image.size[0] >= 1000 and image.size[1] >= 700
    colors = image.getcolors(maxcolors=1 << 20) or []
    assert len(colors) > 50, "a blank or near-blank picture"

    # what the demo started is gone; the session's cluster is still there
    assert (
        run(
            HELM, "status", "spotrun", "--namespace", "spotrun-system", env=kind_cluster.env
        ).returncode
        != 0
    )
    namespaces = json.loads(kind_cluster.kubectl("get", "namespaces", "-o", "json"))["items"]
    assert {"spotrun-demo", "spotrun-system"}.isdisjoint(n["metadata"]["name"] for n in namespaces)
    nodes = json.loads(kind_cluster.kubectl("get", "nodes", "-o", "json"))["items"]
    assert SPOT_WORKER in {n["metadata"]["name"] for n in nodes}
