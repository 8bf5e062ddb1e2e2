"""Recording how attempt N ended, one function per outcome: the counters, the conditions, the
Event, the next attempt (after backoff) or the job's end."""

from __future__ import annotations

from . import deadlineplan, gangstatus
from . import models as m
from .builders import pod_name
from .endings import Ended, Outcome
from .plan import Planner
from .reports import observe_checkpoint


def record(p: Planner, ended: Ended, capacity: str) -> None:
    """Attempt ``p.st.attempt`` ended as ``ended`` on ``capacity`` (spot or on-demand) nodes."""
    st = p.st
    p.plan.ended = ended
    if ended.checkpoint is not None:
        observe_checkpoint(st, ended.checkpoint, ended.metrics)
    if capacity == "on-demand":
        st.onDemandSeconds = round(st.onDemandSeconds + ended.seconds, 3)
    else:
        st.spotSeconds = round(st.spotSeconds + ended.seconds, 3)
    st.lastExitCode = ended.exit_code
    saved = saved_text(p.spec, st.lastCheckpoint)
    if ended.checkpoint is not None and ended.outcome is not Outcome.SUCCEEDED:
        made = "made it" if ended.checkpoint.finalSaved else "did not make it"
        saved += f" (final save {made})"
    elif ended.outcome is Outcome.PREEMPTED:  # a pod lost with its node: nothing reported one
        saved += " (no final save reported)"
    if ended.outcome is Outcome.TEMPLATE_CHANGED and deadlineplan.moving(p):
        deadlineplan.moved(p, saved, capacity)
        p.advance(0)
        return
    {
        Outcome.SUCCEEDED: _succeeded,
        Outcome.SUSPENDED: _suspended,
        Outcome.PREEMPTED: _preempted,
        Outcome.FAILED: _failed,
        Outcome.TEMPLATE_CHANGED: _template_changed,
    }[ended.outcome](p, ended, saved)


def _name(p: Planner) -> str:
    g = p.st.gang
    if g is not None and g.attempt == p.st.attempt:
        pods = gangstatus.describe(p.job.name, p.st.attempt, g.nodesWanted)
        return f"attempt {p.st.attempt} ({pods}; world size {g.worldSize})"
    return f"attempt {p.st.attempt} ({pod_name(p.job.name, p.st.attempt)})"


def _succeeded(p: Planner, ended: Ended, saved: str) -> None:
    p.finish(True, m.REASON_COMPLETED, f"{_name(p)} completed; {saved}")


def _suspended(p: Planner, ended: Ended, saved: str) -> None:
    p.st.phase = "Suspended"
    p.cond(m.COND_SUSPENDED, True, m.REASON_SUSPENDED, f"suspended; {saved}")
    p.cond(m.COND_RUNNING, False, m.REASON_SUSPENDED, "suspended")
    p.event(m.REASON_SUSPENDED, f"{_name(p)} stopped; {saved}")
    p.advance(0)


def _preempted(p: Planner, ended: Ended, saved: str) -> None:
    st, spot = p.st, p.spec.spot
    st.preemptions += 1
    st.consecutivePreemptions += 1
    message = (
        f"{_name(p)} preempted ({ended.why}); {saved}; "
        f"preemption {st.preemptions} of at most {spot.maxPreemptions}"
    )
    p.event(m.REASON_PREEMPTED, message, warning=True)
    if st.preemptions > spot.maxPreemptions:
        p.finish(
            False,
            m.REASON_MAX_PREEMPTIONS,
            f"{st.preemptions} preemptions exceed spot.maxPreemptions={spot.maxPreemptions}",
        )
        return
    p.cond(m.COND_PREEMPTED, True, m.REASON_PREEMPTED, message)
    after = spot.fallbackToOnDemandAfter
    in_a_row = after is not None and st.consecutivePreemptions >= after
    # a deadline whose step time is measured decides the capacity (deadlineplan.at_start): a
    # job it brought back to spot would be "fallen back" again at every later preemption
    deadline = p.spec.deadline is not None and st.deadline is not None and (
        st.deadline.stepSeconds is not None
    )
    if spot.enabled and not st.onDemand and in_a_row and not deadline:
        st.onDemand = True
        p.event(
            m.REASON_ON_DEMAND,
            f"{st.consecutivePreemptions} preemptions in a "
            f"row: attempt {st.attempt + 1} runs on on-demand nodes",
        )
    st.phase = "Restarting"
    p.advance(spot.backoffSeconds)


def _template_changed(p: Planner, ended: Ended, saved: str) -> None:
    """The operator ended the attempt for a new spec.template: no preemption, no failure; the
    next attempt (the new template) starts at once and restores what this one saved."""
    st = p.st
    old = st.templateGeneration if st.templateGeneration is not None else "?"
    p.event(
        m.REASON_TEMPLATE_CHANGED,
        f"{_name(p)} {ended.why}: generation {old} -> {p.job.generation}; {saved}; attempt "
        f"{st.attempt + 1} runs generation {p.job.generation}",
    )
    st.phase = "Restarting"
    p.advance(0)


def _failed(p: Planner, ended: Ended, saved: str) -> None:
    st, spec = p.st, p.spec
    st.failures += 1
    st.consecutivePreemptions = 0
    detail = f"{_name(p)} failed with {ended.why}"
    if ended.message:
        detail += f": {ended.message[-800:]}"
    if st.failures > spec.backoffLimit:
        p.finish(
            False,
            m.REASON_BACKOFF_LIMIT,
            f"{st.failures} failures exceed backoffLimit={spec.backoffLimit}; last: {detail}",
        )
        return
    p.event(
        m.REASON_FAILED_ATTEMPT,
        f"{detail}; retry {st.failures} of {spec.backoffLimit}",
        warning=True,
    )
    st.phase = "Restarting"
    p.advance(min(60.0, spec.spot.backoffSeconds * 2 ** (st.failures - 1)))


def savings(st: m.JobStatus, spec: m.JobSpec) -> None:
    """status.estimatedSavings: what on-demand would have cost less what was paid."""
    cost = spec.cost
    if cost.onDemandHourly is None or cost.spotHourly is None:
        return
    total = st.spotSeconds + st.onDemandSeconds
    paid = st.spotSeconds * cost.spotHourly + st.onDemandSeconds * cost.onDemandHourly
    st.estimatedSavings = round((total * cost.onDemandHourly - paid) / 3600, 6)


def on_claim(spec: m.JobSpec) -> str:
    """`` on PVC <claim>`` where the checkpoints are on a claim, else nothing."""
    claim = spec.checkpoint.storage.pvc
    return f" on PVC {claim.claimName}" if claim is not None else ""


def saved_text(spec: m.JobSpec, ref: m.CheckpointRef | None) -> str:
    """``last checkpoint step 450 on PVC ckpt``: the newest step the sidecar reported. Without
    one on a PVC (a pod that vanished, say) the claim may still hold some: say where they are."""
    if ref is not None and ref.step is not None:
        return f"last checkpoint step {ref.step}{on_claim(spec)}"
    claim = spec.checkpoint.storage.pvc
    return f"checkpoints on PVC {claim.claimName}" if claim is not None else "no checkpoint yet"
