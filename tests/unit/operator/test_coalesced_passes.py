"""Events of a job that come while a pass of it waits for its turn join that pass, and kopf's
handlers return without waiting for the pass (kopf would hold the event's body meanwhile).

At 1000 jobs the startup brings 3-4 events per job (pod created, pod unschedulable, status
written, kopf's finalizer added); each used to cost a full pass (a GET and a LIST), and the
passes that queued behind them delayed the reaction to a preemption by minutes."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from spotrun_operator import handlers

pytestmark = pytest.mark.unit


class _Memo:
    def __init__(self, reconciler: handlers.Reconciler) -> None:
        self.reconciler = reconciler


def _blocking_reconciler(passes: list[str], gate: threading.Event) -> handlers.Reconciler:
    """Every pass records its job, then waits for ``gate`` (a slow API server)."""
    r = handlers.Reconciler(kube=None)  # type: ignore[arg-type]

    def slow_pass(namespace: str, name: str) -> float | None:
        passes.append(name)
        assert gate.wait(30), "the test never opened the gate"
        return None

    r._pass = slow_pass  # type: ignore[method-assign]
    return r


async def _until(check: Any, what: str) -> None:
    for _ in range(3000):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(what)


def test_events_while_a_pass_waits_its_turn_cost_one_more_pass_not_one_each() -> None:
    passes: list[str] = []
    gate = threading.Event()
    r = _blocking_reconciler(passes, gate)
    memo = _Memo(r)

    async def scenario() -> None:
        await handlers.job_event(type="ADDED", name="job", namespace="ns", memo=memo)
        await _until(lambda: passes == ["job"], "the first pass never started")
        for _ in range(5):  # pod created, pod unschedulable, status written, ...
            await handlers.pod_event(labels={handlers.LABEL_JOB: "job"}, namespace="ns", memo=memo)
            await handlers.job_event(type="MODIFIED", name="job", namespace="ns", memo=memo)
        gate.set()
        await _until(lambda: not r.requests, "the requested passes never ended")

    asyncio.run(scenario())
    # the pass under way, then one pass that reads the job after all ten events
    assert passes == ["job", "job"]


def test_a_change_after_the_pass_began_gets_a_pass_of_its_own() -> None:
    """The pass under way may have read the job before the change: it is not enough."""
    passes: list[str] = []
    gate = threading.Event()
    r = _blocking_reconciler(passes, gate)
    memo = _Memo(r)

    async def scenario() -> None:
        await handlers.job_event(type="ADDED", name="job", namespace="ns", memo=memo)
        await _until(lambda: passes == ["job"], "the first pass never started")
        await handlers.job_event(type="MODIFIED", name="job", namespace="ns", memo=memo)
        gate.set()
        await _until(lambda: len(passes) == 2 and not r.requests, "no pass after the change")
        await handlers.job_event(type="MODIFIED", name="job", namespace="ns", memo=memo)
        await _until(lambda: len(passes) == 3 and not r.requests, "no pass after the change")

    asyncio.run(scenario())
    assert passes == ["job", "job", "job"]


def test_kopf_handlers_return_while_the_pass_still_runs() -> None:
    passes: list[str] = []
    gate = threading.Event()
    r = _blocking_reconciler(passes, gate)
    memo = _Memo(r)

    async def scenario() -> None:
        await asyncio.wait_for(
            handlers.job_event(type="ADDED", name="job", namespace="ns", memo=memo), 5
        )
        await asyncio.wait_for(
            handlers.pod_event(labels={handlers.LABEL_JOB: "other"}, namespace="ns", memo=memo), 5
        )
        await _until(lambda: sorted(passes) == ["job", "other"], "the passes never started")
        assert len(r.requests) == 2, "the handlers waited for their passes"
        gate.set()
        await _until(lambda: not r.requests, "the passes never ended")

    asyncio.run(scenario())


def test_jobs_do_not_coalesce_with_each_other() -> None:
    passes: list[str] = []
    gate = threading.Event()
    gate.set()
    r = _blocking_reconciler(passes, gate)
    memo = _Memo(r)

    async def scenario() -> None:
        for name in ("a", "b", "c"):
            await handlers.job_event(type="ADDED", name=name, namespace="ns", memo=memo)
        await _until(lambda: not r.requests, "the passes never ended")

    asyncio.run(scenario())
    assert sorted(passes) == ["a", "b", "c"]


def test_a_failed_pass_is_logged_with_its_job(caplog: pytest.LogCaptureFixture) -> None:
    """kopf no longer waits for the pass, so it cannot log its failure: the operator does."""
    r = handlers.Reconciler(kube=None)  # type: ignore[arg-type]

    def broken_pass(namespace: str, name: str) -> float | None:
        raise RuntimeError("a bug in a pass")

    r._pass = broken_pass  # type: ignore[method-assign]

    async def scenario() -> None:
        await handlers.job_event(type="ADDED", name="job", namespace="ns", memo=_Memo(r))
        await _until(lambda: not r.requests, "the pass never ended")

    asyncio.run(scenario())
    failed = [rec for rec in caplog.records if "reconcile failed" in rec.getMessage()]
    assert failed and "ns/job" in failed[0].getMessage()
    assert failed[0].exc_info is not None and "a bug in a pass" in str(failed[0].exc_info[1])
