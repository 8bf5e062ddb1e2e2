"""spec.deadline wired into the planner (deadlineplan.py): the step time measured from the
running attempt's checkpoints, the capacity of each attempt at its start, an attempt pending on
spot moved to on-demand, an on-demand attempt moved back to spot (it saves; its end is no
preemption), status.deadline and the DeadlineCapacity Event; hostile values refused."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from spotrun_operator import builders
from spotrun_operator.deadline import Sample, measure
from spotrun_operator.deadlineplan import node_matches, spot_free
from spotrun_operator.decisions import plan
from spotrun_operator.models import JobSpec
from spotrun_operator.podstate import ts
from tests.unit.operator.test_decisions import NOW, ended_pod, job

pytestmark = pytest.mark.unit

SPOT = "karpenter.sh/capacity-type"
# 1000 steps of 0.5 s within 1000 s, one restart 10 s; started 400 s ago: the line says 400
DEADLINE = {"withinSeconds": 1000, "totalSteps": 1000, "restartSeconds": 10}
STARTED = ts(NOW - timedelta(seconds=400))


def node(name: str, labels: dict[str, str], ready: str = "True", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}, "spec": spec,
            "status": {"conditions": [{"type": "Ready", "status": ready}]}}


FREE = {"spot-9": node("spot-9", {SPOT: "spot"})}
NONE_FREE = {"od-1": node("od-1", {SPOT: "on-demand"})}


def status(step: int, **more: Any) -> dict[str, Any]:
    """A job started 400 s ago whose newest checkpoint is ``step``, step time measured."""
    return {
        "startTime": STARTED,
        "lastCheckpoint": {"step": step},
        "deadline": {"finishBy": ts(NOW + timedelta(seconds=600)), "stepSeconds": 0.5},
        **more,
    }


def deadline_job(st: dict[str, Any], **spec: Any) -> Any:
    return job(st, deadline=DEADLINE, **spec)


def pod(attempt: int, phase: str, on_demand: bool, **status: Any) -> dict[str, Any]:
    p = builders.desired_pod(deadline_job({}), attempt, on_demand=on_demand,
                             gpus_available=False)
    p["metadata"]["creationTimestamp"] = ts(NOW - timedelta(seconds=60))
    p["spec"]["nodeName"] = "od-1" if on_demand else "spot-9"
    p["status"] = {"phase": phase, **status}
    if phase == "Running":
        p["status"].setdefault("startTime", ts(NOW - timedelta(seconds=50)))
    return p


def told(out: Any) -> list[str]:
    return [message for _, reason, message in out.events if reason == "DeadlineCapacity"]


def capacity(created: dict[str, Any]) -> str:
    return str(created["metadata"]["labels"][builders.LABEL_CAPACITY])


# -- the step time ------------------------------------------------------------------------

def test_the_step_time_comes_from_two_checkpoints_of_one_attempt() -> None:
    first = measure(None, Sample(2, 100, 1000.0), attempt_start=900.0, now=1000.0,
                    step_seconds=None)
    assert first.sample == Sample(2, 100, 1000.0) and first.step_seconds is None
    second = measure(first.sample, Sample(2, 140, 1020.0), 900.0, 1020.0, None)
    assert second.step_seconds == 0.5 and second.problem is None
    # the checkpoint it restored (saved before the attempt began) teaches nothing
    restored = measure(None, Sample(3, 140, 1020.0), attempt_start=1100.0, now=1200.0,
                       step_seconds=0.5)
    assert restored == measure(None, Sample(3, 140, 1020.0), 1100.0, 1200.0, 0.5)
    assert restored.sample is None and restored.step_seconds == 0.5
    # a new attempt starts a new sample: the restart is not step time
    again = measure(second.sample, Sample(3, 150, 1300.0), 1200.0, 1300.0, 0.5)
    assert again.sample == Sample(3, 150, 1300.0) and again.step_seconds == 0.5


@pytest.mark.parametrize(
    ("seen", "why"),
    [
        (Sample(2, 200, 5000.0), "in the future"),
        (Sample(2, 90, 1010.0), "after step 100"),  # a step going backwards
        (Sample(2, 120, 990.0), "after step 100"),  # saved before the kept one
        (Sample(2, 101, 1000.0 + 200_000.0), "beyond"),  # a day per step
    ],
)
def test_hostile_checkpoints_are_refused_with_a_reason(seen: Sample, why: str) -> None:
    kept = Sample(2, 100, 1000.0)
    got = measure(kept, seen, attempt_start=900.0, now=1000.0 + 200_000.0 if why == "beyond"
                  else 1030.0, step_seconds=0.7)
    assert got.problem is not None and why in got.problem
    assert got.step_seconds == 0.7 and got.sample == kept


def test_the_operator_measures_the_step_time_from_the_live_reports() -> None:
    running = pod(1, "Running", False)
    j = deadline_job({"attempt": 1, "activePod": "a-1", "startTime": STARTED})
    t1, t2 = ts(NOW - timedelta(seconds=30)), ts(NOW - timedelta(seconds=10))
    out = plan(j, [running], FREE, False, NOW, live={"step": 100, "time": t1})
    seen = out.status.deadline
    assert seen is not None and seen.stepSeconds is None
    assert seen.assessment is not None and "not measured" in seen.assessment
    j2 = deadline_job(out.status.model_dump(mode="json", exclude_none=True))
    out2 = plan(j2, [running], FREE, False, NOW, live={"step": 140, "time": t2})
    assert out2.status.deadline is not None and out2.status.deadline.stepSeconds == 0.5
    assert out2.status.deadline.finishBy == ts(NOW + timedelta(seconds=600))


def test_a_checkpoint_time_that_is_no_time_is_said_and_ignored() -> None:
    running = pod(1, "Running", False)
    j = deadline_job({"attempt": 1, "activePod": "a-1", "startTime": STARTED})
    out = plan(j, [running], FREE, False, NOW, live={"step": 100, "time": "yesterday"})
    assert out.status.deadline is not None and out.status.deadline.stepSeconds is None
    assert "not RFC 3339" in (out.status.deadline.assessment or "")


# -- spot free? ------------------------------------------------------------------------------

def test_a_spot_node_is_free_when_ready_schedulable_and_not_reclaimed() -> None:
    spec = deadline_job({}).spec
    assert spot_free(FREE.values(), spec)
    assert not spot_free(NONE_FREE.values(), spec)
    assert not spot_free([node("s", {SPOT: "spot"}, ready="False")], spec)
    assert not spot_free([node("s", {SPOT: "spot"}, unschedulable=True)], spec)
    tainted = node("s", {SPOT: "spot"}, taints=[{"key": "aws-node-termination-handler/spot-itn",
                                                 "effect": "NoSchedule"}])
    assert not spot_free([tainted], spec)
    # the job's own terms select its spot nodes
    mine = [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}]
    zoned = deadline_job({}, spot={"nodeSelectorTerms": mine}).spec
    assert spot_free([node("s", {"zone": "z1"})], zoned)
    assert not spot_free(FREE.values(), zoned)


def test_node_terms_match_as_the_scheduler_reads_them_and_malformed_ones_match_nothing() -> None:
    n = node("n1", {"gen": "5", "pool": "a"})
    assert node_matches(n, [{"matchExpressions": [{"key": "gen", "operator": "Gt",
                                                   "values": ["4"]}]}])
    assert not node_matches(n, [{"matchExpressions": [{"key": "gen", "operator": "Lt",
                                                       "values": ["x"]}]}])
    assert node_matches(n, [{"matchFields": [{"key": "metadata.name", "operator": "In",
                                              "values": ["n1"]}]}])
    assert node_matches(n, [{"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}])
    assert not node_matches(n, [{}, {"matchExpressions": "pool"}, "x",  # type: ignore[list-item]
                                {"matchExpressions": [{"operator": "Exists"}]}])


# -- the API ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("deadline", "words"),
    [
        ({"totalSteps": 10}, "exactly one of finishBy"),
        ({"totalSteps": 10, "withinSeconds": 60, "finishBy": "2026-01-01T00:00:00Z"},
         "exactly one of finishBy"),
        ({"totalSteps": 10, "finishBy": "tomorrow"}, "not an RFC 3339 time"),
        ({"totalSteps": 10, "finishBy": "2026-01-01T00:00:00"}, "not an RFC 3339 time"),
        ({"totalSteps": 0, "withinSeconds": 60}, "greater than or equal to 1"),
    ],
)
def test_a_deadline_the_operator_cannot_plan_for_is_refused(
    deadline: dict[str, Any], words: str
) -> None:
    body = {"template": {"spec": {"containers": [{"name": "t", "image": "i"}]}},
            "checkpoint": {"storage": {"uri": "s3://bucket/x"}}, "deadline": deadline}
    with pytest.raises(ValidationError, match=words):
        JobSpec.model_validate(body)


def test_a_finish_by_before_the_start_is_said_and_the_spot_rules_decide() -> None:
    j = job({"attempt": 1, "startTime": STARTED, "lastCheckpoint": {"step": 5},
             "deadline": {"finishBy": STARTED, "stepSeconds": 0.5}},
            deadline={"finishBy": ts(NOW - timedelta(seconds=500)), "totalSteps": 10})
    out = plan(j, [], NONE_FREE, False, NOW)
    assert out.create is not None and capacity(out.create) == "spot"
    assert out.status.deadline is not None
    assert "is not after the job's start" in out.status.deadline.reason
    assert out.status.deadline.reason.startswith("spot by default")


# -- the decisions ---------------------------------------------------------------------------

def test_first_attempt_runs_on_spot_until_the_step_time_is_measured() -> None:
    out = plan(deadline_job({}), [], NONE_FREE, False, NOW)
    assert out.create is not None and capacity(out.create) == "spot"
    seen = out.status.deadline
    assert seen is not None and seen.capacity == "spot" and "not measured" in seen.reason
    assert seen.reason.startswith("spot by default")
    assert seen.finishBy == ts(NOW + timedelta(seconds=1000))  # startTime = now


def test_behind_with_no_spot_free_the_next_attempt_starts_on_on_demand() -> None:
    st = status(100, attempt=2, phase="Restarting", preemptions=1)
    out = plan(deadline_job(st), [], NONE_FREE, False, NOW)
    assert out.create is not None and capacity(out.create) == "on-demand"
    assert out.status.onDemand and out.status.deadline is not None
    assert out.status.deadline.capacity == "on-demand"
    assert "behind while spot is short" in out.status.deadline.reason
    assert out.status.deadline.projectedFinish == ts(NOW + timedelta(seconds=460))
    assert out.status.deadline.slackSeconds == 140
    assert told(out) and "attempt 2 runs on on-demand" in told(out)[0]
    # ahead of the line it waits for spot; with spot free, behind is no reason to pay
    ahead = plan(deadline_job(status(600, attempt=2, phase="Restarting")), [], NONE_FREE,
                 False, NOW)
    assert ahead.create is not None and capacity(ahead.create) == "spot" and not told(ahead)
    free = plan(deadline_job(st), [], FREE, False, NOW)
    assert free.create is not None and capacity(free.create) == "spot"


def test_an_attempt_pending_on_spot_moves_to_on_demand_once_behind() -> None:
    waiting = pod(2, "Pending", False, conditions=[
        {"type": "PodScheduled", "status": "False", "message": "0/3 nodes are available"}])
    behind = plan(deadline_job(status(100, attempt=2, activePod="a-2")), [waiting], NONE_FREE,
                  False, NOW)
    assert behind.delete == ["a-2"] and behind.status.attempt == 3 and behind.status.onDemand
    assert told(behind) and "a-2 waits for spot" in told(behind)[0]
    # attempt 3 starts on on-demand, and its status still says why
    started = plan(deadline_job(behind.status.model_dump(mode="json", exclude_none=True)),
                   [], NONE_FREE, False, NOW)
    assert started.create is not None and capacity(started.create) == "on-demand"
    seen = started.status.deadline
    assert seen is not None and seen.reasonAttempt == 3 and seen.capacity == "on-demand"
    assert "behind while spot is short" in seen.reason
    assert (seen.assessment or "").startswith("behind while spot is short")
    # a spot node that looks free (it may be full) does not undo the move at the start
    flip = plan(deadline_job(behind.status.model_dump(mode="json", exclude_none=True)),
                [], FREE, False, NOW)
    assert flip.create is not None and capacity(flip.create) == "on-demand" and not told(flip)
    ahead = plan(deadline_job(status(600, attempt=2, activePod="a-2")), [waiting], NONE_FREE,
                 False, NOW)
    assert ahead.delete == [] and ahead.status.attempt == 2 and not ahead.status.onDemand
    assert ahead.status.deadline is not None
    assert "waiting for spot" in (ahead.status.deadline.assessment or "")
    assert ahead.requeue_after is not None and ahead.requeue_after <= 10


def test_an_on_demand_attempt_goes_back_to_spot_saving_first_and_it_is_no_preemption() -> None:
    running = pod(3, "Running", True)
    st = status(100, attempt=3, activePod="a-3", onDemand=True, preemptions=1)
    st["deadline"]["reason"] = "behind while spot is short (when attempt 3 started)"
    stay = plan(deadline_job(st), [running], NONE_FREE, False, NOW)  # spot still short
    assert stay.delete == [] and not told(stay)
    assert stay.status.deadline is not None
    assert stay.status.deadline.reason == st["deadline"]["reason"]  # why it runs there
    assert (stay.status.deadline.assessment or "").startswith("staying on on-demand")
    fresh = plan(deadline_job(st), [running], FREE, False, NOW)  # nothing of its own saved
    assert fresh.delete == [] and not told(fresh)
    assert fresh.status.deadline is not None
    assert "once a-3 has saved a checkpoint" in (fresh.status.deadline.assessment or "")
    st["deadline"]["sample"] = {"attempt": 3, "step": 100, "time": ts(NOW)}
    back = plan(deadline_job(st), [running], FREE, False, NOW)
    assert back.delete == ["a-3"] and back.status.attempt == 3
    assert back.status.deadline is not None and back.status.deadline.moving == 3
    assert back.status.deadline.capacity == "spot"
    assert told(back) and "a-3 on on-demand gets SIGTERM and saves" in told(back)[0]
    assert "back to spot" in told(back)[0]
    # its end: deleted by the operator, the trainer saved and exited 0
    ended = pod(3, "Succeeded", True, **{k: v for k, v in ended_pod(3, "Succeeded", 0)
                                          ["status"].items() if k != "phase"})
    ended["metadata"]["deletionTimestamp"] = ts(NOW)
    later = deadline_job(back.status.model_dump(mode="json", exclude_none=True))
    out = plan(later, [ended], FREE, False, NOW)
    assert out.status.preemptions == 1 and out.status.failures == 0
    assert out.status.attempt == 4 and not out.status.onDemand
    assert out.create is not None and capacity(out.create) == "spot"
    assert any("stopped for the deadline" in m for m in told(out))
    assert out.status.deadline is not None and out.status.deadline.moving is None


def test_a_spot_attempt_moves_to_on_demand_when_only_on_demand_makes_it() -> None:
    running = pod(1, "Running", False)
    late = plan(deadline_job(status(0, attempt=1, activePod="a-1")), [running], FREE, False,
                NOW + timedelta(seconds=100))  # 500 s of work, 500 s left, a restart: late
    assert late.delete == ["a-1"] and late.status.deadline is not None
    assert late.status.deadline.reason.startswith("must")
    assert late.status.deadline.capacity == "on-demand"
    on_track = plan(deadline_job(status(300, attempt=1, activePod="a-1")), [running], NONE_FREE,
                    False, NOW)  # behind the line, but it runs: spot is not short for it
    assert on_track.delete == [] and not told(on_track)


def test_the_deadline_brings_a_fallback_back_to_spot_when_it_is_ahead() -> None:
    st = status(100, attempt=3, phase="Restarting", onDemand=True, consecutivePreemptions=2)
    out = plan(deadline_job(st, spot={"fallbackToOnDemandAfter": 2}), [], FREE, False, NOW)
    assert out.create is not None and capacity(out.create) == "spot"
    assert told(out) and "back to spot" in told(out)[0]
    without = plan(job(st, spot={"fallbackToOnDemandAfter": 2}), [], FREE, False, NOW)
    assert without.create is not None and capacity(without.create) == "on-demand"


def test_a_job_the_deadline_brought_back_to_spot_is_not_fallen_back_at_each_preemption() -> None:
    st = status(100, attempt=4, activePod="a-4", phase="Running", consecutivePreemptions=2)
    preempted = ended_pod(4, "Succeeded", 0, disrupted=True)
    spot = {"fallbackToOnDemandAfter": 2}
    out = plan(deadline_job(st, spot=spot), [preempted], FREE, False, NOW)
    assert out.status.preemptions == 1 and not out.status.onDemand
    assert not [r for _, r, _ in out.events if r == "FallbackToOnDemand"]
    # without a deadline the fallback acts as before
    plain = plan(job(st, spot=spot), [preempted], FREE, False, NOW)
    assert plain.status.onDemand
    assert [r for _, r, _ in plain.events if r == "FallbackToOnDemand"]


def test_a_pending_timeout_move_stands_at_the_next_attempts_start() -> None:
    waiting = pod(2, "Pending", False, conditions=[
        {"type": "PodScheduled", "status": "False", "message": "0/3 nodes are available"}])
    spot = {"pendingTimeoutSeconds": 30}  # the pod was made 60 s ago; the job is ahead
    out = plan(deadline_job(status(600, attempt=2, activePod="a-2"), spot=spot), [waiting],
               FREE, False, NOW)
    assert out.delete == ["a-2"] and out.status.attempt == 3 and out.status.onDemand
    start = plan(deadline_job(out.status.model_dump(mode="json", exclude_none=True), spot=spot),
                 [], FREE, False, NOW)  # a spot node looks free (it may be full)
    assert start.create is not None and capacity(start.create) == "on-demand"
    assert start.status.deadline is not None and not told(start)
    assert start.status.deadline.reason.startswith("spot.pendingTimeoutSeconds: a-2 pending")


def test_a_step_past_total_steps_is_said_and_the_spot_rules_decide() -> None:
    running = pod(1, "Running", False)  # late enough that "must" would send it to on-demand
    out = plan(deadline_job(status(1500, attempt=1, activePod="a-1")), [running], FREE, False,
               NOW + timedelta(seconds=100))
    assert out.delete == [] and not told(out) and out.status.deadline is not None
    assert "step 1500 is past spec.deadline.totalSteps 1000" in (
        out.status.deadline.assessment or "")


def test_the_projection_is_not_rewritten_every_pass() -> None:
    running = pod(1, "Running", False)
    j = deadline_job(status(300, attempt=1, activePod="a-1"))
    first = plan(j, [running], FREE, False, NOW)
    again = deadline_job(first.status.model_dump(mode="json", exclude_none=True))
    later = plan(again, [running], FREE, False, NOW + timedelta(seconds=5))
    assert later.status.deadline == first.status.deadline  # no status patch, no new pass
    much_later = plan(again, [running], FREE, False, NOW + timedelta(seconds=40))
    assert much_later.status.deadline != first.status.deadline


def test_reasons_whose_figures_change_by_the_second_do_not_rewrite_the_status() -> None:
    late = NOW + timedelta(seconds=100)  # "must: on-demand finishes Ns after the deadline"
    on_demand = status(0, attempt=2, activePod="a-2", onDemand=True)
    first = plan(deadline_job(on_demand), [pod(2, "Running", True)], FREE, False, late)
    assert first.status.deadline is not None
    assert (first.status.deadline.assessment or "").startswith("must")
    again = deadline_job(first.status.model_dump(mode="json", exclude_none=True))
    later = plan(again, [pod(2, "Running", True)], FREE, False, late + timedelta(seconds=10))
    assert later.status.deadline == first.status.deadline
    # waiting for the on-demand attempt's own checkpoint before going back to spot
    st = status(100, attempt=3, activePod="a-3", onDemand=True)
    wait = plan(deadline_job(st), [pod(3, "Running", True)], FREE, False, NOW)
    assert wait.status.deadline is not None
    assert "once a-3 has saved" in (wait.status.deadline.assessment or "")
    kept = deadline_job(wait.status.model_dump(mode="json", exclude_none=True))
    next_pass = plan(kept, [pod(3, "Running", True)], FREE, False, NOW + timedelta(seconds=10))
    assert next_pass.status.deadline == wait.status.deadline


def test_finish_by_margin_and_restart_seconds_move_the_decision() -> None:
    st = status(300, attempt=2, phase="Restarting")
    # 700 steps x 0.5 s = 350 s of work, 10 s restart, deadline in 600 s: 240 s of slack
    plain = plan(deadline_job(st), [], FREE, False, NOW)
    assert plain.create is not None and capacity(plain.create) == "spot"
    assert plain.status.deadline is not None and plain.status.deadline.slackSeconds == 240
    # the margin keeps 250 s free: on-demand now
    kept = plan(job(st, deadline={**DEADLINE, "marginSeconds": 250}), [], FREE, False, NOW)
    assert kept.create is not None and capacity(kept.create) == "on-demand"
    assert kept.status.deadline is not None and kept.status.deadline.reason.startswith("must")
    # a restart of 250 s leaves no slack either, and moves the projected finish
    slow = plan(job(st, deadline={**DEADLINE, "restartSeconds": 250}), [], FREE, False, NOW)
    assert slow.create is not None and capacity(slow.create) == "on-demand"
    assert slow.status.deadline is not None
    assert slow.status.deadline.projectedFinish == ts(NOW + timedelta(seconds=600))
    # finishBy: an absolute deadline, 100 s from now: late whatever it runs on
    by = ts(NOW + timedelta(seconds=100))
    soon = plan(job(st, deadline={"finishBy": by, "totalSteps": 1000, "restartSeconds": 10}),
                [], FREE, False, NOW)
    assert soon.status.deadline is not None and soon.status.deadline.finishBy == by
    assert "after the deadline" in soon.status.deadline.reason
    assert soon.create is not None and capacity(soon.create) == "on-demand"


@pytest.mark.parametrize("bad", [-1.0, 0.0, float("nan"), float("inf")])
def test_a_step_time_in_the_status_that_is_no_step_time_is_measured_again(bad: float) -> None:
    st = status(100, attempt=2, phase="Restarting")
    st["deadline"]["stepSeconds"] = bad
    out = plan(deadline_job(st), [], NONE_FREE, False, NOW)
    assert out.create is not None and capacity(out.create) == "spot"  # spot.* decides
    seen = out.status.deadline
    assert seen is not None and seen.stepSeconds is None
    assert "is no step time: measured again" in (seen.assessment or "")


def test_a_warm_started_pod_does_not_take_the_save_before_it_started_as_its_own() -> None:
    # attempt 2's pod was made at the notice (60 s ago) and pended; attempt 1's final save
    # landed 55 s ago, attempt 2 started 20 s ago: that save is not a sample of attempt 2
    running = pod(2, "Running", False, startTime=ts(NOW - timedelta(seconds=20)))
    j = deadline_job({"attempt": 2, "activePod": "a-2", "startTime": STARTED})
    out = plan(j, [running], FREE, False, NOW,
               live={"step": 54, "time": ts(NOW - timedelta(seconds=55))})
    assert out.status.deadline is not None and out.status.deadline.sample is None
    again = deadline_job(out.status.model_dump(mode="json", exclude_none=True))
    out2 = plan(again, [running], FREE, False, NOW,
                live={"step": 60, "time": ts(NOW - timedelta(seconds=5))})
    assert out2.status.deadline is not None and out2.status.deadline.stepSeconds is None
    assert out2.status.deadline.sample is not None
    assert (out2.status.deadline.sample.attempt, out2.status.deadline.sample.step) == (2, 60)
    # a pod not started yet measures nothing
    pending = pod(2, "Pending", False)
    out3 = plan(again, [pending], FREE, False, NOW,
                live={"step": 60, "time": ts(NOW - timedelta(seconds=5))})
    assert out3.status.deadline is not None and out3.status.deadline.sample is None


# -- the restart cost ------------------------------------------------------------------------

def restarted(step: int = 300) -> dict[str, Any]:
    """Attempt 2 starts after attempt 1 saved ``step`` 100 s ago: the status it gets."""
    st = status(step, attempt=2, phase="Restarting")
    st["lastCheckpoint"]["time"] = ts(NOW - timedelta(seconds=100))
    out = plan(deadline_job(st), [], FREE, False, NOW)
    assert out.create is not None
    return out.status.model_dump(mode="json", exclude_none=True)


def test_the_operator_measures_the_restart_from_the_restarted_attempts_first_checkpoint() -> None:
    st = restarted()
    assert st["deadline"]["resumed"] == {"attempt": 2, "step": 300,
                                         "time": ts(NOW - timedelta(seconds=100))}
    running = pod(2, "Running", False)  # made 60 s ago
    # the sidecar reports the checkpoint it restored: nothing measured yet
    out = plan(deadline_job(st), [running], FREE, False, NOW,
               live={"step": 300, "time": ts(NOW - timedelta(seconds=100))})
    seen = out.status.deadline
    assert seen is not None and seen.restartSeconds is None and seen.resumed is not None
    # its first own checkpoint, step 340, 50 s after the pod was made; 40 steps of 0.5 s
    again = deadline_job(out.status.model_dump(mode="json", exclude_none=True))
    out2 = plan(again, [running], FREE, False, NOW,
                live={"step": 340, "time": ts(NOW - timedelta(seconds=10))})
    seen = out2.status.deadline
    assert seen is not None and seen.restartSeconds == 30.0 and seen.restartReadings == [30.0]
    assert seen.resumed is None  # measured once per restart
    # the next restart, quicker, is a reading; the rule keeps the largest of the newest
    st3 = out2.status.model_dump(mode="json", exclude_none=True)
    st3.update(attempt=3, phase="Restarting", activePod=None)
    out3 = plan(deadline_job(st3), [], FREE, False, NOW)
    st3 = out3.status.model_dump(mode="json", exclude_none=True)
    assert st3["deadline"]["resumed"]["step"] == 340
    third = pod(3, "Running", False)
    third["metadata"]["creationTimestamp"] = ts(NOW + timedelta(seconds=10))
    # step 400 40 s after its pod was made, 30 s of it training: 10 s
    out4 = plan(deadline_job(st3), [third], FREE, False, NOW + timedelta(seconds=60),
                live={"step": 400, "time": ts(NOW + timedelta(seconds=50))})
    seen = out4.status.deadline
    assert seen is not None and seen.restartReadings == [30.0, 10.0]
    assert seen.restartSeconds == 30.0


def test_a_warm_started_restart_counts_from_the_save_of_the_attempt_before() -> None:
    # attempt 2's pod was made at the notice (60 s ago) while attempt 1 trained on and saved
    # step 320 30 s ago: that save is what attempt 2 restores, and its restart counts from it
    st = restarted()
    st["draining"] = [{"attempt": 1, "pod": "a-1", "until": ts(NOW + timedelta(seconds=30))}]
    old = pod(1, "Running", False)
    old["metadata"]["deletionTimestamp"] = ts(NOW + timedelta(seconds=30))
    new = pod(2, "Running", False)
    out = plan(deadline_job(st), [old, new], FREE, False, NOW,
               live={"step": 320, "time": ts(NOW - timedelta(seconds=30))})
    seen = out.status.deadline
    assert seen is not None and seen.restartSeconds is None and seen.resumed is not None
    assert (seen.resumed.step, seen.resumed.time) == (320, ts(NOW - timedelta(seconds=30)))
    st2 = out.status.model_dump(mode="json", exclude_none=True)
    st2.pop("draining")  # attempt 1's end folded
    out2 = plan(deadline_job(st2), [new], FREE, False, NOW,
                live={"step": 340, "time": ts(NOW - timedelta(seconds=10))})
    # 20 s after that save, 20 steps of 0.5 s trained: 10 s (from the pod's creation: 40 s)
    assert out2.status.deadline is not None and out2.status.deadline.restartSeconds == 10.0
    assert out2.status.deadline.stepSeconds == 0.5  # that save is no step-time sample either


def old_attempt_ended(step: int, durable: str) -> dict[str, Any]:
    """Attempt 1's pod once its final save ``step`` was durable at ``durable`` and it ended."""
    old = pod(1, "Succeeded", False)
    report = {"step": step, "finalSaved": True, "uri": "s3://b/j/x", "time": durable}
    old["status"]["containerStatuses"] = [
        {"name": "trainer", "state": {"terminated": {"exitCode": 0, "finishedAt": durable}}}]
    old["status"]["initContainerStatuses"] = [{"name": builders.SIDECAR, "state": {
        "terminated": {"exitCode": 0, "message": json.dumps(report)}}}]
    return old


