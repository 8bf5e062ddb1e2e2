"""The demo's report: log lines parsed into attempts, steps lost and time to resume, cost."""

from __future__ import annotations

import random

import pytest

from localcluster.demo import (
    PROCESS_EPOCHS,
    load_job,
    planned_epochs,
    preemption_steps,
    with_epochs,
)
from localcluster.demoreport import Attempt, Outcome, Preemption, cost_lines, losses, summary

pytestmark = pytest.mark.unit


def _attempt(number: int, lines: list[tuple[float, str]], **kw: object) -> Attempt:
    a = Attempt(number, f"digits-{number}", node=f"spot-{number}", **kw)  # type: ignore[arg-type]
    for at, line in lines:
        a.feed(line, at)
    return a


FIRST = [
    (1.0, "2026-11-28 10:00:01,000 spotrun: no checkpoint in /ckpt, starting from scratch"),
    (2.0, "2026-11-28 10:00:02,000 step 10: loss 2.3012"),
    (2.5, "2026-11-28 10:00:02,500 epoch 0: step 45, test accuracy 0.794"),
    (3.0, "2026-11-28 10:00:03,000 step 310: loss 0.2500"),
    (3.1, "2026-11-28 10:00:03,100 spotrun: SIGTERM received, saving step 317 before exiting"),
    (3.4, "2026-11-28 10:00:03,400 spotrun: step 317 is durable; exiting 0"),
]
SECOND = [
    (9.0, "2026-11-28 10:00:09,000 spotrun: restored step 317 (epoch 7) from /ckpt in 0.02s"),
    (9.5, "2026-11-28 10:00:09,500 step 320: loss 0.2400"),
]


def test_log_lines_become_losses_restores_and_the_final_save() -> None:
    a = _attempt(1, FIRST)
    assert a.losses == [(10, 2.3012), (310, 0.25)]
    assert (a.final_save, a.durable_at_exit, a.exited_at) == (317, True, 3.4)
    assert (a.last_step, a.steps_per_epoch, a.restored_step) == (317, 45, None)
    b = _attempt(2, SECOND)
    assert (b.restored_step, b.restored_at, b.last_step) == (317, 9.0, 320)


def test_a_save_on_sigterm_loses_no_step_and_the_resume_time_is_measured() -> None:
    first, second = _attempt(1, FIRST), _attempt(2, SECOND)
    [loss] = losses([first, second], [Preemption(3.0, "spot-1", 1, 310)])
    assert (loss.saved_step, loss.restored_step, loss.steps_lost) == (317, 317, 0)
    assert loss.resume_seconds == pytest.approx(5.6)


def test_without_a_final_save_the_steps_since_the_last_checkpoint_are_lost() -> None:
    first = _attempt(1, FIRST[:4])  # killed: no save on the way out
    second = _attempt(2, [(9.0, "spotrun: restored step 300 (epoch 6) from /x in 0.01s")])
    first.ended = 4.0
    [loss] = losses([first, second], [Preemption(3.0, "spot-1", 1, 310)])
    assert (loss.saved_step, loss.steps_lost, loss.resume_seconds) == (None, 10, 5.0)


def test_cost_compares_spot_with_all_on_demand() -> None:
    lines = cost_lines(Outcome("Succeeded", 3000, 600, spot_hourly=1.0, on_demand_hourly=3.0))
    # paid: 3000 s × $1/h + 600 s × $3/h = $1.3333; all on-demand: 3600 s × $3/h = $3
    assert "$1.33333 instead of $3.00000" in lines[1]
    assert "(56% saved)" in lines[1]


def test_summary_names_each_preemption_and_attempt() -> None:
    first, second = _attempt(1, FIRST), _attempt(2, SECOND)
    first.started, first.ended, second.started, second.ended = 0.5, 4.0, 8.0, 20.0
    lines = summary([first, second], [Preemption(3.0, "spot-1", 1, 310)],
                    Outcome("Succeeded", 15.5, 0), elapsed=21.0)
    assert lines[0] == "job Succeeded after 21 s: 2 attempt(s), 1 preemption(s), 320 steps"
    assert "preemption 1: node spot-1 at step 310 (attempt 1); saved step 317 on SIGTERM; " \
        "attempt 2 restored step 317: 0 steps lost; resumed 5.6 s" in lines[1]
    assert lines[3] == "attempt 2: pod digits-2 on spot-2 (spot), ran 12 s"


def test_preemptions_fall_early_and_late_and_the_epochs_come_from_the_command(tmp_path) -> None:
    a, b = preemption_steps(1000, random.Random(1))
    assert 200 <= a <= 400 and 550 <= b <= 800
    path = tmp_path / "job.yaml"
    path.write_text(
        "apiVersion: spotrun.dev/v1alpha1\nkind: ResumableTrainingJob\nmetadata: {name: d}\n"
        "spec:\n  template: {spec: {containers: [{name: t, command: [python, train.py, "
        "--epochs, '30']}]}}\n  checkpoint: {storage: {uri: 's3://checkpoints/digits', "
        "endpoint: 'http://s3.storage.svc:9000'}}\n")
    job = load_job(path, "local-bucket", "http://127.0.0.1:9999")
    assert job["spec"]["checkpoint"]["storage"] == {
        "uri": "s3://local-bucket/digits", "endpoint": "http://127.0.0.1:9999"}
    assert planned_epochs(job) == 30
    longer = with_epochs(job, PROCESS_EPOCHS)
    assert planned_epochs(longer) == PROCESS_EPOCHS and planned_epochs(job) == 30
    assert longer["spec"]["checkpoint"] == job["spec"]["checkpoint"]
