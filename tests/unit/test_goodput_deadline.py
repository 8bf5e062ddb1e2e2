"""bench/goodput/deadline.py: a deadline job on a spot trace under each placement policy
(first order, pure)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from goodput.deadline import Job, simulate, sweep  # noqa: E402

GAP = 300.0
# 1 h of spot, a 5 h outage, then spot for the rest
OUTAGE = [True] * 12 + [False] * 60 + [True] * 200
JOB = Job(total_steps=6 * 3600, step_seconds=1.0, deadline_seconds=10 * 3600,
          restart_seconds=180.0, margin_seconds=GAP)


def test_on_demand_only_pays_the_work_and_one_restart() -> None:
    o = simulate(JOB, OUTAGE, GAP, "on-demand")
    assert o.finished == o.cost == 6 * 3600 + 180.0 and o.restarts == 1


def test_greedy_waits_out_the_outage_then_stays_on_on_demand_though_spot_returns() -> None:
    o = simulate(JOB, OUTAGE, GAP, "greedy")
    assert o.met_deadline(JOB) and o.spot_seconds == 3600.0  # no spot after the outage
    assert o.finished is not None and o.finished > 9 * 3600


def test_uniform_progress_meets_the_deadline_cheaper_than_greedy_and_on_demand() -> None:
    uniform, greedy, on_demand = (simulate(JOB, OUTAGE, GAP, p)
                                  for p in ("uniform", "greedy", "on-demand"))
    assert uniform.met_deadline(JOB)
    assert uniform.cost < greedy.cost < on_demand.cost
    assert uniform.spot_seconds > 3600.0  # back on spot once it returned


def test_a_job_that_cannot_finish_in_the_trace_says_so() -> None:
    o = simulate(JOB, [False] * 10, GAP, "greedy")
    assert o.finished is None and not o.met_deadline(JOB) and o.cost == 0.0


def test_the_sweep_never_misses_a_deadline_and_counts_every_trace() -> None:
    r = sweep(work_hours=4.0, deadline_hours=6.0, seeds=range(5))
    assert r.traces == 5 and set(r.misses.values()) == {0}
    assert r.mean["on-demand"] == 1.0 and 0 < r.mean["uniform"] < 1.0
