"""spotrun_operator.deadline: deadline-aware placement by uniform progress (pure)."""

from __future__ import annotations

import pytest

from spotrun_operator.deadline import Progress, choose

pytestmark = pytest.mark.unit

H = 3600.0


def progress(now_h: float, done_h: float, deadline_h: float = 10.0, total_h: float = 6.0,
             restart: float = 180.0, margin: float = 300.0) -> Progress:
    """A job of ``total_h`` hours of 1 s steps, started at 0, ``done_h`` hours done."""
    return Progress(now=now_h * H, start=0.0, deadline=deadline_h * H,
                    total_steps=round(total_h * H), done_steps=round(done_h * H),
                    step_seconds=1.0, restart_seconds=restart, margin_seconds=margin)


def test_on_demand_when_only_on_demand_still_makes_the_deadline() -> None:
    # 4 h left of work at 5.9 h of 10: 4 h + a restart leaves under the 5 min margin
    choice = choose(progress(5.9, 2.0), current="spot", spot_short=False)
    assert choice.capacity == "on-demand" and choice.reason.startswith("must")
    late = choose(progress(8.0, 2.0), current=None, spot_short=False)
    assert late.capacity == "on-demand" and "after the deadline" in late.reason
    assert late.slack_seconds < 0


def test_behind_the_line_while_spot_is_short_goes_to_on_demand_ahead_waits() -> None:
    # the line at 3 h of 10 is 1.8 h of 6 h of work
    behind = choose(progress(3.0, 1.0), current=None, spot_short=True)
    assert behind.capacity == "on-demand" and "behind" in behind.reason
    ahead = choose(progress(3.0, 2.5), current=None, spot_short=True)
    assert ahead.capacity == "spot" and "waiting for spot" in ahead.reason
    # with spot there, behind is no reason to pay for on-demand: spot trains as fast
    assert choose(progress(3.0, 1.0), current=None, spot_short=False).capacity == "spot"


def test_a_job_on_on_demand_returns_to_spot_when_its_slack_covers_two_restarts() -> None:
    back = choose(progress(3.0, 1.0), current="on-demand", spot_short=False)
    assert back.capacity == "spot" and "back to spot" in back.reason
    # spot short: it stays on on-demand
    assert choose(progress(3.0, 1.0), current="on-demand", spot_short=True).capacity == (
        "on-demand"
    )
    # 4 h of work at 5.85 h: slack 9 min > the 5 min margin, but not 5 + 2 x 3 min
    tight = choose(progress(5.85, 2.0), current="on-demand", spot_short=False)
    assert tight.capacity == "on-demand" and "staying" in tight.reason


def test_the_projected_finish_is_on_demand_from_now() -> None:
    choice = choose(progress(2.0, 1.0), current="spot", spot_short=False)
    assert choice.projected_finish == 2.0 * H + 180.0 + 5.0 * H
    assert choice.slack_seconds == 10.0 * H - choice.projected_finish


def test_a_finished_job_keeps_what_it_runs() -> None:
    done = choose(progress(4.0, 6.0), current="on-demand", spot_short=True)
    assert done.capacity == "on-demand" and "done" in done.reason


@pytest.mark.parametrize("bad", [
    {"deadline": 0.0},
    {"total_steps": 0},
    {"done_steps": -1},
    {"step_seconds": 0.0},
    {"restart_seconds": -1.0},
])
def test_bad_numbers_are_refused(bad: dict[str, float]) -> None:
    fields = {"now": 1.0, "start": 0.0, "deadline": 10.0, "total_steps": 5, "done_steps": 0,
              "step_seconds": 1.0, "restart_seconds": 0.0, **bad}
    with pytest.raises(ValueError):
        Progress(**fields)  # type: ignore[arg-type]
