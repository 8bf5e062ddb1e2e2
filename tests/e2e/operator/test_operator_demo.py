"""The core of `make demo`: manifests/examples/job.yaml on the cluster, its spot node preempted
twice at random steps; the summary and demo-report.png come out right."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from test_operator_digits import s3_secret

from localcluster import demo

pytestmark = pytest.mark.e2e


def test_demo_survives_two_preemptions_losing_no_step_and_draws_its_report(
    cluster: Any, namespace: str, operator: Any, process_node: Any, s3: Any, s3_bucket: str,
    tmp_path: Path,
) -> None:
    s3_secret(cluster.core(), namespace, s3)
    job = demo.with_epochs(demo.load_job(demo.JOB_FILE, s3_bucket, s3.endpoint_url),
                           demo.PROCESS_EPOCHS)
    job["spec"]["checkpoint"]["sidecarPort"] = 18901
    out = tmp_path / "demo-report.png"
    shown: list[str] = []
    lines = demo.watch_job(
        cluster.api, job, namespace,
        preempt=lambda node: process_node.preempt(node, 2.0),
        add_spot_node=lambda: process_node.add_node("spot"),
        out=out, seed=11, timeout=600, echo=shown.append,
    )
    print("\n".join(shown + lines))
    assert lines[0].startswith("job Succeeded"), lines
    assert "3 attempt(s), 2 preemption(s)" in lines[0]
    preemptions = [line for line in lines if line.startswith("preemption ")]
    assert len(preemptions) == 2
    for line in preemptions:
        assert "on SIGTERM" in line and ": 0 steps lost" in line, line
    assert any(row.split()[5:6] == ["2"] for row in shown[1:]), "live rows show 2 preemptions"

    image = Image.open(out).convert("RGB")
    assert image.size[0] >= 1000 and image.size[1] >= 700
    colors = image.getcolors(maxcolors=1 << 20) or []
    assert len(colors) > 50, "a blank or near-blank picture"
    red = sum(n for n, (r, g, b) in colors if r > 180 and g < 80 and b < 90)
    assert red > 100, "the preemption markers are missing"
