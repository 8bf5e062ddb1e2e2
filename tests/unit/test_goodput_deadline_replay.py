"""bench/goodput/deadline_replay.py's pure parts: the greedy lane's switch and the table."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

from goodput.deadline_replay import LaneResult, Setup, greedy_must, result, table  # noqa: E402

SETUP = Setup(total_steps=1500, step_seconds=0.2, deadline=630, restart_seconds=45,
              margin_seconds=30, outage_at=90, outage_end=320, notice=10,
              spot_price_ratio=0.3)


def test_greedy_goes_to_on_demand_only_when_on_demand_alone_still_makes_it() -> None:
    # 1220 steps left = 244 s, a 45 s restart, 30 s kept: the last moment is 311 s
    assert not greedy_must(310, 280, SETUP)
    assert greedy_must(311, 280, SETUP)
    assert not greedy_must(500, 1500, SETUP)  # done: nothing left but the restart


def test_the_cost_is_spot_at_its_price_plus_on_demand_against_the_on_demand_lane() -> None:
    created = 1_000_000.0
    done = "1970-01-12T13:51:40Z"  # 1_000_300 s: 300 s after creation
    uniform = result("uniform", {"phase": "Succeeded", "completionTime": done,
                                 "spotSeconds": 100, "onDemandSeconds": 200}, created, SETUP)
    assert uniform.finished_after == 300 and uniform.met and uniform.paid == 230
    late = result("greedy", {"phase": "Running", "spotSeconds": 10}, created, SETUP)
    assert late.finished_after is None and not late.met
    od = LaneResult("on-demand", 290, True, 0, 320, 320, 0)
    text = table(SETUP, [[uniform, late, od]])
    assert "| 1 | uniform | 300 | yes | 100 | 200 | 0 | 0.72 |" in text
    assert "| 1 | greedy | not done | NO |" in text