def test_a_warm_starts_final_save_learnt_from_the_old_pods_end_is_what_the_new_one_restored(
) -> None:
    # attempt 1's final save (step 320, 30 s ago) is folded in from its ended pod before any
    # live report of attempt 2 named it: it is what attempt 2 restored, not its first own
    st = restarted()
    st["draining"] = [{"attempt": 1, "pod": "a-1", "until": ts(NOW + timedelta(seconds=30))}]
    durable = ts(NOW - timedelta(seconds=30))
    new = pod(2, "Running", False)
    out = plan(deadline_job(st), [old_attempt_ended(320, durable), new], FREE, False, NOW,
               live={"step": 320, "time": durable})
    seen = out.status.deadline
    assert not out.status.draining and out.status.lastCheckpoint is not None
    assert out.status.lastCheckpoint.step == 320
    assert seen is not None and seen.restartReadings is None and seen.sample is None
    assert seen.resumed is not None and seen.resumed.step == 320
    out2 = plan(deadline_job(out.status.model_dump(mode="json", exclude_none=True)), [new],
                FREE, False, NOW, live={"step": 340, "time": ts(NOW - timedelta(seconds=10))})
    # 20 s after that save, 20 steps of 0.5 s: 10 s (the bug read 20 s at step 320)
    assert out2.status.deadline is not None and out2.status.deadline.restartReadings == [10.0]


