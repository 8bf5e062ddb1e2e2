"""Warm start: the next attempt's pod is made while the preempted one still saves, and the old
attempt's end is folded in once. Planned on pods as the API server holds them during a notice
(fixtures/warmstart/*.yaml, each naming its source)."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from spotrun_operator import warmstart
from spotrun_operator.builders import SIDECAR, desired_pod
from spotrun_operator.decisions import plan
from spotrun_operator.models import JobStatus
from spotrun_operator.podstate import parse_ts
from tests.unit.operator.test_decisions import job

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).parent / "fixtures" / "warmstart"
NOTICES = ["eviction-api-notice", "scheduler-preemption-notice", "graceful-shutdown-notice"]


def load(name: str) -> dict[str, Any]:
    case: dict[str, Any] = yaml.safe_load((FIXTURES / f"{name}.yaml").read_text())
    return case


def when(text: str) -> datetime:
    at = parse_ts(text)
    assert at is not None
    return at


def digits(status: dict[str, Any] | None = None, **spec: Any) -> Any:
    st = {"attempt": 3, "activePod": "digits-3", "phase": "Running", "preemptions": 0}
    return replace(job({**st, **(status or {})}, **spec), name="digits")


def first_pass(name: str, **spec: Any) -> tuple[Any, dict[str, Any]]:
    """plan() the moment the operator sees the fixture's pod during its notice."""
    case = load(name)
    out = plan(digits(**spec), [case["pod"]], {"spot-7": case["node"]}, False, when(case["now"]))
    return out, case


def ended(pod: dict[str, Any], step: int, reason: str = "preemption") -> dict[str, Any]:
    """The same pod once its trainer saved ``step`` and exited 0 and its sidecar stopped."""
    pod = copy.deepcopy(pod)
    message = {"step": step, "finalSaved": True, "reason": reason, "uri": "s3://b/j/x"}
    pod["status"]["phase"] = "Succeeded"
    pod["status"]["containerStatuses"] = [
        {
            "name": "trainer",
            "state": {"terminated": {"exitCode": 0, "finishedAt": "2026-01-01T11:50:20Z"}},
        }
    ]
    pod["status"]["initContainerStatuses"] = [
        {"name": SIDECAR, "state": {"terminated": {"exitCode": 0, "message": json.dumps(message)}}}
    ]
    return pod


def env_of(pod: dict[str, Any], container: str) -> dict[str, str]:
    every = [*pod["spec"]["containers"], *pod["spec"]["initContainers"]]
    found = next(c for c in every if c["name"] == container)
    return {e["name"]: e["value"] for e in found["env"] if "value" in e}


def again(out: Any, **spec: Any) -> Any:
    """The job as the next pass reads it: the status through JSON, as the API server keeps it
    (so an operator restarted between two passes sees the same)."""
    stored = json.loads(json.dumps(out.status.model_dump(mode="json", exclude_none=True)))
    return replace(job(stored, **spec), name="digits")


@pytest.mark.parametrize("name", NOTICES)
def test_a_notice_creates_the_next_pod_at_once_and_counts_one_preemption(name: str) -> None:
    out, case = first_pass(name)
    st = out.status
    assert (st.attempt, st.preemptions, st.phase) == (4, 1, "Restarting")
    assert out.create is not None and out.create["metadata"]["name"] == "digits-4"
    assert st.activePod == "digits-4" and st.notBefore is None
    # the old pod keeps its finalizer (its end is still to come) and is not deleted again
    assert "digits-3" not in out.release and "digits-3" not in out.delete
    until = case.get("until") or case["pod"]["metadata"]["deletionTimestamp"]
    assert [(d.attempt, d.pod, d.until) for d in st.draining] == [(3, "digits-3", until)]
    sidecar = env_of(out.create, SIDECAR)
    assert sidecar["SPOTRUN_PREVIOUS_ATTEMPT"] == "3"
    skewed = when(until) + timedelta(seconds=10)
    assert when(sidecar["SPOTRUN_PREVIOUS_UNTIL"]) == skewed
    told = {e.reason: e.message for e in out.events}
    assert case["why"] in told["Preempted"] and "preemption 1 of at most 20" in told["Preempted"]
    assert "digits-4" in told["WarmStart"] and "digits-3" in told["WarmStart"]


