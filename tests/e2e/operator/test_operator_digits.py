"""The digits example as a ResumableTrainingJob, preempted twice, ends bit-identical."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import operator_support as support
import pytest
from e2e_support import wait_for

# ARGS, PLURAL, s3_secret: test_operator_pvc and test_operator_demo import them from here.
from operator_support import (  # noqa: F401
    ARGS,
    PLURAL,
    events_of,
    events_once,
    get_job,
    running_on,
    s3_secret,
)

from spotrun import layout, reader
from spotrun.localstore import LocalStore
from spotrun.s3store import S3Store

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[3]


def reference_run(workdir: Path) -> subprocess.Popen[bytes]:
    """The same training, uninterrupted, as a plain local process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPOTRUN_", "AWS_"))}
    env["SPOTRUN_CHECKPOINT_DIR"] = str(workdir)
    return subprocess.Popen(
        [sys.executable, "examples/digits/train.py", "--epochs", str(support.EPOCHS)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_digits_survives_two_preemptions_bit_identical(
    cluster, namespace, operator, process_node, s3, s3_bucket, tmp_path, monkeypatch
):
    core, custom = support.submit(cluster, namespace, s3,
                                  support.digits_job("digits", s3_bucket, s3.endpoint_url))
    reference = reference_run(tmp_path / "reference")

    restored_from = 0
    for attempt in (1, 2):
        pod = f"digits-{attempt}"
        node = wait_for(lambda pod=pod: running_on(core, namespace, pod),
                        f"{pod} to run", timeout=120)
        assert core.read_node(node).metadata.labels["karpenter.sh/capacity-type"] == "spot"
        wait_for(lambda since=restored_from: [
                     s for s in support.steps_in_s3(s3, s3_bucket, "digits") if s >= since + 100],
                 f"{pod} to train 100 steps past step {restored_from}", timeout=120)
        process_node.preempt(node)
        process_node.add_node("spot")  # the cloud brings capacity back
        # warm start: the preemption is counted at the notice, the old attempt's final save
        # once its pod ended (status.draining empty again)
        job = wait_for(lambda n=attempt: (j := get_job(custom, namespace, "digits"))
                       .get("status", {}).get("preemptions", 0) >= n
                       and not j["status"].get("draining") and j,
                       f"preemption {attempt} and its final save to be recorded", timeout=120)
        restored_from = job["status"]["lastCheckpoint"]["step"]
        assert job["status"]["lastCheckpoint"]["finalSaved"] is True

    done = wait_for(lambda: support.finished(custom, namespace, "digits"), "the job to finish",
                    timeout=180)
    status = done["status"]
    assert status["phase"] == "Succeeded", status
    assert (status["preemptions"], status["failures"], status["attempt"]) == (2, 0, 3)
    final = support.EPOCHS * 45
    assert status["lastCheckpoint"]["step"] == final

    events = events_once(core, namespace, "digits", {"Preempted": 2, "PreemptedAttemptEnded": 2})
    preempted = [m for r, m in events if r == "Preempted"]
    ended = [m for r, m in events if r == "PreemptedAttemptEnded"]  # warm start: said later
    restoring = [m for r, m in events if r == "Restoring"]
    assert len(preempted) == 2 and all("saves until" in m for m in preempted), events
    assert len(ended) == 2 and all("final save made it (step" in m for m in ended), events
    # a warm-started attempt made before any checkpoint was recorded says no Restoring Event
    assert 1 <= len(restoring) <= 2 and all("restores from step" in m for m in restoring), events

    assert reference.wait(timeout=300) == 0
    for key, value in s3.env().items():
        monkeypatch.setenv(key, value)
    remote = S3Store.from_uri(f"s3://{s3_bucket}/digits", s3.endpoint_url)
    name = layout.step_dirname(final)
    got = reader.tensors_of(reader.load_verified(remote, name))
    want = reader.tensors_of(reader.load_verified(LocalStore(str(tmp_path / "reference")), name))
    assert sorted(got) == sorted(want)
    differ = [k for k in want if not (got[k].dtype == want[k].dtype and got[k].equal(want[k]))]
    assert differ == [], f"tensors not bit-identical to the uninterrupted run: {differ}"