def test_time_pending_for_capacity_is_not_counted_as_the_restart() -> None:
    # the pod was made 60 s ago and bound 40 s ago (20 s waiting for a node); step 340 10 s
    # ago, 40 steps of 0.5 s: 10 s of restart from the binding (30 s from the creation)
    running = pod(2, "Running", False)
    running["status"]["conditions"] = [{"type": "PodScheduled", "status": "True",
                                        "lastTransitionTime": ts(NOW - timedelta(seconds=40))}]
    out = plan(deadline_job(restarted()), [running], FREE, False, NOW,
               live={"step": 340, "time": ts(NOW - timedelta(seconds=10))})
    assert out.status.deadline is not None and out.status.deadline.restartReadings == [10.0]


def test_an_old_attempt_kept_past_its_notice_does_not_hide_the_new_ones_checkpoint() -> None:
    # attempt 1's entry is kept up to a minute past its notice's end (its pod has not said
    # how it ended): a checkpoint durable after that end is attempt 2's own and measures
    st = restarted()
    st["draining"] = [{"attempt": 1, "pod": "a-1", "until": ts(NOW - timedelta(seconds=20))}]
    old = pod(1, "Running", False)
    old["metadata"]["deletionTimestamp"] = ts(NOW - timedelta(seconds=20))
    out = plan(deadline_job(st), [old, pod(2, "Running", False)], FREE, False, NOW,
               live={"step": 340, "time": ts(NOW - timedelta(seconds=10))})
    assert out.status.draining  # still waiting for the old pod's end
    assert out.status.deadline is not None and out.status.deadline.restartReadings == [30.0]


