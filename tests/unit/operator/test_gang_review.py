"""Gangs, found in review: the headless Service's name and owner, the failed rank named, specs
a gang cannot run (a claim, time-based saves), the current pods after an edit of nodes.max."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from spotrun_operator import builders, gang, reconcile
from spotrun_operator import models as m
from spotrun_operator.decisions import Plan, plan
from spotrun_operator.models import JobSpec
from tests.unit.operator.test_gang import GANG, NODES, NOW, ended, job, started_gang

pytestmark = pytest.mark.unit


def test_jobs_whose_names_map_to_one_dns_label_get_distinct_services():
    assert gang.service_name("a-b") == "a-b"  # a name that is a label stays as it is
    dotted = gang.service_name("a.b")
    assert dotted.startswith("a-b-") and dotted != "a-b" and len(dotted) == len("a-b-") + 6
    assert gang.service_name("9lives") not in ("rtj-9lives", gang.service_name("rtj-9lives"))
    long = "x" * 70
    assert len(gang.service_name(long)) <= 63 and gang.service_name(long) != "x" * 63
    assert gang.master_addr("a.b", 2) == f"a-b-2-0.{dotted}"


class ServiceKube:
    """create_service finds the name taken (409); get_service returns ``held``."""

    def __init__(self, held: dict[str, Any] | None) -> None:
        self.held = held

    def create_service(self, namespace: str, body: dict[str, Any]) -> bool:
        return False

    def get_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.held


def service_of(uid: str) -> dict[str, Any]:
    owner = {"kind": "ResumableTrainingJob", "name": "other", "uid": uid}
    return {"metadata": {"name": "a", "ownerReferences": [owner]}}


@pytest.mark.parametrize(
    ("held", "conflict"),
    [(service_of("uid-1"), False), (None, False), (service_of("uid-9"), True),
     ({"metadata": {"name": "a"}}, True)],
)
def test_a_service_in_the_way_that_is_not_the_jobs_own_is_named_and_holds_the_pods_back(
    held: dict[str, Any] | None, conflict: bool
):
    j = job(**GANG)  # uid-1
    out = Plan(status=j.status, service=builders.gang_service(j))
    said = reconcile._create_service(ServiceKube(held), j, out)  # type: ignore[arg-type]
    assert (said is not None) == conflict and not out.events
    if said is not None:
        assert "Service a exists and is not job a's" in said and "not created" in said
        owner = "ResumableTrainingJob other" if held and held["metadata"].get(
            "ownerReferences") else "no owner"
        assert f"owned by {owner}" in said


class GangKube(ServiceKube):
    """A pass's pod creates, recorded."""

    def __init__(self, held: dict[str, Any] | None) -> None:
        super().__init__(held)
        self.pods: list[str] = []

    def create_pod(self, namespace: str, body: dict[str, Any]) -> bool:
        self.pods.append(body["metadata"]["name"])
        return True

    def list_jobs(self) -> list[dict[str, Any]]:
        return []


def test_a_gang_whose_service_is_anothers_creates_no_pods_and_says_what_to_fix():
    j = job(**GANG)
    out = plan(j, [], {}, False, NOW)
    assert out.create is not None and out.service is not None
    kube = GangKube(service_of("uid-9"))
    assert reconcile._create(kube, {}, j, out) is None  # type: ignore[arg-type]
    assert kube.pods == [] and out.create is None and out.create_rest == []
    assert out.status.podRefusals == 1 and out.status.notBefore is not None
    (message,) = [msg for k, r, msg in out.events if r == m.REASON_POD_REFUSED]
    assert "Service a exists and is not job a's (owned by ResumableTrainingJob other)" in message
    assert "fix: delete or rename that Service, or rename this job" in message
    owned = GangKube(service_of("uid-1"))  # the job's own Service, met again: pods made
    again = plan(j, [], {}, False, NOW)
    reconcile._create(owned, {}, j, again)  # type: ignore[arg-type]
    assert owned.pods == ["a-1-0", "a-1-1"]


class ForbiddenRead(ServiceKube):
    """An install whose RBAC predates services/get: reading the Service is refused."""

    def get_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        raise ApiException(status=403, reason="Forbidden")


def test_a_service_whose_owner_cannot_be_read_does_not_stop_the_gang():
    j = job(**GANG)
    out = Plan(status=j.status, service=builders.gang_service(j))
    reconcile._create_service(ForbiddenRead(None), j, out)  # type: ignore[arg-type]
    assert not out.events  # taken as the job's own; the pods are created after it


def test_attempt_failed_names_the_rank_that_ended_first_not_the_lowest():
    j, (zero, one) = started_gang(backoffLimit=2)
    pods = [ended(zero, "Failed", 1, finished=NOW - timedelta(seconds=55)),
            ended(one, "Failed", 137, finished=NOW - timedelta(seconds=60))]
    out = plan(j, pods, NODES, False, NOW)
    ending = out.status.gang.ending if out.status.gang else None
    assert ending is not None and ending.outcome == "Failed"
    assert ending.why.startswith("rank 1 (a-1-1 on node n1) failed") and ending.exitCode == 137
    assert ending.ranks == [0, 1]
    # both are over: the same pass records it
    assert out.status.failures == 1
    assert any(r == "AttemptFailed" and "rank 1 (a-1-1" in msg for _, r, msg in out.events)


BODY = {"template": {"spec": {"containers": [{"name": "t", "image": "i"}]}}}
S3 = {"storage": {"uri": "s3://bkt/a"}}


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ({"nodes": {"max": 2}, "checkpoint": {"storage": {"pvc": {"claimName": "c"}}}},
         "storage.pvc cannot be used with nodes.max > 1"),
        ({"nodes": {"max": 2}, "checkpoint": {**S3, "intervalSeconds": 60}},
         "intervalSeconds cannot be used with several ranks"),
        ({"procsPerNode": 2, "checkpoint": {**S3, "intervalSeconds": 60}},
         "use spec.checkpoint.intervalSteps"),
    ],
)
def test_specs_a_gang_cannot_run_are_refused_naming_the_fix(spec: dict[str, Any], says: str):
    with pytest.raises(ValidationError, match=says):
        JobSpec.model_validate({**BODY, **spec})


def test_what_a_gang_can_run_is_taken():
    single = JobSpec.model_validate(
        {**BODY, "checkpoint": {"storage": {"pvc": {"claimName": "c"}}, "intervalSeconds": 60}})
    assert single.checkpoint.intervalSeconds == 60
    steps = JobSpec.model_validate(
        {**BODY, "nodes": {"max": 2}, "checkpoint": {**S3, "intervalSteps": 50}})
    assert steps.checkpoint.intervalSteps == 50


def test_the_crd_carries_the_same_rules():
    rules = [r["rule"] for r in JobSpec.model_json_schema()["x-kubernetes-validations"]]
    assert m.GANG_PVC_RULE["rule"] in rules and m.GANG_INTERVAL_RULE["rule"] in rules


def test_the_current_pods_after_an_edit_of_nodes_max_are_the_gangs_as_made():
    j, _ = started_gang()
    edited = job(j.status.model_dump())  # nodes.max back to 1 while the gang runs
    assert reconcile._current_names(edited) == {"a-1-0", "a-1-1"}
    grown = job({"attempt": 1, "activePod": "a-1", "phase": "Running"}, **GANG)
    assert reconcile._current_names(grown) == {"a-1"}  # a single pod in flight stays one
