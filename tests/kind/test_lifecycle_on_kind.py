"""A user's own interruptions on kind's real kubelets, README "The operator": `suspend: true`
gives the pod SIGTERM and it saves, `false` resumes from that checkpoint; editing
`spec.template` of the running job ends the attempt the same way and the next one, built from
the new template, restores that step. Neither is a preemption or a failure.

One digits job (the example, `kubectl apply -f`) lives through both: attempt 1 is suspended,
attempt 2 resumes it, attempt 3 runs the edited template (`--epochs` raised) to Succeeded.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.kind.jobs import SPOT_WORKER, STEPS_PER_EPOCH, Job, StartDigits, committed_steps
from tests.kind.kindenv import wait_for

pytestmark = [pytest.mark.kind, pytest.mark.timeout(1800)]

# long enough that attempt 2 still trains when the template is edited
EPOCHS, EDITED_EPOCHS = 200, 202


@pytest.fixture
def digits(start_digits: StartDigits) -> Job:
    return start_digits("lifecycle-kind", EPOCHS)


def _patch(job: Job, kind: str, body: object) -> None:
    job.k("patch", "resumabletrainingjob", job.name, "--type", kind, "-p", json.dumps(body))


def _restored(job: Job, pod: str) -> int:
    """The step the trainer of POD says it restored, once it says so."""
    log = wait_for(f"{pod} to restore", lambda: job.log_with(pod, "spotrun: restored step "), 600)
    found = re.search(r"spotrun: restored step (\d+) ", log)
    assert found, log[-2000:]
    return int(found.group(1))


def test_suspend_resume_and_a_template_edit_each_restore_the_step_saved_on_sigterm(
    digits: Job,
) -> None:
    # suspend: attempt 1 gets SIGTERM, saves, and no pod of the job runs
    _patch(digits, "merge", {"spec": {"suspend": True}})
    suspended = wait_for(
        "the job to be Suspended",
        lambda: (st := digits.status()).get("phase") == "Suspended" and st,
        300,
    )
    checkpoint = suspended["lastCheckpoint"]
    assert checkpoint["finalSaved"] is True, suspended
    saved = checkpoint["step"]
    assert 0 < saved < EPOCHS * STEPS_PER_EPOCH
    assert saved in committed_steps(digits.s3, digits.prefix)
    pods = json.loads(digits.k("get", "pods", "-o", "json"))["items"]
    assert all(p["status"].get("phase") in ("Succeeded", "Failed") for p in pods), pods

    # resume: attempt 2 restores exactly that step
    _patch(digits, "merge", {"spec": {"suspend": False}})
    assert wait_for("digits-2 to run", lambda: digits.running_node("digits-2"), 600) == SPOT_WORKER
    assert _restored(digits, "digits-2") == saved
    restoring = wait_for("the Restoring Event", lambda: digits.events("Restoring"), 120)
    assert restoring == [f"attempt 2 (digits-2) on spot nodes restores from step {saved}"]

    # edit the template while attempt 2 trains past its restore: attempt 3 runs the new one
    wait_for(
        "attempt 2 to commit a step of its own",
        lambda: max(committed_steps(digits.s3, digits.prefix)) > saved,
        300,
    )
    job = digits.job()
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[-2:] == ["--epochs", str(EPOCHS)], command
    assert job["status"]["phase"] == "Running", job["status"]
    generation = job["metadata"]["generation"]  # suspend and resume changed the spec too
    _patch(
        digits,
        "json",
        [
            {
                "op": "replace",
                "path": f"/spec/template/spec/containers/0/command/{len(command) - 1}",
                "value": str(EDITED_EPOCHS),
            }
        ],
    )
    wait_for("digits-3 to run", lambda: digits.running_node("digits-3"), 600)
    (changed,) = wait_for(
        "the TemplateChanged Event of attempt 2's end",
        lambda: [m for m in digits.events("TemplateChanged") if "stopped for a changed" in m],
        120,
    )
    assert f"generation {generation} -> {generation + 1}" in changed, changed
    found = re.search(r"last checkpoint step (\d+) \(final save made it\)", changed)
    assert found, changed
    edited_save = int(found.group(1))
    assert edited_save > saved
    assert _restored(digits, "digits-3") == edited_save
    (trainer,) = [c for c in digits.pod("digits-3")["spec"]["containers"] if c["name"] == "trainer"]
    assert trainer["command"][-1] == str(EDITED_EPOCHS), trainer["command"]

    status = digits.finished()
    assert status["phase"] == "Succeeded", status
    assert (status["preemptions"], status["failures"], status["attempt"]) == (0, 0, 3), status
    assert status["templateGeneration"] == generation + 1, status
    assert status["lastCheckpoint"]["step"] == EDITED_EPOCHS * STEPS_PER_EPOCH