def test_an_operator_delete_is_not_a_warm_start() -> None:
    out, _ = first_pass("operator-delete")
    assert out.create is None and out.status.preemptions == 0 and out.status.attempt == 3
    assert not out.status.draining


def test_a_suspended_jobs_pod_taken_with_notice_is_not_replaced() -> None:
    out, _ = first_pass("eviction-api-notice", suspend=True)
    assert out.create is None and out.status.preemptions == 0 and not out.status.draining


def test_warm_start_false_waits_for_the_old_pod_to_end() -> None:
    out, case = first_pass("eviction-api-notice", spot={"warmStart": False})
    assert out.create is None and out.status.attempt == 3 and out.status.preemptions == 0
    later = plan(
        digits(spot={"warmStart": False}),
        [ended(case["pod"], 1250)],
        {"spot-7": case["node"]},
        False,
        when("2026-01-01T11:50:30Z"),
    )
    assert later.status.preemptions == 1 and later.status.lastCheckpoint.step == 1250
    assert later.release == ["digits-3"]


def test_the_next_pass_during_the_overlap_makes_no_second_pod_and_counts_nothing_twice() -> None:
    out, case = first_pass("eviction-api-notice")
    new = copy.deepcopy(out.create)
    new["status"] = {"phase": "Pending"}
    second = plan(again(out), [case["pod"], new], {}, False, when("2026-01-01T11:50:06Z"))
    assert second.create is None and second.status.preemptions == 1
    assert second.status.attempt == 4 and [d.pod for d in second.status.draining] == ["digits-3"]
    assert "digits-3" not in second.release and "digits-3" not in second.delete


def test_the_old_attempts_end_is_folded_in_once_even_across_an_operator_restart() -> None:
    out, case = first_pass("eviction-api-notice")
    new = copy.deepcopy(out.create)
    new["status"] = {"phase": "Running"}
    old = ended(case["pod"], 1250)
    # a fresh Planner from the stored status: what an operator restarted in between reads
    fold = plan(again(out), [old, new], {}, False, when("2026-01-01T11:50:25Z"))
    st = fold.status
    assert st.lastCheckpoint is not None
    assert (st.lastCheckpoint.step, st.lastCheckpoint.finalSaved) == (1250, True)
    assert st.preemptions == 1 and st.attempt == 4 and not st.draining
    assert fold.release == ["digits-3"] and fold.create is None
    assert st.spotSeconds == pytest.approx(50 * 60 + 20)  # 11:00:00 -> the trainer's end
    told = [e for e in fold.events if e.reason == "PreemptedAttemptEnded"]
    assert len(told) == 1 and "final save made it (step 1250)" in told[0].message
    # the pass after: the old pod still listed (its delete goes on), nothing counted again
    after = plan(again(fold), [old, new], {}, False, when("2026-01-01T11:50:26Z"))
    assert after.status.spotSeconds == st.spotSeconds and after.status.preemptions == 1
    assert not any(e.reason == "PreemptedAttemptEnded" for e in after.events)


def test_the_old_attempt_saving_less_than_the_new_one_never_moves_progress_back() -> None:
    out, case = first_pass("eviction-api-notice")
    status = again(out).status.model_dump(mode="json", exclude_none=True)
    status["lastCheckpoint"] = {"step": 1300}  # the new attempt saved on already
    new = {**copy.deepcopy(out.create), "status": {"phase": "Running"}}
    fold = plan(
        digits(status), [ended(case["pod"], 1250), new], {}, False, when("2026-01-01T11:50:25Z")
    )
    assert fold.status.lastCheckpoint.step == 1300 and not fold.status.draining


