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


class _Operator:
    """A Reconciler whose passes record their job, then wait for ``gate`` (a slow API
    server); ``memo`` is what kopf hands the handlers."""

    def __init__(self, open_gate: bool = False) -> None:
        self.passes: list[str] = []
        self.gate = threading.Event()
        if open_gate:
            self.gate.set()
        self.reconciler = handlers.Reconciler(kube=None)  # type: ignore[arg-type]
        self.reconciler._pass = self._slow_pass  # type: ignore[method-assign]
        self.memo = self  # kopf's memo: the handlers read .reconciler

    def _slow_pass(self, namespace: str, name: str) -> float | None:
        self.passes.append(name)
        assert self.gate.wait(30), "the test never opened the gate"
        return None

    async def job_event(self, name: str = "job", type: str = "MODIFIED") -> None:
        await asyncio.wait_for(
            handlers.job_event(type=type, name=name, namespace="ns", memo=self.memo), 5
        )

    async def pod_event(self, job: str = "job") -> None:
        labels = {handlers.LABEL_JOB: job}
        await asyncio.wait_for(handlers.pod_event(labels=labels, namespace="ns", memo=self.memo), 5)

    def idle(self) -> bool:
        return not self.reconciler.requests


async def _until(check: Any, what: str) -> None:
    for _ in range(3000):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(what)


def test_events_while_a_pass_waits_its_turn_cost_one_more_pass_not_one_each() -> None:
    op = _Operator()

    async def scenario() -> None:
        await op.job_event(type="ADDED")
        await _until(lambda: op.passes == ["job"], "the first pass never started")
        for _ in range(5):  # pod created, pod unschedulable, status written, ...
            await op.pod_event()
            await op.job_event()
        op.gate.set()
        await _until(op.idle, "the requested passes never ended")

    asyncio.run(scenario())
    # the pass under way, then one pass that reads the job after all ten events
    assert op.passes == ["job", "job"]


def test_a_change_after_the_pass_began_gets_a_pass_of_its_own() -> None:
    """The pass under way may have read the job before the change: it is not enough."""
    op = _Operator()

    async def scenario() -> None:
        await op.job_event(type="ADDED")
        await _until(lambda: op.passes == ["job"], "the first pass never started")
        await op.job_event()
        op.gate.set()
        await _until(lambda: len(op.passes) == 2 and op.idle(), "no pass after the change")
        await op.job_event()
        await _until(lambda: len(op.passes) == 3 and op.idle(), "no pass after the change")

    asyncio.run(scenario())
    assert op.passes == ["job", "job", "job"]


def test_kopf_handlers_return_while_the_pass_still_runs() -> None:
    op = _Operator()

    async def scenario() -> None:
        await op.job_event(type="ADDED")  # each within 5 s, while the passes wait for the gate
        await op.pod_event(job="other")
        await _until(lambda: sorted(op.passes) == ["job", "other"], "the passes never started")
        assert len(op.reconciler.requests) == 2, "the handlers waited for their passes"
        op.gate.set()
        await _until(op.idle, "the passes never ended")

    asyncio.run(scenario())


def test_jobs_do_not_coalesce_with_each_other() -> None:
    op = _Operator(open_gate=True)

    async def scenario() -> None:
        for name in ("a", "b", "c"):
            await op.job_event(name=name, type="ADDED")
        await _until(op.idle, "the passes never ended")

    asyncio.run(scenario())
    assert sorted(op.passes) == ["a", "b", "c"]


def test_a_failed_pass_is_logged_with_its_job(caplog: pytest.LogCaptureFixture) -> None:
    """kopf no longer waits for the pass, so it cannot log its failure: the operator does."""
    r = handlers.Reconciler(kube=None)  # type: ignore[arg-type]

    def broken_pass(namespace: str, name: str) -> float | None:
        raise RuntimeError("a bug in a pass")

    r._pass = broken_pass  # type: ignore[method-assign]

    class Memo:
        reconciler = r

    async def scenario() -> None:
        await handlers.job_event(type="ADDED", name="job", namespace="ns", memo=Memo())
        await _until(lambda: not r.requests, "the pass never ended")

    asyncio.run(scenario())
    failed = [rec for rec in caplog.records if "reconcile failed" in rec.getMessage()]
    assert failed and "ns/job" in failed[0].getMessage()
    assert failed[0].exc_info is not None and "a bug in a pass" in str(failed[0].exc_info[1])
