"""What a sidecar reports (live /status or its termination message) reaches the job's status
only through ``spotrun.contract.parse``: hostile values change nothing and never raise; a
sidecar waiting for its storage is said (condition + one Event); the sidecar is told which
step was saved (SPOTRUN_EXPECTED_STEP)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from spotrun import contract
from spotrun.podenv import PodEnv
from spotrun.s3store import TransferSettings
from spotrun.sidecar import SidecarConfig
from spotrun_operator import builders, live, models
from spotrun_operator.decisions import checkpoint_report, plan
from tests.unit.operator.test_decisions import NODE, NOW, ended_pod, job
from tests.unit.operator.test_runtime import RUNNING, running_pod

pytestmark = pytest.mark.unit

HOSTILE = [
    '{"step": 1180591620717411303424}',  # 2**70: beyond int64
    '{"step": true}',
    '{"step": -5}',
    '{"step": "450"}',
    '{"step": 450.0}',
    '{"step": 450, "epoch": false}',
    '{"step": 450, "uri": ' + json.dumps("s3://" + "x" * 5000) + "}",
    '{"step": 450, "state": "pwned"}',
    '{"step": 450, "note": "' + "x" * 20_000 + '"}',  # a body past the size cap
    "[" * 100_000 + "]" * 100_000,  # nested deeper than any parser's recursion
    '{"a":' * 5000 + "1" + "}" * 5000,
    "[450]",
    "450",
    "null",
    "not json",
    "",
]


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_a_hostile_report_is_no_checkpoint(text):
    assert checkpoint_report(text) is None
    decoded: Any = None
    try:
        decoded = json.loads(text)
    except (ValueError, RecursionError):
        pass
    assert checkpoint_report(decoded) is None


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_a_hostile_live_report_leaves_the_status_as_it_was(text):
    status = {**RUNNING, "lastCheckpoint": {"step": 100}, "progress": "step 100"}
    out = plan(job(status), [running_pod()], {"spot-1": NODE}, False, NOW, live=text)
    assert out.status.lastCheckpoint is not None and out.status.lastCheckpoint.step == 100
    assert out.status.progress == "step 100"


def test_non_finite_metrics_are_dropped_and_the_status_stays_valid_json():
    text = '{"step": 5, "metrics": {"loss": 1e400, "nan": NaN, "acc": 0.5, "flag": true}}'
    out = plan(job(RUNNING), [running_pod()], {"spot-1": NODE}, False, NOW, live=text)
    assert out.status.progress == "step 5, acc 0.5"
    json.dumps(out.status.model_dump(mode="json"), allow_nan=False)  # what the patch sends


def test_the_largest_valid_step_is_taken_as_it_is():
    text = json.dumps({"step": contract.MAX_STEP, "epoch": 1})
    out = plan(job(RUNNING), [running_pod()], {"spot-1": NODE}, False, NOW, live=text)
    assert out.status.lastCheckpoint is not None
    assert out.status.lastCheckpoint.step == 2**63 - 1


@pytest.mark.parametrize("message", HOSTILE[:10], ids=range(10))
def test_a_hostile_termination_message_records_the_end_without_a_checkpoint(message):
    pod = ended_pod(1, "Failed", 143, disrupted=True)
    pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["message"] = message
    out = plan(job(RUNNING), [pod], {"spot-1": NODE}, False, NOW)
    assert out.status.preemptions == 1 and out.status.attempt == 2
    assert out.status.lastCheckpoint is None
    preempted = [msg for _, reason, msg in out.events if reason == "Preempted"]
    assert "no checkpoint yet" in preempted[0]


def pending_pod(sidecar_running: bool = True) -> dict[str, Any]:
    """Attempt 2's pod while its native sidecar restores (the trainer has not started)."""
    pod = running_pod(attempt=2)
    state = {"running": {"startedAt": "2026-01-01T11:59:00Z"}} if sidecar_running else {}
    pod["status"] = {
        "phase": "Pending",
        "podIP": "10.0.0.7",
        "initContainerStatuses": [{"name": builders.SIDECAR, "started": False, "state": state}],
    }
    return pod


def test_a_pending_pod_is_asked_once_its_sidecar_runs():
    assert live.sidecar_url(pending_pod(), 8471) == "http://10.0.0.7:8471/status"
    assert live.sidecar_url(pending_pod(sidecar_running=False), 8471) is None


WAITING = {
    "state": "waiting-for-storage",
    "problem": "s3://bucket/jobs/a: connect timeout to http://s3:9000",
}
RESTARTED = {**RUNNING, "attempt": 2, "activePod": "a-2", "lastCheckpoint": {"step": 450}}


def storage_condition(status: models.JobStatus) -> models.Condition | None:
    return next((c for c in status.conditions if c.type == models.COND_STORAGE), None)


