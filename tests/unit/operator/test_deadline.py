"""spotrun_operator.deadline: deadline-aware placement by uniform progress (pure)."""

from __future__ import annotations

import pytest

from spotrun_operator.deadline import (
    MAX_RESTART_SECONDS,
    Progress,
    Resumed,
    Sample,
    choose,
    measure_restart,
    restart_cost,
)

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


# -- the restart cost ---------------------------------------------------------------------

def test_a_restart_costs_the_time_to_its_first_checkpoint_less_the_steps_trained() -> None:
    # attempt 3 made at 1000 s from step 200; step 240 durable at 1050 s, 0.5 s a step:
    # 50 s, of which 20 s trained: the restart cost 30 s
    got = measure_restart(Resumed(200, 900.0), Sample(3, 240, 1050.0), attempt_start=1000.0,
                          now=1060.0, step_seconds=0.5)
    assert got.seconds == 30.0 and got.resumed is None and got.problem is None


def test_the_checkpoint_restored_is_what_the_restart_counts_from() -> None:
    start = Resumed(200, 900.0)
    # the sidecar reports the checkpoint it restored (saved before the pod was made): it
    # stays the one counted from, and nothing is measured yet
    same = measure_restart(start, Sample(3, 200, 900.0), 1000.0, 1010.0, 0.5)
    assert same.resumed == start and same.seconds is None
    # a warm start: the attempt before saved step 220 at 1030 s, after this pod was made at
    # 1000 s; that save is what it restores and the restart counts from its time
    later = measure_restart(start, Sample(3, 220, 1030.0), 1000.0, 1040.0, 0.5,
                            earlier_saving=True)
    assert later.resumed == Resumed(220, 1030.0) and later.seconds is None
    own = measure_restart(later.resumed, Sample(3, 240, 1050.0), 1000.0, 1060.0, 0.5)
    assert own.seconds == 10.0  # 20 s after that save, 10 s of it training
    # counted from the pod's creation, that save's 20 steps would make it 50 - 20 = 30 s
    assert measure_restart(start, Sample(3, 240, 1050.0), 1000.0, 1060.0, 0.5).seconds == 30.0


def test_a_restart_waits_for_the_step_time() -> None:
    got = measure_restart(Resumed(200), Sample(3, 240, 1050.0), 1000.0, 1060.0, None)
    assert got.resumed == Resumed(200) and got.seconds is None and got.problem is None
    # a later checkpoint of the attempt, once the step time is known, measures it
    later = measure_restart(Resumed(200), Sample(3, 280, 1070.0), 1000.0, 1080.0, 0.5)
    assert later.seconds == 30.0


@pytest.mark.parametrize(
    ("seen", "step_seconds", "why"),
    [
        (Sample(3, 240, 1010.0), 0.5, "negative"),  # 20 s of steps in 10 s: a bad step time
        (Sample(3, 240, 1000.0 + MAX_RESTART_SECONDS + 100.0), 0.5, "beyond"),  # a clock jump
    ],
)
def test_a_restart_that_makes_no_sense_is_ignored_with_the_reason(
    seen: Sample, step_seconds: float, why: str
) -> None:
    got = measure_restart(Resumed(200), seen, 1000.0, seen.time, step_seconds)
    assert got.seconds is None and got.resumed is None
    assert got.problem is not None and why in got.problem and "ignored" in got.problem


def test_a_checkpoint_from_the_future_measures_no_restart() -> None:
    got = measure_restart(Resumed(200), Sample(3, 240, 5000.0), 1000.0, 1060.0, 0.5)
    assert got.seconds is None and got.resumed == Resumed(200)


def test_the_restart_cost_is_the_largest_of_the_newest_readings() -> None:
    assert restart_cost([]) is None
    assert restart_cost([40.0]) == 40.0
    assert restart_cost([40.0, 12.0]) == 40.0  # one quick restart is not counted on
    assert restart_cost([40.0, 12.0, 15.0, 14.0]) == 15.0  # a slow one is forgotten


def test_a_costlier_restart_moves_the_decision_to_on_demand() -> None:
    # 4 h of work left at 5.8 h of 10: a 3 min restart leaves 12 min, over the 5 min margin;
    # a 10 min restart leaves 2 min: on-demand now
    assert choose(progress(5.8, 2.0, restart=180.0), "spot", False).capacity == "spot"
    assert choose(progress(5.8, 2.0, restart=600.0), "spot", False).capacity == "on-demand"
