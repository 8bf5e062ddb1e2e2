"""What ``spotrun chaos`` decides: where interruptions go, what an ending means, what it prints."""

from __future__ import annotations

import signal

import pytest

from spotrun.chaos_plan import (
    SIGKILL,
    SIGKILL_IN_SAVE,
    SIGTERM,
    classify,
    count_line,
    epoch_ends,
    fresh_dir_refusal,
    plan,
)

pytestmark = pytest.mark.unit

STEPS, PER_EPOCH = 360, 45
ENDS = list(range(PER_EPOCH, STEPS + 1, PER_EPOCH))


def test_the_seed_chooses_the_plan_and_the_plan_holds_every_interruption_asked_for() -> None:
    first = plan(5, 2, seed=11, total_steps=STEPS, epoch_ends=ENDS)
    assert first == plan(5, 2, seed=11, total_steps=STEPS, epoch_ends=ENDS)
    assert first != plan(5, 2, seed=12, total_steps=STEPS, epoch_ends=ENDS)
    kinds = [i.kind for i in first]
    assert kinds.count(SIGTERM) == 5
    assert kinds.count(SIGKILL) == 1 and kinds.count(SIGKILL_IN_SAVE) == 1


@pytest.mark.parametrize("seed", range(20))
def test_interruptions_spread_over_the_whole_run_one_per_slice(seed: int) -> None:
    steps = [i.step for i in plan(5, 2, seed, STEPS, ENDS)]
    assert steps == sorted(steps)
    slice_size = STEPS / 7
    for n, step in enumerate(steps):
        assert n * slice_size < step <= (n + 1) * slice_size + 1
    assert steps[-1] > STEPS * 6 / 7  # the last one is late in the run


def test_over_seeds_epoch_ends_and_the_last_step_are_hit() -> None:
    hits = {i.step for seed in range(40) for i in plan(5, 2, seed, STEPS, ENDS)}
    assert set(ENDS) <= hits  # every epoch's end, the last step included
    off_ends = hits - set(ENDS)
    assert len(off_ends) > 100  # and plenty of steps inside epochs


def test_more_interruptions_than_steps_stay_inside_the_run() -> None:
    steps = [i.step for i in plan(4, 2, 0, total_steps=3)]
    assert len(steps) == 6 and all(1 <= s <= 3 for s in steps) and steps == sorted(steps)
    assert plan(3, 0, 0, total_steps=0) == []


def test_epoch_ends_are_the_steps_before_the_epoch_changes_and_the_last_step() -> None:
    logged = [(1, 0), (2, 0), (3, 1), (4, 1), (5, 2)]
    assert epoch_ends(logged) == [2, 4, 5]
    assert epoch_ends([(1, None), (2, None)]) == [2]  # a hand-written loop: no epochs known
    assert epoch_ends([]) == []


@pytest.mark.parametrize(
    ("kind", "signalled", "finished_first", "exit_code", "interrupted", "fine"),
    [
        (SIGTERM, True, False, 0, True, True),  # saved on SIGTERM, exited 0
        (SIGTERM, True, False, -signal.SIGTERM, True, False),  # SIGTERM killed a training run
        (SIGTERM, True, True, -signal.SIGTERM, False, True),  # after the script finished: none
        (SIGTERM, True, True, 0, False, True),
        (SIGKILL, True, False, -signal.SIGKILL, True, True),
        (SIGKILL_IN_SAVE, True, False, 0, True, False),  # a SIGKILL cannot end in exit 0
        (SIGKILL, True, True, -signal.SIGKILL, False, True),  # killed after it finished: none
        (SIGKILL, False, False, 0, False, True),  # ended before the signal was due
        (SIGTERM, False, False, 1, False, False),  # crashed on its own
        (SIGKILL, False, False, -signal.SIGKILL, False, False),  # killed, not by chaos
    ],
)
def test_an_ending_is_an_interruption_only_if_the_signal_came_before_the_script_finished(
    kind: str, signalled: bool, finished_first: bool, exit_code: int, interrupted: bool, fine: bool
) -> None:
    really, problem = classify(kind, signalled, finished_first, exit_code)
    assert really is interrupted
    assert (problem is None) is fine
    if problem:
        assert f"exit {exit_code}" in problem


def test_the_count_line_sums_what_really_happened() -> None:
    kinds = [SIGTERM, SIGKILL_IN_SAVE, SIGTERM, SIGKILL, SIGTERM]
    assert count_line(kinds, planned=5) == "interruptions: 5 (3 SIGTERM, 2 SIGKILL)"
    assert count_line([SIGTERM], planned=3) == (
        "interruptions: 1 (1 SIGTERM, 0 SIGKILL); 2 of the 3 planned came after the script "
        "had finished (none)"
    )


def test_fresh_dir_without_storage_is_refused_naming_the_flag_the_cause_and_the_fix() -> None:
    why = fresh_dir_refusal(True, None)
    assert why is not None
    assert "--fresh-dir" in why  # the flag
    assert "SPOTRUN_STORAGE_URI is not set" in why and "step 0" in why  # the cause
    assert "Set SPOTRUN_STORAGE_URI=s3://" in why and "drop --fresh-dir" in why  # the fix
    assert fresh_dir_refusal(True, "") is not None
    assert fresh_dir_refusal(True, "s3://bucket/job") is None
    assert fresh_dir_refusal(False, None) is None
