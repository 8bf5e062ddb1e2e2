"""A pod of the attempt's name that is not the job's: the operator names attempt pods
``<job>-<attempt>`` (a gang's ``<job>-<attempt>-<rank>``), so job ``a-1``'s first pod and rank 1
of gang ``a``'s first attempt are both ``a-1-1``, and a user's own pod may carry such a name.
Such a pod is not taken for the job's (the job would wait for a pod that never comes): the
create is a refusal naming the pod, its owner and the fix, tried again with backoff."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from spotrun_operator import models, owners
from spotrun_operator.reconcile import reconcile_once
from tests.unit.operator.test_refusals import RefusingKube, body

pytestmark = pytest.mark.unit

GANG = {"nodes": {"max": 2}, "procsPerNode": 1}


def pod(name: str, owner: str | None, uid: str) -> dict[str, Any]:
    refs = [{"kind": "ResumableTrainingJob", "name": owner, "uid": uid}] if owner else []
    return {"metadata": {"name": name, "ownerReferences": refs}}


class TakenKube(RefusingKube):
    """Every create finds its name taken (409); ``held`` is what a read of the name returns."""

    def __init__(self, job_body: dict[str, Any], held: dict[str, dict[str, Any]]) -> None:
        super().__init__(job_body, {})
        self.held = held
        self.made: list[str] = []
        self.deleted: list[str] = []

    def create_pod(self, namespace: str, pod: dict[str, Any]) -> bool:
        name = pod["metadata"]["name"]
        self.creates += 1
        if name in self.held:
            return False
        self.made.append(name)
        return True

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.held.get(name)

    def delete_pod(self, namespace: str, name: str) -> None:
        self.deleted.append(name)

    def create_service(self, namespace: str, body: dict[str, Any]) -> bool:
        return True


def test_rank_1_of_gang_a_meets_job_a_1s_pod_and_says_so_instead_of_waiting_for_it():
    kube = TakenKube(body(**GANG), {"a-1-1": pod("a-1-1", "a-1", "uid-9")})
    after = reconcile_once(kube, "ns", "a")  # type: ignore[arg-type]
    assert after == 5  # tried again in 5 s, doubling
    status = kube.body["status"]
    assert status["podRefusals"] == 1 and "activePod" not in status
    (cond,) = [c for c in status["conditions"] if c["type"] == models.COND_POD_REFUSED]
    assert cond["status"] == "True"
    kind, reason, message = kube.events[-1]
    assert (kind, reason) == ("Warning", models.REASON_POD_REFUSED)
    assert "pod a-1-1 exists and is not job a's (owned by ResumableTrainingJob a-1)" in message
    assert "fix: delete that pod, or give this job a name whose pod names are free" in message


def test_a_users_own_pod_named_like_the_attempt_is_named_as_ownerless():
    kube = TakenKube(body("train"), {"train-1": pod("train-1", None, "")})
    reconcile_once(kube, "ns", "train")  # type: ignore[arg-type]
    assert "pod train-1 exists and is not job train's (owned by no owner)" in kube.events[-1][2]
    assert kube.body["status"]["podRefusals"] == 1


def test_the_jobs_own_pod_met_again_is_a_retried_create_not_a_refusal():
    kube = TakenKube(body(), {"a-1": pod("a-1", "a", "uid-1")})  # the job's uid
    reconcile_once(kube, "ns", "a")  # type: ignore[arg-type]
    status = kube.body["status"]
    assert status["activePod"] == "a-1" and not status.get("podRefusals") and not kube.deleted
    assert not any(r == models.REASON_POD_REFUSED for _, r, _ in kube.events)


class UnreadableKube(TakenKube):
    """An install whose RBAC cannot read the pod (or the API fails the read)."""

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        raise ApiException(status=403, reason="Forbidden")


def test_a_pod_whose_owner_cannot_be_read_is_taken_as_the_jobs_as_before():
    kube = UnreadableKube(body(), {"a-1": pod("a-1", "other", "uid-9")})
    reconcile_once(kube, "ns", "a")  # type: ignore[arg-type]
    assert kube.body["status"]["activePod"] == "a-1"


@pytest.mark.parametrize(
    ("obj", "says"),
    [
        (None, None),  # gone again
        (pod("x", "a", "uid-1"), None),
        (pod("x", "b", "uid-2"), "ResumableTrainingJob b"),
        ({"metadata": {"ownerReferences": ["junk", {"kind": "Job", "name": "j", "uid": "u"}]}},
         "Job j"),
        ({"metadata": {}}, "no owner"),
        ({}, "no owner"),
    ],
)
def test_foreign_owner_reads_hostile_owner_lists(obj: dict[str, Any] | None, says: str | None):
    assert owners.foreign_owner(obj, "uid-1") == says


def test_a_gangs_ranks_made_before_the_taken_name_are_withdrawn():
    kube = TakenKube(body(**GANG), {"a-1-1": pod("a-1-1", "a-1", "uid-9")})
    reconcile_once(kube, "ns", "a")  # type: ignore[arg-type]
    assert kube.made == ["a-1-0"] and kube.deleted == ["a-1-0"]
    assert kube.body["status"]["podRefusals"] == 1


def test_a_pod_of_the_name_still_being_deleted_is_waited_for_not_blamed():
    gone = pod("a-1", "a", "uid-0")  # job a deleted and made again: its old pod terminates
    gone["metadata"]["deletionTimestamp"] = "2026-01-01T11:59:00Z"
    kube = TakenKube(body(), {"a-1": gone})
    reconcile_once(kube, "ns", "a")  # type: ignore[arg-type]
    message = kube.events[-1][2]
    assert "pod a-1 of ResumableTrainingJob a is still being deleted" in message
    assert "fix: none: the next try follows once it is gone" in message