def test_a_restart_that_makes_no_sense_is_said_and_not_used() -> None:
    # step 340 durable 5 s after the pod was made: 40 steps of 0.5 s cannot fit
    out = plan(deadline_job(restarted()), [pod(2, "Running", False)], FREE, False, NOW,
               live={"step": 340, "time": ts(NOW - timedelta(seconds=55))})
    seen = out.status.deadline
    assert seen is not None and seen.restartSeconds is None and seen.resumed is None
    assert "negative cost" in (seen.assessment or "") and "ignored" in (seen.assessment or "")


def test_the_measured_restart_moves_the_decision_in_place_of_the_spec() -> None:
    # the spec says 10 s a restart: 240 s of slack, spot; a measured 250 s leaves none
    st = status(300, attempt=2, phase="Restarting")
    st["deadline"].update(restartSeconds=250.0, restartReadings=[250.0])
    slow = plan(deadline_job(st), [], FREE, False, NOW)
    assert slow.create is not None and capacity(slow.create) == "on-demand"
    assert slow.status.deadline is not None and slow.status.deadline.reason.startswith("must")
    assert slow.status.deadline.projectedFinish == ts(NOW + timedelta(seconds=600))
    # measured quicker than the spec says: the measured one counts (more slack)
    st["deadline"].update(restartSeconds=2.0, restartReadings=[2.0])
    quick = plan(job(st, deadline={**DEADLINE, "restartSeconds": 200}), [], FREE, False, NOW)
    assert quick.status.deadline is not None and quick.status.deadline.slackSeconds == 248


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_a_restart_cost_in_the_status_that_is_no_cost_is_measured_again(bad: float) -> None:
    st = status(100, attempt=2, phase="Restarting")
    st["deadline"].update(restartSeconds=bad, restartReadings=[5.0])
    out = plan(deadline_job(st), [], NONE_FREE, False, NOW)
    assert out.create is not None and capacity(out.create) == "spot"  # spot.* decides
    seen = out.status.deadline
    assert seen is not None and seen.restartSeconds is None and seen.restartReadings is None
    assert "is no restart cost: measured again" in (seen.assessment or "")
