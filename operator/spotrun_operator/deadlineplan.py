"""spec.deadline in the planner: the rule of ``deadline.py`` asked at each decision point, its
answer written to ``status.deadline`` and acted on.

- ``measure``: a running attempt's durable checkpoints give the step time (two of one attempt)
  and, in a restarted attempt, the restart's cost (``measure_restart``: status.deadline.resumed
  says where it resumed from; the rule then uses status.deadline.restartSeconds in place of
  spec.deadline.restartSeconds);
- ``at_start``: the capacity of a new attempt (``status.onDemand``);
- ``while_pending``: an attempt pending on spot moves to on-demand when the rule says so;
- ``while_running``: a running attempt whose capacity the rule no longer wants is stopped
  gracefully (it saves on SIGTERM, like suspend); its end is recorded as moved, neither a
  preemption nor a failure (``outcomes.py``), and the next attempt starts at once on the other
  capacity, restoring that save. An on-demand attempt goes back to spot only once it has
  saved a checkpoint of its own (before, the move would waste the restart it just paid).

Spot is *short* when the attempt pends on spot or no spot node is free (``spot_free``: a Ready,
schedulable node matching the spot terms, without an interruption taint). A node that is free
by these signs but full makes the next spot attempt pend: the pending rule then decides again.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from . import models as m
from .builders import SPOT_LABELS
from .deadline import (
    RESTART_READINGS,
    Capacity,
    Choice,
    Progress,
    Resumed,
    Sample,
    choose,
    measure,
    measure_restart,
    restart_cost,
)
from .plan import Planner
from .podstate import Obj, condition, interruption_taint, node_health, parse_ts, ts
from .reasons import POD_SCHEDULED

REWRITE_SECONDS = 30.0  # status.deadline's projection is rewritten when it moved this much
WAITING = "; once "  # an assessment's tail while a move waits for the attempt's checkpoint


def _shape(text: str) -> str:
    """What a reason says, without its figures (seconds, steps): two passes that say the same
    thing about different numbers do not rewrite the status."""
    return re.sub(r"-?\d+(?:\.\d+)?", "#", text)


def _default_terms() -> list[dict[str, Any]]:
    return [
        {"matchExpressions": [{"key": k, "operator": "In", "values": [v]}]}
        for k, v in SPOT_LABELS
    ]


def _requirement_holds(req: Any, fields: dict[str, str]) -> bool:
    """A core/v1 NodeSelectorRequirement against a node's labels (or fields); a malformed one
    holds for no node."""
    if not isinstance(req, dict) or not isinstance(req.get("key"), str):
        return False
    key, op, values = req["key"], req.get("operator"), req.get("values") or []
    if not isinstance(values, list):
        return False
    have = fields.get(key)
    if op == "In":
        return have is not None and have in values
    if op == "NotIn":
        return have is None or have not in values
    if op == "Exists":
        return have is not None
    if op == "DoesNotExist":
        return have is None
    if op in ("Gt", "Lt") and len(values) == 1 and have is not None:
        try:
            a, b = int(have), int(values[0])
        except ValueError:
            return False
        return a > b if op == "Gt" else a < b
    return False


def node_matches(node: Obj, terms: list[dict[str, Any]]) -> bool:
    """Whether the node satisfies any term (ORed; a term's requirements ANDed)."""
    meta = node.get("metadata") if isinstance(node.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    raw = meta.get("labels")
    labels = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
    fields = {"metadata.name": str(meta.get("name", ""))}
    for term in terms:
        if not isinstance(term, dict):
            continue
        exprs = term.get("matchExpressions") or []
        by_field = term.get("matchFields") or []
        if not (exprs or by_field) or not isinstance(exprs, list) or not isinstance(by_field, list):
            continue
        if all(_requirement_holds(r, labels) for r in exprs) and all(
            _requirement_holds(r, fields) for r in by_field
        ):
            return True
    return False


def spot_free(nodes: Iterable[Obj], spec: m.JobSpec) -> bool:
    """A spot node the job could run on now: matching the spot terms, Ready, schedulable, not
    tainted for interruption."""
    terms = spec.spot.nodeSelectorTerms or _default_terms()
    for node in nodes:
        node_spec = node.get("spec") if isinstance(node.get("spec"), dict) else {}
        assert isinstance(node_spec, dict)
        if node_spec.get("unschedulable") or interruption_taint(node) is not None:
            continue
        if node_health(node) == "ready" and node_matches(node, terms):
            return True
    return False


def finish_by(spec: m.DeadlineSpec, started: datetime) -> datetime:
    """The deadline: finishBy, or startTime + withinSeconds."""
    if spec.finishBy is not None:
        when = m.parse_time(spec.finishBy)
        assert when is not None  # the model refuses one that does not parse
        return when
    return started + timedelta(seconds=spec.withinSeconds or 0)


def _status(p: Planner) -> m.DeadlineStatus | None:
    """status.deadline, made when the job has a deadline (None: it has none)."""
    spec = p.spec.deadline
    if spec is None:
        p.st.deadline = None
        return None
    started = parse_ts(p.st.startTime) or p.now
    when = ts(finish_by(spec, started))
    if p.st.deadline is None:
        p.st.deadline = m.DeadlineStatus(finishBy=when)
    p.st.deadline.finishBy = when
    return p.st.deadline


def progress(p: Planner) -> Progress | str:
    """What the rule needs, or why the operator cannot ask it yet."""
    spec, st = p.spec.deadline, p.st
    seen = _status(p)
    assert spec is not None and seen is not None
    if seen.stepSeconds is not None and not 0 < seen.stepSeconds < math.inf:
        bad, seen.stepSeconds, seen.sample = seen.stepSeconds, None, None
        return f"status.deadline.stepSeconds {bad} is no step time: measured again"
    if seen.stepSeconds is None:
        return "step time not measured yet (two checkpoints of one attempt): spot.* decides"
    done = st.lastCheckpoint.step if st.lastCheckpoint and st.lastCheckpoint.step else 0
    if done < 0:
        return f"the newest checkpoint's step {done} is negative: ignored, spot.* decides"
    if done > spec.totalSteps:
        return (
            f"the newest checkpoint's step {done} is past spec.deadline.totalSteps "
            f"{spec.totalSteps}: the remaining work is unknown, spot.* decides; set totalSteps "
            "to the job's whole work"
        )
    started = parse_ts(st.startTime) or p.now
    deadline = finish_by(spec, started)
    restart = seen.restartSeconds
    if restart is not None and not 0 <= restart < math.inf:
        seen.restartSeconds, seen.restartReadings = None, None
        return f"status.deadline.restartSeconds {restart} is no restart cost: measured again"
    try:
        return Progress(
            now=p.now.timestamp(),
            start=started.timestamp(),
            deadline=deadline.timestamp(),
            total_steps=spec.totalSteps,
            done_steps=done,
            step_seconds=seen.stepSeconds,
            restart_seconds=float(spec.restartSeconds if restart is None else restart),
            margin_seconds=float(spec.marginSeconds),
        )
    except ValueError:
        return (
            f"spec.deadline.finishBy {ts(deadline)} is not after the job's start "
            f"{ts(started)}: the deadline cannot be planned for; set a later finishBy"
        )


def decide(p: Planner, current: Capacity | None, spot_short: bool) -> Choice | None:
    """Ask the rule; write its answer (or why there is none) to status.deadline."""
    got = progress(p)
    seen = p.st.deadline
    assert seen is not None
    if isinstance(got, str):
        seen.assessment = got
        return None
    choice = choose(got, current, spot_short)
    finish = datetime.fromtimestamp(choice.projected_finish, tz=p.now.tzinfo)
    old = parse_ts(seen.projectedFinish) if seen.projectedFinish else None
    moved = old is None or abs((finish - old).total_seconds()) >= REWRITE_SECONDS
    said = (seen.assessment or "").split(WAITING)[0]
    if moved or _shape(said) != _shape(choice.reason):  # each kind of reason names a capacity
        # rewritten when it says something new: a pass every 10 s would rewrite it each time
        # (the slack and the steps in the reason change by the second)
        seen.projectedFinish = ts(finish.replace(microsecond=0))
        seen.slackSeconds = round(choice.slack_seconds, 1)
        seen.assessment = choice.reason[:1024]
    return choice


def _say(p: Planner, choice: Choice, what: str, attempt: int) -> None:
    """The capacity of ``attempt`` changes because of the deadline: status and an Event say
    so."""
    seen = p.st.deadline
    assert seen is not None
    seen.capacity = choice.capacity
    seen.reason = choice.reason[:1024]
    seen.reasonAttempt = attempt
    p.event(m.REASON_DEADLINE_CAPACITY, f"{what}: {choice.reason}; projected finish on "
            f"on-demand {seen.projectedFinish}, deadline {seen.finishBy}")


def at_start(p: Planner) -> None:
    """A new attempt: its capacity (status.onDemand), when the rule can decide; status.deadline
    says what it runs on and why."""
    seen = _status(p)
    if seen is None or not p.spec.spot.enabled:
        return
    st = p.st
    seen.moving = None  # an attempt stopped for a move has ended, however it ended
    _resumes(seen, st)
    if seen.reasonAttempt == st.attempt:
        # a move made this attempt's capacity and said why: it stands (asking again at once
        # would undo it: a spot node that looks free may be full, and a pending spot
        # attempt moved to on-demand would be moved straight back, every other pass)
        seen.capacity = "on-demand" if st.onDemand else "spot"
        return
    current: Capacity | None = "on-demand" if st.onDemand else None
    choice = decide(p, current, spot_short=p.spot_free is False)
    if choice is not None and (choice.capacity == "on-demand") != st.onDemand:
        st.onDemand = choice.capacity == "on-demand"
        _say(p, choice, f"attempt {st.attempt} runs on {choice.capacity} nodes", st.attempt)
        return
    seen.capacity = "on-demand" if st.onDemand else "spot"
    seen.reasonAttempt = st.attempt
    if choice is not None:
        seen.reason = choice.reason[:1024]
    else:
        rules = "spot.* put it there" if st.onDemand else "spot by default"
        seen.reason = f"{rules}: {seen.assessment}"[:1024]


def _resumes(seen: m.DeadlineStatus, st: m.JobStatus) -> None:
    """A restarted attempt (2, 3, ...) starts: its restart is measured from the newest durable
    checkpoint now (the one the pod's SPOTRUN_EXPECTED_STEP names) until it saves its own."""
    if st.attempt < 2:
        seen.resumed = None
    elif seen.resumed is None or seen.resumed.attempt != st.attempt:
        ref = st.lastCheckpoint
        step = ref.step if ref is not None and ref.step is not None else 0
        seen.resumed = m.DeadlineResume(attempt=st.attempt, step=max(0, step),
                                        time=ref.time if ref is not None else None)


def placed_by_spot_rules(p: Planner, attempt: int, why: str) -> None:
    """spot.* moved ``attempt`` to on-demand (pendingTimeoutSeconds): for a deadline job that
    move stands at the attempt's start like the rule's own (else a spot node that looks free
    but is full would send it straight back, to pend out the timeout again); the running
    attempt may still go back to spot once it saved a checkpoint (``while_running``)."""
    seen = _status(p)
    if seen is None:
        return
    seen.capacity = "on-demand"
    seen.reason = why[:1024]
    seen.reasonAttempt = attempt


def while_pending(p: Planner, pod: Obj) -> bool:
    """An attempt pending on spot for want of capacity: on-demand when the rule says so.
    True when it moved (the pod is deleted and the next attempt is on-demand)."""
    if p.spec.deadline is None or p.st.onDemand or not p.spec.spot.enabled:
        return False
    p.plan.requeue(10.0)  # the line moves on while it waits
    seen = _status(p)
    assert seen is not None
    seen.capacity = "spot"
    choice = decide(p, None, spot_short=True)
    if choice is None or choice.capacity != "on-demand":
        return False
    name = pod["metadata"]["name"]
    p.st.onDemand = True
    _say(p, choice, f"{name} waits for spot: attempt {p.st.attempt + 1} runs on on-demand nodes",
         p.st.attempt + 1)
    p.plan.delete.append(name)
    p.advance(0)
    return True


def while_running(p: Planner, pod: Obj, capacity: Capacity) -> bool:
    """A running single-pod attempt on ``capacity``: when the rule wants the other one, the pod
    is stopped (it saves) and the next attempt runs there. True when it stopped it."""
    if p.spec.deadline is None or not p.spec.spot.enabled or pod["metadata"].get(
        "deletionTimestamp"
    ):
        return False
    if (pod.get("status") or {}).get("phase") != "Running":
        return False
    p.plan.requeue(10.0)
    seen = _status(p)
    assert seen is not None
    seen.capacity = capacity
    spot_short = capacity == "on-demand" and p.spot_free is False
    choice = decide(p, capacity, spot_short)
    if choice is None or choice.capacity == capacity:
        return False
    st = p.st
    name = pod["metadata"]["name"]
    if choice.capacity == "spot" and (seen.sample is None or seen.sample.attempt != st.attempt):
        # leaving before it saved a checkpoint of its own would waste the restart just paid
        waiting = f"{choice.reason[:900]}{WAITING}{name} has saved a checkpoint"
        if _shape(seen.assessment or "") != _shape(waiting):
            seen.assessment = waiting
        return False
    seen.moving = st.attempt
    _say(p, choice, f"{name} on {capacity} gets SIGTERM and saves; attempt {st.attempt + 1} "
         f"runs on {choice.capacity} nodes", st.attempt + 1)
    p.plan.delete.append(name)
    return True


def measure_step_time(p: Planner, pod: Obj) -> None:
    """The running attempt's newest durable checkpoint (status.lastCheckpoint, as just read
    from its sidecar) measures the step time; a bad reading is said in the reason."""
    seen = _status(p)
    ref = p.st.lastCheckpoint
    if seen is None or ref is None or ref.step is None or ref.time is None:
        return
    when = m.parse_time(ref.time)
    # when the pod started, not when it was made: a warm-started pod pends while the attempt
    # before it saves, and that attempt's final save is not this one's step
    started = m.parse_time(str((pod.get("status") or {}).get("startTime") or ""))
    if started is None:
        return  # not started yet: nothing of its own to measure
    if when is None:
        seen.assessment = (
            f"checkpoint step {ref.step}'s time {ref.time!r} is not RFC 3339: ignored"
        )
        return
    if _measure_restart(p, pod, Sample(p.st.attempt, ref.step, when.timestamp()), ref.time):
        return  # the checkpoint it restored, saved after it began (a warm start): no sample
    kept = seen.sample
    old = None
    if kept is not None and (at := m.parse_time(kept.time)) is not None:
        old = Sample(kept.attempt, kept.step, at.timestamp())
    got = measure(old, Sample(p.st.attempt, ref.step, when.timestamp()), started.timestamp(),
                  p.now.timestamp(), seen.stepSeconds)
    if got.problem is not None:
        seen.assessment = got.problem[:1024]
    if got.sample is not None and got.sample != old:
        s = got.sample
        seen.sample = m.DeadlineSample(attempt=s.attempt, step=s.step,
                                       time=ts(datetime.fromtimestamp(s.time, tz=p.now.tzinfo)))
    if got.step_seconds is not None and math.isfinite(got.step_seconds):
        seen.stepSeconds = round(got.step_seconds, 6)


def _measure_restart(p: Planner, pod: Obj, seen_at: Sample, seen_time: str) -> bool:
    """The restarted attempt's checkpoint ``seen_at``: the one it restored (status.deadline.
    resumed moves to it; True) or its own, the first of which measures the restart
    (restartReadings, restartSeconds) once the step time is known; a bad reading is said in
    the assessment."""
    seen = p.st.deadline
    assert seen is not None
    resumed = seen.resumed
    begun = restart_began(pod)
    if resumed is None or resumed.attempt != p.st.attempt or begun is None:
        return False
    at = m.parse_time(resumed.time) if resumed.time else None
    old = Resumed(resumed.step, at.timestamp() if at is not None else None)
    got = measure_restart(
        old,
        seen_at,
        begun.timestamp(),
        p.now.timestamp(),
        seen.stepSeconds,
        earlier_saving=earlier_saving(p.st.draining, seen_at.time),
    )
    if got.problem is not None:
        seen.assessment = got.problem[:1024]
    if got.seconds is not None and math.isfinite(got.seconds):
        readings = [*(seen.restartReadings or []), round(got.seconds, 1)][-RESTART_READINGS:]
        seen.restartReadings, seen.restartSeconds = readings, restart_cost(readings)
    if got.resumed is None:
        seen.resumed = None
        return False
    if got.resumed != old:  # the checkpoint seen is the one it restored
        seen.resumed = m.DeadlineResume(attempt=resumed.attempt, step=seen_at.step,
                                        time=seen_time)
    return got.resumed.step == seen_at.step


def restart_began(pod: Obj) -> datetime | None:
    """When a restarted attempt's pod was bound to a node (its creation while the condition is
    not there): time spent pending for capacity is the spot rules' matter, not a restart's
    cost (one restart is what going to on-demand costs)."""
    bound = condition(pod, POD_SCHEDULED) or {}
    if bound.get("status") == "True" and (at := parse_ts(bound.get("lastTransitionTime"))):
        return at
    return parse_ts(pod["metadata"].get("creationTimestamp"))


def earlier_saving(draining: list[m.DrainingAttempt] | None, durable: float) -> bool:
    """A checkpoint durable at ``durable`` may be an earlier attempt's final save: one of them
    still had its notice then (a draining entry kept past its end is no such attempt)."""
    for entry in draining or []:
        until = parse_ts(entry.until)
        if until is None or durable <= until.timestamp():
            return True
    return False


def inherited(st: m.JobStatus, ref: m.CheckpointRef) -> None:
    """``ref`` was saved by an earlier attempt and learnt from that attempt's end (a warm
    start's final save, folded in after the current attempt began): it is what the current
    attempt restores, never its own first checkpoint, so status.deadline.resumed moves to it."""
    seen = st.deadline
    resumed = seen.resumed if seen is not None else None
    if seen is None or resumed is None or resumed.attempt != st.attempt:
        return
    if ref.step is not None and ref.step > resumed.step:
        seen.resumed = m.DeadlineResume(attempt=st.attempt, step=ref.step, time=ref.time)


def moving(p: Planner) -> bool:
    """The current attempt was stopped by ``while_running`` (its end is a move)."""
    seen = p.st.deadline
    return seen is not None and seen.moving is not None and seen.moving == p.st.attempt


def moved(p: Planner, saved: str, capacity: str) -> None:
    """The stopped attempt ended (``outcomes.record``): the next one runs on the other
    capacity and restores what this one saved; neither a preemption nor a failure."""
    st = p.st
    assert st.deadline is not None
    st.deadline.moving = None
    st.onDemand = capacity != "on-demand"
    target = "on-demand" if st.onDemand else "spot"
    p.event(m.REASON_DEADLINE_CAPACITY, f"attempt {st.attempt} on {capacity} stopped for the "
            f"deadline; {saved}; attempt {st.attempt + 1} runs on {target} nodes")
    st.phase = "Restarting"