def test_an_old_attempt_that_ran_to_its_end_during_its_notice_ends_the_job() -> None:
    out, case = first_pass("eviction-api-notice", cost={"spotHourly": 1.0, "onDemandHourly": 3.0})
    new = {**copy.deepcopy(out.create), "status": {"phase": "Running"}}
    old = ended(case["pod"], 2000, reason="final")
    priced = again(out, cost={"spotHourly": 1.0, "onDemandHourly": 3.0})
    done = plan(priced, [old, new], {}, False, when("2026-01-01T11:50:25Z"))
    st = done.status
    assert st.phase == "Succeeded" and st.lastCheckpoint.step == 2000
    assert st.estimatedSavings is not None  # the old pod's seconds at the spec's prices
    assert "digits-4" in done.delete and {"digits-3", "digits-4"} <= set(done.release)
    assert any(e.reason == "Completed" and "during its notice" in e.message for e in done.events)


def test_a_lost_end_is_dropped_with_a_warning_and_the_pod_released() -> None:
    out, case = first_pass("eviction-api-notice")
    new = {**copy.deepcopy(out.create), "status": {"phase": "Running"}}
    # still Running a minute past its deletionTimestamp (11:51:00): its node went silent
    stuck = plan(again(out), [case["pod"], new], {}, False, when("2026-01-01T11:52:01Z"))
    assert not stuck.status.draining and stuck.release == ["digits-3"]
    warned = [e for e in stuck.events if e.reason == "PreemptedAttemptEnded"]
    assert warned and warned[0].type == "Warning" and "end is unknown" in warned[0].message
    # before that it is waited for, with a recheck when it would be lost
    waiting = plan(again(out), [case["pod"], new], {}, False, when("2026-01-01T11:51:30Z"))
    assert waiting.status.draining and waiting.requeue_after is not None
    assert waiting.requeue_after <= 31
    # a pod force-deleted: nothing to release, the same warning
    gone = plan(again(out), [new], {}, False, when("2026-01-01T11:50:30Z"))
    assert not gone.status.draining and gone.release == []
    assert any(e.reason == "PreemptedAttemptEnded" and e.type == "Warning" for e in gone.events)


def test_suspend_during_the_overlap_stops_the_new_pod_and_still_folds_the_old_end() -> None:
    out, case = first_pass("eviction-api-notice")
    new = {**copy.deepcopy(out.create), "status": {"phase": "Running"}}
    suspended = plan(
        again(out, suspend=True), [case["pod"], new], {}, False, when("2026-01-01T11:50:10Z")
    )
    assert suspended.delete == ["digits-4"] and suspended.status.draining
    later = plan(
        again(suspended, suspend=True),
        [ended(case["pod"], 1250), new],
        {},
        False,
        when("2026-01-01T11:50:25Z"),
    )
    assert later.status.lastCheckpoint.step == 1250 and later.release == ["digits-3"]
    assert later.status.preemptions == 1


def test_a_protected_pod_evicted_anyway_warm_starts_and_the_next_pod_is_protected_too() -> None:
    """doNotDisrupt (karpenter.sh/do-not-disrupt) keeps Karpenter's voluntary moves away; a
    spot interruption evicts the pod regardless, and that is a notice like any other."""
    out, case = first_pass("eviction-api-notice")
    assert case["pod"]["metadata"]["annotations"]["karpenter.sh/do-not-disrupt"] == "true"
    assert out.create["metadata"]["annotations"]["karpenter.sh/do-not-disrupt"] == "true"
    off, _ = first_pass("eviction-api-notice", disruption={"doNotDisrupt": False})
    assert off.create is not None
    assert "karpenter.sh/do-not-disrupt" not in off.create["metadata"].get("annotations", {})


def test_max_preemptions_at_a_notice_fails_the_job_and_still_waits_for_the_old_end() -> None:
    case = load("eviction-api-notice")
    j = digits({"preemptions": 2}, spot={"maxPreemptions": 2})
    out = plan(j, [case["pod"]], {"spot-7": case["node"]}, False, when(case["now"]))
    assert out.status.phase == "Failed" and out.create is None
    assert [d.pod for d in out.status.draining] == ["digits-3"]
    fold = plan(
        again(out, spot={"maxPreemptions": 2}),
        [ended(case["pod"], 1250)],
        {},
        False,
        when("2026-01-01T11:50:25Z"),
    )
    assert fold.status.lastCheckpoint.step == 1250 and fold.release == ["digits-3"]
    assert fold.status.phase == "Failed"


