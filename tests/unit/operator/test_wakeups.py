"""A pass's wake-up runs only while kopf still tells about the job (a paused peer stays idle)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from spotrun_operator import handlers

pytestmark = pytest.mark.unit


def _reconciler(passes: list[str], after: float | None) -> handlers.Reconciler:
    r = handlers.Reconciler(kube=None)  # type: ignore[arg-type]

    def fake_pass(namespace: str, name: str) -> float | None:
        passes.append(name)
        return after

    r._pass = fake_pass  # type: ignore[method-assign]
    return r


def test_a_wake_up_runs_while_kopf_tells_about_the_job() -> None:
    passes: list[str] = []
    r = _reconciler(passes, after=None)

    async def scenario() -> None:
        await r.run("ns", "job")  # an event from kopf
        await r.run("ns", "job", woken=True)  # the wake-up that pass asked for

    asyncio.run(scenario())
    assert passes == ["job", "job"]


def test_wake_ups_lapse_once_kopf_has_gone_silent(monkeypatch: Any) -> None:
    passes: list[str] = []
    r = _reconciler(passes, after=0.05)  # every pass asks to be woken again soon

    async def scenario() -> None:
        await r.run("ns", "job")
        real, skip = time.monotonic, handlers.SILENCE_SECONDS + 1
        monkeypatch.setattr(time, "monotonic", lambda: real() + skip)  # kopf silent since
        await asyncio.sleep(0.3)
        for handle in r.wakeups.values():
            handle.cancel()

    asyncio.run(scenario())
    assert passes == ["job"], "a paused replica kept reconciling on its own wake-ups"
