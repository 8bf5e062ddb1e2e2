"""The operator with --sidecar-image: the digits job's trainer command runs through the
spotrun-exec an init container copied into the pod (the process node ignores images; its
"image" holds spotrun-exec on PATH as the sidecar image does), SIGTERM at the preemption reaches
the trainer through it, and the job runs to Succeeded through the preemption."""

from __future__ import annotations

import operator_support as support
import pytest
from conftest import operators
from e2e_support import wait_for
from operator_support import get_job, running_on

pytestmark = pytest.mark.e2e

IMAGE = "spotrun/sidecar:e2e"


def test_a_job_runs_through_a_preemption_via_the_injected_entrypoint(
    cluster, namespace, crd, cluster_role, process_node, s3, s3_bucket, tmp_path
):
    with operators(cluster, namespace, cluster_role, tmp_path, args=["--sidecar-image", IMAGE]):
        core, custom = support.submit(cluster, namespace, s3,
                                      support.digits_job("digits", s3_bucket, s3.endpoint_url))
        node = wait_for(lambda: running_on(core, namespace, "digits-1"), "digits-1 to run",
                        timeout=120)
        spec = core.read_namespaced_pod("digits-1", namespace).spec
        copier, sidecar = spec.init_containers[0], spec.init_containers[1]
        assert (copier.name, copier.image, sidecar.image) == ("spotrun-entrypoint", IMAGE, IMAGE)
        assert spec.containers[0].command[:2] == ["/spotrun/bin/spotrun-exec", "--"]
        copied = process_node.log(namespace, "digits-1", "spotrun-entrypoint")
        assert "spotrun-exec: installed /spotrun/bin/spotrun-exec" in copied

        wait_for(lambda: [s for s in support.steps_in_s3(s3, s3_bucket, "digits") if s >= 100],
                 "digits-1 to train 100 steps", timeout=120)
        process_node.preempt(node)
        process_node.add_node("spot")
        done = wait_for(lambda: support.finished(custom, namespace, "digits"),
                        "the job to finish", timeout=300)
        status = done["status"]
        assert status["phase"] == "Succeeded", status
        assert (status["preemptions"], status["failures"]) == (1, 0), status
        assert status["lastCheckpoint"]["step"] == support.EPOCHS * 45
        # the preemption's SIGTERM went through the Go entrypoint to the trainer, which saved
        first = process_node.log(namespace, "digits-1", "trainer")
        assert "spotrun-exec: forwarding SIGTERM to process group" in first, first[-2000:]
        assert get_job(custom, namespace, "digits")["status"]["preemptions"] == 1
