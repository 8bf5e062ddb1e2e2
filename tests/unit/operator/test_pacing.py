"""The resync pacing: all jobs' healing passes together stay within a budget at any scale,
and every job still gets one within a bounded time."""

from __future__ import annotations

import asyncio
import time

import pytest

from spotrun_operator import handlers, pacing

pytestmark = pytest.mark.unit


def _simulate(jobs: int, seconds: float) -> tuple[float, float]:
    """kopf's timer ticks every job every TICK_SECONDS (jobs' ticks spread over a tick, as jobs
    created at different times are); a tick passes when the job's gap has run out. Returns the
    resync passes per second overall and the longest time a job went without a pass."""
    keys = [("bench", f"job-{i:04d}") for i in range(jobs)]
    offset = {key: pacing.TICK_SECONDS * i / jobs for i, key in enumerate(keys)}
    last = dict(offset)  # every job had a pass at its creation
    gap = {key: pacing.resync_gap(jobs, key) for key in keys}
    longest, passes = 0.0, 0
    tick = 0
    while tick * pacing.TICK_SECONDS < seconds:
        tick += 1
        for key in keys:
            now = tick * pacing.TICK_SECONDS + offset[key]
            if now - last[key] >= gap[key]:
                longest = max(longest, now - last[key])
                last[key] = now
                passes += 1
    return passes / seconds, longest


def test_at_small_scale_every_job_is_resynced_on_every_tick() -> None:
    rate, longest = _simulate(200, 600)
    assert longest == pytest.approx(pacing.TICK_SECONDS)
    assert rate == pytest.approx(200 / pacing.TICK_SECONDS, rel=0.02)


@pytest.mark.parametrize("jobs", [1000, 3000])
def test_at_large_scale_resyncs_stay_within_the_budget(jobs: int) -> None:
    rate, longest = _simulate(jobs, 1800)
    assert rate <= pacing.PASSES_PER_SECOND
    assert rate >= pacing.PASSES_PER_SECOND * 0.8, "paced far below the budget"
    # no job waits longer than its stretched interval and one tick
    bound = pacing.resync_interval(jobs) * (1 + pacing.JITTER) + pacing.TICK_SECONDS
    assert longest <= bound


def test_the_interval_grows_with_the_job_count_only_past_the_budget() -> None:
    assert pacing.resync_interval(1) == pacing.TICK_SECONDS
    assert pacing.resync_interval(200) == pacing.TICK_SECONDS
    assert pacing.resync_interval(1000) == 1000 / pacing.PASSES_PER_SECOND


def test_jobs_get_different_gaps_but_each_keeps_its_own() -> None:
    gaps = {pacing.resync_gap(1000, ("ns", f"job-{i}")) for i in range(50)}
    assert len(gaps) > 25, "jobs created together would resync together"
    assert pacing.resync_gap(1000, ("ns", "a")) == pacing.resync_gap(1000, ("ns", "a"))


def _ticks(jobs: int, since_last_pass: float) -> list[str]:
    """A resync tick of one job of ``jobs``, ``since_last_pass`` seconds after its last pass:
    the passes it ran."""
    passes: list[str] = []
    r = handlers.Reconciler(kube=None)  # type: ignore[arg-type]

    def fake_pass(namespace: str, name: str) -> float | None:
        passes.append(name)
        return None

    r._pass = fake_pass  # type: ignore[method-assign]
    now = time.monotonic()
    r.heard.update({("ns", f"other-{i}"): now for i in range(jobs - 1)})
    r.last_pass[("ns", "job")] = now - since_last_pass
    asyncio.run(r.run("ns", "job", resync=True))
    r.reports.close()
    return passes


def test_the_operator_skips_a_resync_within_the_gap_and_runs_it_after() -> None:
    assert _ticks(1, since_last_pass=pacing.TICK_SECONDS * 0.7) == ["job"]  # every tick
    assert _ticks(1000, since_last_pass=pacing.TICK_SECONDS * 2) == []  # paced
    assert _ticks(1000, since_last_pass=pacing.resync_interval(1000) * 1.2) == ["job"]
