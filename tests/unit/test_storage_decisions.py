"""Pure decisions of the sidecar's restore wait, S3 size checks, purge scope and deadlines."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from spotrun import bounded
from spotrun.podenv import EXPECTED_STEP_ENV, PodEnv
from spotrun.purge import in_scope, manifest_job, plan
from spotrun.s3store import oversize
from spotrun.startup import after_failure, next_delay, outcome_line

pytestmark = pytest.mark.unit


def test_a_saved_step_is_never_given_up_for_a_fresh_start() -> None:
    assert (
        after_failure(expected=500, permanent=False, waited=1e6, delay=30, timeout=120) == "retry"
    )
    assert after_failure(expected=500, permanent=True, waited=0, delay=1, timeout=120) == "retry"
    # first attempt: as before, bounded by restore_timeout, permanent errors give up at once
    assert after_failure(None, permanent=True, waited=0, delay=1, timeout=120) == "give-up"
    assert after_failure(None, permanent=False, waited=119, delay=2, timeout=120) == "give-up"
    assert after_failure(None, permanent=False, waited=10, delay=2, timeout=120) == "retry"


def test_backoff_is_capped() -> None:
    delay, seen = 0.5, []
    for _ in range(20):
        delay = next_delay(delay, 30)
        seen.append(delay)
    assert max(seen) == 30 and seen[-1] == 30 and seen[0] == 1.0


def test_an_older_or_empty_answer_than_the_saved_step_is_said_loudly() -> None:
    assert outcome_line(None, None, "s3://b/p") is None
    assert outcome_line(500, 500, "s3://b/p") is None
    level, text = outcome_line(500, 300, "s3://b/p") or (0, "")
    assert level == logging.ERROR and "step 300" in text and "200 step(s)" in text
    level, text = outcome_line(500, None, "s3://b/p") or (0, "")
    assert level == logging.ERROR and "from scratch" in text and "s3://b/p" in text


@pytest.mark.parametrize(
    ("raw", "step"),
    [("1200", 1200), (None, None), ("", None), ("-1", None), ("١٢", None), ("1e3", None)],
)
def test_expected_step_is_ascii_digits_only(raw: str | None, step: int | None) -> None:
    env = {} if raw is None else {EXPECTED_STEP_ENV: raw}
    assert PodEnv.from_env(env).expected_step == step


def test_sizes_beyond_the_limit_or_the_machine_are_refused_before_allocation() -> None:
    assert oversize(100, 100, None) is None
    assert "more than the 100" in (oversize(101, 100, 2**40) or "")
    assert oversize(2**50, None, 2**36) is not None and "memory" in (
        oversize(2**50, None, 2**36) or ""
    )
    assert oversize(2**30, None, 2**36) is None
    assert oversize(2**50, None, None) is None  # unknown memory: only an explicit limit applies


def test_purge_scope_is_the_checkpoint_layout_only() -> None:
    assert in_scope("checkpoints/step-000000000100/tensors.safetensors")
    assert in_scope("checkpoints/.tmp-step-000000000100-ab/state.json")
    assert not in_scope("checkpoints/notes.txt")
    assert not in_scope("data/train.csv")
    assert not in_scope("checkpoints/step-100/x")  # not the layout's 12 digits
    # the warm start's attempt-ended markers (spotrun.handoff) are the job's too
    assert in_scope("attempts/attempt-000000000003.json")
    assert not in_scope("attempts/notes.txt") and not in_scope("attempts/attempt-3.json")
    rels = [
        "checkpoints/step-000000000100/tensors.safetensors",
        "checkpoints/step-000000000100/MANIFEST.json",
        "readme.md",
    ]
    done = plan(rels, {"step-000000000100": "ns/a"}, "ns/a", "s3://b/p")
    assert done.refusal is None
    assert done.delete == [rels[1], rels[0]]  # the manifest first, unrelated objects stay


def test_purge_refuses_a_prefix_holding_another_jobs_checkpoints() -> None:
    nested = ["team-b/checkpoints/step-000000000001/MANIFEST.json"]
    refused = plan(nested, {}, "ns/a", "s3://b/team")
    assert refused.delete == [] and "team-b/checkpoints" in (refused.refusal or "")
    assert "s3://b/team" in (refused.refusal or "")
    mixed = {"step-000000000001": "ns/a", "step-000000000002": "ns/b"}
    other = plan(["checkpoints/step-000000000002/MANIFEST.json"], mixed, "ns/a", "/data")
    assert other.delete == [] and "ns/b" in (other.refusal or "")
    assert plan([], mixed, None, "/data").refusal is not None  # unknown purger, two jobs
    assert plan([], {"step-000000000001": None}, "ns/a", "/data").refusal is None  # old manifest


def test_manifest_job_of_hostile_blobs_is_none() -> None:
    assert manifest_job(b'{"job": "ns/a"}') == "ns/a"
    for blob in (b"", b"[]", b'{"job": 5}', b"[" * 100000, b'{"job": ""}'):
        assert manifest_job(blob) is None


def test_a_call_that_hangs_gives_up_at_its_deadline_and_a_moved_cap_applies_at_once() -> None:
    release = threading.Event()
    with pytest.raises(bounded.DeadlineExceeded, match="hanging call did not finish"):
        bounded.call(release.wait, bounded.within(0.5), "hanging call")
    cap: list[float | None] = [None]
    threading.Timer(0.3, lambda: cap.__setitem__(0, time.monotonic())).start()
    started = time.monotonic()
    with pytest.raises(bounded.DeadlineExceeded):
        bounded.call(release.wait, bounded.within(600, lambda: cap[0]), "capped call")
    assert time.monotonic() - started < 60  # generous: the 600 s allowance was cut by the cap
    release.set()
    assert bounded.call(lambda: 42, bounded.within(5), "quick") == 42
    with pytest.raises(ZeroDivisionError):
        bounded.run_all(
            lambda x: None if 1 // x else None, [1, 0, 2], 2, bounded.within(5), "parts"
        )
