"""Two jobs never share checkpoint storage: S3 prefixes that overlap (compared by path
segments, on one endpoint and bucket) hold the newer job back with a condition naming the job
that keeps the storage; PVC jobs on one claim each mount a sub-path of their own."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from spotrun_operator import builders, cleanup, models, overlap
from spotrun_operator.decisions import parse_ts, plan
from tests.unit.operator.test_decisions import NOW, job

pytestmark = pytest.mark.unit


def rtj(
    name: str,
    uri: str | None,
    created: str = "2026-01-01T10:00:00Z",
    endpoint: str | None = "http://s3:9000",
    **status: Any,
) -> dict[str, Any]:
    """A job as the API lists it."""
    storage: dict[str, Any] = (
        {"uri": uri, "endpoint": endpoint} if uri else {"pvc": {"claimName": "c"}}
    )
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "creationTimestamp": created,
        },
        "spec": {"checkpoint": {"storage": storage}},
        "status": status,
    }


def place(uri: str, endpoint: str | None = "http://s3:9000") -> overlap.Place:
    found = overlap.place(uri, endpoint)
    assert found is not None
    return found


@pytest.mark.parametrize(
    ("a", "b", "shared"),
    [
        ("s3://bkt/team/a", "s3://bkt/team/a", True),
        ("s3://bkt/team/a/", "s3://bkt/team/a", True),
        ("s3://bkt/team", "s3://bkt/team/a", True),
        ("s3://bkt/team/a/run1", "s3://bkt/team/a", True),
        ("s3://bkt", "s3://bkt/anything", True),
        ("s3://bkt/a", "s3://bkt/ab", False),
        ("s3://bkt/team/a", "s3://bkt/team/b", False),
        ("s3://bkt/a", "s3://other/a", False),
    ],
)
def test_prefixes_overlap_by_whole_path_segments(a, b, shared):
    assert overlap.overlap(place(a), place(b)) is shared
    assert overlap.overlap(place(b), place(a)) is shared


def test_the_same_prefix_on_another_endpoint_is_other_storage():
    assert not overlap.overlap(place("s3://bkt/a"), place("s3://bkt/a", "http://minio:9000"))
    assert overlap.overlap(place("s3://bkt/a", "http://S3:9000/"), place("s3://bkt/a"))


def test_the_older_job_keeps_the_storage_and_the_newer_one_is_held_back():
    old = rtj("old", "s3://bkt/team", "2026-01-01T09:00:00Z")
    new = rtj("new", "s3://bkt/team/new", "2026-01-01T10:00:00Z")
    assert overlap.holder(new, [old, new]) is old
    assert overlap.holder(old, [old, new]) is None
    tie_a, tie_b = rtj("a", "s3://bkt/x"), rtj("b", "s3://bkt/x")  # same second: by name
    assert overlap.holder(tie_b, [tie_a, tie_b]) is tie_a
    assert overlap.holder(tie_a, [tie_a, tie_b]) is None


def test_a_newer_job_that_already_runs_keeps_its_storage():
    """Two passes in the same instant: the one that made its pod first is not stopped."""
    running_newer = rtj("b", "s3://bkt/x", "2026-01-01T10:00:01Z", activePod="b-1", attempt=1)
    older = rtj("a", "s3://bkt/x", "2026-01-01T10:00:00Z")
    assert overlap.holder(older, [older, running_newer]) is running_newer


def test_finished_deleted_and_pvc_jobs_hold_no_storage():
    me = rtj("me", "s3://bkt/x", "2026-01-01T12:00:00Z")
    done = rtj("done", "s3://bkt/x", "2026-01-01T09:00:00Z", phase="Succeeded")
    failed = rtj("failed", "s3://bkt/x", "2026-01-01T09:00:00Z", phase="Failed")
    going = rtj("going", "s3://bkt/x", "2026-01-01T09:00:00Z")
    going["metadata"]["deletionTimestamp"] = "2026-01-01T11:00:00Z"
    on_claim = rtj("claim", None, "2026-01-01T09:00:00Z")
    assert overlap.holder(me, [done, failed, going, on_claim, me]) is None
    assert overlap.holder(on_claim, [me, on_claim]) is None


def test_a_held_back_job_gets_the_condition_and_one_event_and_no_pod():
    other = rtj("old", "s3://bucket/jobs", "2026-01-01T09:00:00Z", activePod="old-3", attempt=3)
    first = plan(job(), [], {}, False, NOW)
    assert overlap.first_pod(job(), first)
    overlap.apply(first, job(), other, NOW)
    st = first.status
    assert first.create is None and st.activePod is None
    assert parse_ts(st.notBefore) == NOW + timedelta(seconds=overlap.RECHECK_SECONDS)
    (cond,) = [c for c in st.conditions if c.type == models.COND_STORAGE_CONFLICT]
    assert (cond.status, cond.reason) == ("True", models.REASON_STORAGE_OVERLAP)
    assert "s3://bucket/jobs/a overlaps s3://bucket/jobs of job ns/old" in cond.message
    assert "give this job a prefix of its own" in cond.message
    assert first.events == [("Warning", models.REASON_STORAGE_OVERLAP, cond.message)]

    later = NOW + timedelta(seconds=overlap.RECHECK_SECONDS)
    held = job(status=st.model_dump(mode="json"))
    again = plan(held, [], {}, False, later)
    assert overlap.first_pod(held, again)
    overlap.apply(again, held, other, later)
    assert again.create is None and again.events == []  # said once, not every recheck

    freed = plan(held, [], {}, False, later)
    overlap.apply(freed, held, None, later)
    assert freed.create is not None
    (cond,) = [c for c in freed.status.conditions if c.type == models.COND_STORAGE_CONFLICT]
    assert (cond.status, cond.reason) == ("False", models.REASON_STORAGE_FREE)


def test_the_check_runs_only_before_a_job_s_first_pod():
    running = job(status={"attempt": 1, "activePod": "a-1", "phase": "Running"})
    second = job(status={"attempt": 2, "phase": "Restarting"})
    assert not overlap.first_pod(second, plan(second, [], {}, False, NOW))
    assert not overlap.first_pod(running, plan(running, [], {}, False, NOW))
    on_claim = job(checkpoint={"storage": {"pvc": {"claimName": "c"}}})
    assert not overlap.first_pod(on_claim, plan(on_claim, [], {}, False, NOW))


def test_two_pvc_jobs_on_one_claim_mount_and_purge_only_their_own_folder():
    claim = {"storage": {"pvc": {"claimName": "shared"}}, "path": "/ckpt"}
    a = job(checkpoint=claim)
    b = builders.Job("b", "ns", "uid-b", 1, "1", a.spec, a.status)
    mounts = []
    for one in (a, b):
        pod = builders.desired_pod(one, 1, on_demand=False, gpus_available=False)["spec"]
        trainer, sidecar = pod["containers"][0], pod["initContainers"][0]
        mine = [m for m in trainer["volumeMounts"] if m["name"] == builders.VOLUME]
        assert mine == sidecar["volumeMounts"]
        purge = cleanup.cleanup_pod(one, 1)["spec"]["containers"][0]["volumeMounts"]
        assert purge == mine
        mounts.append(mine[0])
    assert [m["subPath"] for m in mounts] == ["a", "b"]
    assert {m["mountPath"] for m in mounts} == {"/ckpt"}
