"""When the trainer saves after SIGTERM (``spotrun.notice``): the pure decision from the grace
period, this run's measured save, upload and step times, and the reasons to save at once."""

from __future__ import annotations

import pytest

from spotrun.notice import MARGIN, RECENT, RESERVE_SECONDS, Costs, Longest, Measurements, plan
from spotrun.signals import save_deadline

pytestmark = pytest.mark.unit


def test_with_measurements_it_trains_on_until_one_step_before_the_last_safe_save() -> None:
    p = plan(15.0, Costs(save=0.5, upload=0.3, step=0.1))
    save_by = 15.0 - MARGIN * 0.8 - RESERVE_SECONDS  # 9.8 s after the signal
    assert p.trains_on and p.save_by == pytest.approx(save_by)
    assert p.train_until == pytest.approx(save_by - 0.1)
    assert p.keep_training(0.0) and p.keep_training(save_by - 0.11)
    assert not p.keep_training(save_by - 0.1)  # one more step would end past the save's start


def test_a_longer_notice_trains_longer_and_a_slower_save_shorter() -> None:
    base = plan(15.0, Costs(0.5, 0.3, 0.1)).train_until
    assert plan(120.0, Costs(0.5, 0.3, 0.1)).train_until == pytest.approx(base + 105.0)
    assert plan(15.0, Costs(2.5, 0.3, 0.1)).train_until == pytest.approx(base - MARGIN * 2.0)
    assert plan(15.0, Costs(0.5, 0.3, 1.1)).train_until == pytest.approx(base - 1.0)


@pytest.mark.parametrize(
    ("costs", "why"),
    [
        (Costs(save=None, upload=0.0, step=0.1), "no save+upload measured"),
        (Costs(save=0.5, upload=None, step=0.1), "no save+upload measured"),  # no upload yet
        (Costs(save=0.5, upload=0.0, step=None), "no step time measured"),
        (Costs(save=4.0, upload=2.0, step=1.0), "leaves no time for another step"),
    ],
)
def test_it_saves_at_once_without_a_measurement_or_without_time(costs: Costs, why: str) -> None:
    p = plan(10.0, costs)
    assert not p.trains_on and not p.keep_training(0.0)
    assert why in p.why
    assert p.save_by == save_deadline(10.0, costs.save or 0.0)  # the watchdog as before


def test_a_reason_to_save_at_once_wins_over_any_measurement() -> None:
    p = plan(120.0, Costs(0.1, 0.1, 0.1), at_once="SPOTRUN_SAVE_AT_ONCE=1")
    assert not p.trains_on and p.why == "SPOTRUN_SAVE_AT_ONCE=1"
    assert p.save_by == save_deadline(120.0, 0.1)


def test_the_log_lines_count_from_now() -> None:
    p = plan(15.0, Costs(0.5, 0.3, 0.1))
    assert p.describe("SIGTERM", 0.8) == (
        "SIGTERM: deadline in 14.2 s, save+upload measured 0.8 s: training on until 8.9 s"
    )
    at_once = plan(15.0, Costs(None, 0.0, 0.1))
    assert at_once.describe("SIGTERM", 0.0) == (
        "SIGTERM: deadline in 15.0 s: saving at the next step boundary "
        "(no save+upload measured yet on this run)"
    )


def test_an_upload_or_save_still_running_counts_twice() -> None:
    assert Costs(1.0, 2.0, 0.1).total == 3.0
    assert Costs(1.0, 2.0, 0.1, upload_behind=True).total == 5.0
    assert Costs(1.0, 2.0, 0.1, save_behind=True).total == 4.0


def test_longest_remembers_only_the_recent_measurements() -> None:
    longest = Longest()
    assert longest.value is None
    longest.add(9.0)
    for _ in range(RECENT):
        longest.add(1.0)
    longest.add(-1.0)  # a clock that went back is no measurement
    assert longest.value == 1.0


def test_measurements_give_the_step_save_and_commit_to_durable_times() -> None:
    m = Measurements()
    for t in (100.0, 100.25, 100.5, 100.625):  # exact in binary: 0.25, 0.25, 0.125
        m.stepped(t)
    m.saved(0.7, step=3, committed_at=1000.0)
    assert m.costs(uploads=True, writing=False) == Costs(0.7, None, 0.25, upload_behind=True)
    assert m.costs(uploads=False, writing=True) == Costs(0.7, 0.0, 0.25, save_behind=True)
    m.durable(3, 1002.5)
    assert m.costs(uploads=True, writing=False) == Costs(0.7, 2.5, 0.25)
    m.durable(3, 1009.0)  # the same step seen again later: counted once
    assert m.costs(uploads=True, writing=False).upload == 2.5


def test_a_durable_step_this_run_did_not_save_gives_no_upload_time() -> None:
    m = Measurements()
    m.saved(0.5, step=10, committed_at=1000.0)
    m.durable(7, 1001.0)  # restored from S3, or another run's note
    m.durable(10, 999.0)  # "durable" before it was committed: a stale note
    costs = m.costs(uploads=True, writing=False)
    assert costs.upload is None and costs.upload_behind