def test_the_operators_own_delete_on_an_interruption_taint_is_a_notice() -> None:
    """The operator deletes a pod whose node has an interruption taint (so the trainer has the
    whole grace period); the eviction that follows finds it deleting and adds nothing."""
    case = load("operator-delete")
    node = load("eviction-api-notice")["node"]  # tainted karpenter.sh/disrupted
    out = plan(digits(), [case["pod"]], {"spot-7": node}, False, when(case["now"]))
    assert out.create is not None and out.status.preemptions == 1
    assert "karpenter.sh/disrupted" in next(
        e.message for e in out.events if e.reason == "Preempted"
    )


def test_no_previous_attempt_in_the_env_of_a_cold_start() -> None:
    pod = desired_pod(
        digits({"lastCheckpoint": {"step": 5}}), 4, on_demand=False, gpus_available=False
    )
    assert "SPOTRUN_PREVIOUS_ATTEMPT" not in env_of(pod, SIDECAR)


def test_a_stale_condition_without_a_delete_is_not_a_notice() -> None:
    pod = copy.deepcopy(load("eviction-api-notice")["pod"])
    del pod["metadata"]["deletionTimestamp"]  # the eviction did not go through
    assert warmstart.notice(pod, None, False) is None


def test_status_draining_round_trips_through_the_model() -> None:
    out, _ = first_pass("eviction-api-notice")
    stored = out.status.model_dump(mode="json", exclude_none=True)
    assert JobStatus.model_validate(stored).draining == out.status.draining


def test_a_job_on_a_claim_is_not_warm_started() -> None:
    """Both pods would mount one folder of the claim: the old pod is waited for."""
    out, _ = first_pass("eviction-api-notice", checkpoint={"storage": {"pvc": {"claimName": "c"}}})
    assert out.create is None and out.status.preemptions == 0 and not out.status.draining


def test_the_job_succeeds_only_once_the_old_attempts_end_is_folded_in() -> None:
    """The new attempt may finish before the old pod's grace ends: the job's end (and its pod
    seconds, its savings) waits for the old attempt's end."""
    out, case = first_pass("eviction-api-notice")
    new = ended({**copy.deepcopy(out.create), "status": copy.deepcopy(case["pod"]["status"])}, 3000)
    new["metadata"].pop("deletionTimestamp", None)
    new["status"]["conditions"] = []
    new["status"]["initContainerStatuses"][0]["state"]["terminated"]["message"] = json.dumps(
        {"step": 3000, "finalSaved": True, "reason": "final"}
    )
    waiting = plan(again(out), [case["pod"], new], {}, False, when("2026-01-01T11:50:20Z"))
    assert waiting.status.phase != "Succeeded" and "digits-4" not in waiting.release
    assert waiting.status.draining and waiting.requeue_after is not None
    both = plan(
        again(out), [ended(case["pod"], 1250), new], {}, False, when("2026-01-01T11:50:30Z")
    )
    assert both.status.phase == "Succeeded" and not both.status.draining
    assert {"digits-3", "digits-4"} <= set(both.release)
    assert both.status.spotSeconds == pytest.approx(2 * (50 * 60 + 20))


def test_the_restoring_event_of_a_warm_start_says_the_old_attempts_final_save_comes_first():
    # the sidecar waits for attempt 3's final save and restores it, not the step known now
    case = load(NOTICES[0])
    known = digits({"lastCheckpoint": {"step": 50}})
    out = plan(known, [case["pod"]], {"spot-7": case["node"]}, False, when(case["now"]))
    (said,) = [e.message for e in out.events if e.reason == "Restoring"]
    until = case["pod"]["metadata"]["deletionTimestamp"]
    assert said == (
        "attempt 4 (digits-4) on spot nodes restores from step 50 or newer: the final save of "
        f"attempt 3, which saves until {until}, once it lands"
    )
    # a cold start (the old pod over) names the step alone
    cold = plan(digits({"lastCheckpoint": {"step": 50}, "attempt": 4, "activePod": None,
                        "phase": "Restarting"}), [], {}, False, when(case["now"]))
    assert [e.message for e in cold.events if e.reason == "Restoring"] == [
        "attempt 4 (digits-4) on spot nodes restores from step 50"]