def test_a_sidecar_waiting_for_the_storage_is_a_condition_and_one_warning_event():
    first = plan(job(RESTARTED), [pending_pod()], {"spot-1": NODE}, False, NOW, live=WAITING)
    cond = storage_condition(first.status)
    assert cond is not None and (cond.status, cond.reason) == ("False", "StorageUnreachable")
    for part in (
        "a-2 cannot read the checkpoints in s3://bucket/jobs/a at http://s3:9000",
        "connect timeout to http://s3:9000",
        "instead of training from scratch, since step 450 was saved",
        "Secret creds",
        "SPOTRUN_START_WITHOUT_STORAGE=1",
    ):
        assert part in cond.message
    assert first.events == [("Warning", "StorageUnreachable", cond.message)]
    assert first.requeue_after is not None  # asked again while it waits

    status = first.status.model_dump(mode="json", exclude_none=True)
    again = plan(job(status), [pending_pod()], {"spot-1": NODE}, False, NOW, live=WAITING)
    assert storage_condition(again.status) == cond
    assert again.events == []  # one Event, not one per pass

    restoring = {"state": "restoring"}
    back = plan(job(status), [pending_pod()], {"spot-1": NODE}, False, NOW, live=restoring)
    cond = storage_condition(back.status)
    assert cond is not None and (cond.status, cond.reason) == ("True", "StorageReachable")
    assert [reason for _, reason, _ in back.events] == ["StorageReachable"]


def test_a_job_whose_storage_always_worked_has_no_storage_condition():
    out = plan(job(RESTARTED), [pending_pod()], {"spot-1": NODE}, False, NOW, live={})
    assert storage_condition(out.status) is None and out.events == []


def sidecar_env(pod: dict[str, Any]) -> dict[str, str]:
    sidecar = pod["spec"]["initContainers"][0]
    assert sidecar["name"] == builders.SIDECAR
    return {e["name"]: e.get("value", "") for e in sidecar["env"]}


def test_the_sidecar_is_told_the_step_the_status_says_was_saved():
    fresh = builders.desired_pod(job(), 1, on_demand=False, gpus_available=False)
    assert contract.EXPECTED_STEP_ENV not in sidecar_env(fresh)
    saved = job({**RUNNING, "lastCheckpoint": {"step": 450}})
    again = builders.desired_pod(saved, 2, on_demand=False, gpus_available=False)
    assert sidecar_env(again)[contract.EXPECTED_STEP_ENV] == "450"


def test_the_next_attempt_expects_the_step_its_predecessor_saved_on_sigterm():
    pod = ended_pod(1, "Failed", 143, disrupted=True, step=40)
    status = {**RUNNING, "lastCheckpoint": {"step": 20}}
    out = plan(job(status, spot={"backoffSeconds": 0}), [pod], {"spot-1": NODE}, False, NOW)
    assert out.create is not None
    assert sidecar_env(out.create)[contract.EXPECTED_STEP_ENV] == "40"


def test_a_users_choice_to_start_without_storage_reaches_the_sidecar():
    template = {
        "spec": {
            "containers": [
                {
                    "name": "trainer",
                    "image": "img",
                    "env": [{"name": contract.START_WITHOUT_STORAGE_ENV, "value": "1"}],
                }
            ]
        }
    }
    pod = builders.desired_pod(job(template=template), 1, on_demand=False, gpus_available=False)
    assert sidecar_env(pod)[contract.START_WITHOUT_STORAGE_ENV] == "1"


def test_the_users_sidecar_settings_on_the_trainer_reach_the_sidecar_and_take_effect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # under the operator the sidecar restores and uploads in its own container: the S3
    # transfer settings and the restore's patience a user sets on the trainer go to it, the
    # trainer's own settings do not
    theirs = {"SPOTRUN_S3_DELTA": "0", "SPOTRUN_S3_PART_MB": "64", "SPOTRUN_S3_CONCURRENCY": "2",
              "SPOTRUN_S3_CALL_TIMEOUT": "45", "SPOTRUN_RESTORE_TIMEOUT": "300",
              "SPOTRUN_RESTORE_MAX_BACKOFF": "20"}
    env = [{"name": k, "value": v} for k, v in {**theirs, "SPOTRUN_SAVE_AT_ONCE": "0"}.items()]
    template = {"spec": {"containers": [{"name": "trainer", "image": "img", "env": env}]}}
    pod = builders.desired_pod(job(template=template), 1, on_demand=False, gpus_available=False)
    got = sidecar_env(pod)
    assert {k: got.get(k) for k in theirs} == theirs
    assert "SPOTRUN_SAVE_AT_ONCE" not in got
    for name, value in got.items():  # the sidecar container's environment
        monkeypatch.setenv(name, value)
    settings = TransferSettings.from_env()
    assert (settings.delta, settings.part_size, settings.concurrency) == (False, 64 << 20, 2)
    assert settings.call_timeout == 45.0
    config = SidecarConfig.from_env(PodEnv.from_env(got))
    assert (config.restore_timeout, config.max_backoff) == (300.0, 20.0)
