"""Refusals of what the operator creates: the CRD refuses at admission what it can (name
length, reserved names, a trainerContainer that must exist), and a pod the API refuses all the
same becomes the job's condition and a Warning Event, retried with backoff, never every 2 s;
a refused cleanup pod lets a deleted job go after a few tries, saying its checkpoints stay."""

from __future__ import annotations

import copy
import dataclasses
import json
from datetime import timedelta
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from spotrun_operator import builders, cleanup, crd, injection, models, refusals
from spotrun_operator.decisions import parse_ts, plan
from spotrun_operator.kube import Refused, _refusal
from spotrun_operator.reconcile import InvalidJob, parse, reconcile_once
from tests.unit.operator.test_decisions import NOW, job

pytestmark = pytest.mark.unit

POD_SECURITY = {
    "kind": "Status",
    "reason": "Forbidden",
    "code": 403,
    "message": 'pods "a-1" is forbidden: violates PodSecurity "restricted:latest": '
    'allowPrivilegeEscalation != false (container "trainer" must set '
    "securityContext.allowPrivilegeEscalation=false)",
}
INVALID_IMAGE = {
    "kind": "Status",
    "reason": "Invalid",
    "code": 422,
    "message": 'Pod "a-1" is invalid: spec.containers[0].image: Required value',
    "details": {"causes": [{"field": "spec.containers[0].image", "message": "Required value"}]},
}


def body(name: str = "a", **spec: Any) -> dict[str, Any]:
    """A job as the API returns it."""
    out: dict[str, Any] = {
        "apiVersion": "spotrun.dev/v1alpha1",
        "kind": models.KIND,
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": "uid-1",
            "generation": 1,
            "resourceVersion": "100",
            "creationTimestamp": "2026-01-01T10:00:00Z",
        },
        "spec": {
            "template": {"spec": {"containers": [{"name": "trainer", "image": "img"}]}},
            "checkpoint": {"storage": {"uri": "s3://bucket/jobs/a"}},
        },
    }
    out["spec"].update(spec)
    return out


def schema() -> dict[str, Any]:
    return dict(crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


# --- what the CRD refuses at admission (and parse() for jobs stored before the rules) -------


def test_the_crd_caps_the_job_name_at_the_63_characters_of_a_label_value():
    assert models.NAME_RULE in schema()["x-kubernetes-validations"]
    assert "self.metadata.name.size() <= 63" == models.NAME_RULE["rule"]
    with pytest.raises(InvalidJob, match=r"metadata.name: at most 63 characters"):
        parse(body("x" * 64))
    longest = parse(body("x" * 63))
    pod = builders.desired_pod(longest, 99999, on_demand=False, gpus_available=False)
    assert all(len(v) <= 63 for v in pod["metadata"]["labels"].values())
    assert len(pod["metadata"]["name"]) <= 253
    refused = cleanup.cleanup_pod(longest, 99)
    assert all(len(v) <= 63 for v in refused["metadata"]["labels"].values())
    assert len(refused["metadata"]["name"]) <= 253


@pytest.mark.parametrize(
    ("field", "item", "reserved"),
    [
        ("containers", {"name": builders.SIDECAR, "image": "img"}, builders.SIDECAR),
        ("initContainers", {"name": builders.SIDECAR, "image": "img"}, builders.SIDECAR),
        ("volumes", {"name": builders.VOLUME, "emptyDir": {}}, builders.VOLUME),
        # what --sidecar-image injects (injection.py)
        ("containers", {"name": "spotrun-entrypoint", "image": "img"}, "spotrun-entrypoint"),
        ("initContainers", {"name": "spotrun-entrypoint", "image": "i"}, "spotrun-entrypoint"),
        ("volumes", {"name": "spotrun-bin", "emptyDir": {}}, "spotrun-bin"),
    ],
)
def test_names_the_operator_gives_its_own_parts_are_refused_in_the_template(field, item, reserved):
    pod = schema()["properties"]["spec"]["properties"]["template"]["properties"]["spec"]
    rule = next(
        r
        for r in pod["x-kubernetes-validations"]
        if r["fieldPath"] == f".{field}" and f"'{reserved}'" in r["rule"]
    )
    assert f"'{reserved}'" in rule["rule"] and f"spec.template.spec.{field}" in rule["message"]
    assert pod["properties"][field]["items"]["properties"]["name"]["type"] == "string"
    spec = body()["spec"]
    spec["template"]["spec"].setdefault(field, []).append(item)
    with pytest.raises(ValidationError, match=f"the name {reserved} is reserved"):
        models.JobSpec.model_validate(spec)


@pytest.mark.parametrize("path", ["/spotrun/bin", "/spotrun/bin/tools"])
def test_the_entrypoints_mount_path_is_refused_in_the_templates_containers(path):
    pod = schema()["properties"]["spec"]["properties"]["template"]["properties"]["spec"]
    assert models.MOUNT_RULE in pod["x-kubernetes-validations"]
    assert "'/spotrun/bin'" in models.MOUNT_RULE["rule"]
    mount = pod["properties"]["containers"]["items"]["properties"]["volumeMounts"]
    assert mount["items"]["properties"]["mountPath"]["type"] == "string"
    spec = body()["spec"]
    spec["template"]["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "tools", "mountPath": "/opt/tools"},
        {"name": "tools", "mountPath": path},
    ]
    with pytest.raises(ValidationError, match="the mount path /spotrun/bin is reserved"):
        models.JobSpec.model_validate(spec)
    spec["template"]["spec"]["containers"][0]["volumeMounts"][1]["mountPath"] = "/spotrun/binx"
    assert models.JobSpec.model_validate(spec)  # only that folder and below


def test_the_injected_names_are_the_reserved_ones():
    assert injection.INIT_CONTAINER == "spotrun-entrypoint"
    assert (injection.VOLUME, injection.DIR) == ("spotrun-bin", "/spotrun/bin")
    assert {(f, n) for f, n, _ in models.RESERVED} >= {
        ("initContainers", injection.INIT_CONTAINER),
        ("containers", injection.INIT_CONTAINER),
        ("volumes", injection.VOLUME),
    }


def test_a_trainer_container_must_name_a_container_of_the_template():
    spec_schema = schema()["properties"]["spec"]
    assert models.TRAINER_RULE in spec_schema["x-kubernetes-validations"]
    assert models.TRAINER_RULE["fieldPath"] == ".trainerContainer"
    with pytest.raises(ValidationError, match="spec.trainerContainer must name one of"):
        models.JobSpec.model_validate(body(trainerContainer="missing")["spec"])
    assert models.JobSpec.model_validate(body(trainerContainer="trainer")["spec"])


def test_a_job_stored_before_the_rules_fails_with_the_rule_s_message():
    bad = body(trainerContainer="missing")
    with pytest.raises(InvalidJob, match="ns/a: spec: .*trainerContainer must name one of"):
        parse(bad)


# --- what the API's refusal says --------------------------------------------------------------


def test_the_message_names_the_job_s_field_and_the_fix():
    text = refusals.explain("a-1", "ns", 422, INVALID_IMAGE)
    assert text.startswith('pod a-1 refused by the API (422 Invalid): Pod "a-1" is invalid')
    assert text.endswith("fix: correct spec.template.spec.containers[0].image")
    security = refusals.explain("a-1", "team", 403, POD_SECURITY)
    assert "violates PodSecurity" in security
    assert "meet the Pod Security level of namespace team" in security
    label = {
        "reason": "Invalid",
        "message": "metadata.labels: Invalid value: must be no more than 63 characters",
        "details": {"causes": [{"field": "metadata.labels"}]},
    }
    assert refusals.explain("a-1", "ns", 422, label).endswith(
        "use a job name of at most 63 characters"
    )


def test_an_init_container_field_is_named_as_in_the_template_not_the_pod():
    """The sidecar is the pod's first init container: the template's first is the pod's second."""
    answer = {"message": "bad", "details": {"causes": [{"field": "spec.initContainers[1].image"}]}}
    assert refusals.explain("a-1", "ns", 422, answer).endswith(
        "correct spec.template.spec.initContainers[0].image"
    )


TWO_INITS = {
    "spec": {
        "initContainers": [
            {"name": "fetch", "image": "busybox", "command": ["true"]},
            {"name": "warm", "image": "busybox", "command": ["true"]},
        ],
        "containers": [{"name": "trainer", "image": "img", "command": ["python", "t.py"]}],
    }
}


@pytest.mark.parametrize("operator_image", [None, "ghcr.io/spotrun/sidecar:0.1.0"])
def test_the_refused_field_is_named_by_the_created_pods_init_containers(operator_image):
    """With --sidecar-image the injected spotrun-entrypoint comes before the sidecar: each user
    init container is still named as in the template, and ours as what sets them."""
    j = dataclasses.replace(job(template=TWO_INITS), sidecar_image=operator_image)
    first = plan(j, [], {}, False, NOW)
    assert first.create is not None
    names = [c["name"] for c in first.create["spec"]["initContainers"]]
    ours = ["spotrun-entrypoint", "spotrun-sidecar"] if operator_image else ["spotrun-sidecar"]
    assert names == [*ours, "fetch", "warm"]
    causes = [{"field": f"spec.initContainers[{i}].image"} for i in range(len(names))]
    refusals.refused(first, j, 422, {"message": "bad", "details": {"causes": causes}}, NOW)
    (cond,) = [c for c in first.status.conditions if c.type == models.COND_POD_REFUSED]
    fix = cond.message.split("fix: correct ", 1)[1]
    assert "spec.checkpoint (the sidecar.image)" in fix
    assert "spec.template.spec.initContainers[0].image, " in fix
    assert "spec.template.spec.initContainers[1].image." in fix
    assert "initContainers[2]" not in fix
    entrypoint = "--sidecar-image / SPOTRUN_SIDECAR_IMAGE (chart value sidecar.image) (the "
    entrypoint += "operator's init container spotrun-entrypoint.image)"
    assert (entrypoint in fix) == bool(operator_image)


# --- the attempt pod refused ------------------------------------------------------------------


def test_a_refused_pod_becomes_the_condition_and_a_warning_then_waits_longer_each_time():
    first = plan(job(), [], {}, False, NOW)
    assert first.create is not None and first.events[0][1] == models.REASON_CREATED
    refusals.refused(first, job(), 403, POD_SECURITY, NOW)
    st = first.status
    assert first.create is None and st.activePod is None and st.podRefusals == 1
    assert parse_ts(st.notBefore) == NOW + timedelta(seconds=5) and first.requeue_after == 5
    (cond,) = [c for c in st.conditions if c.type == models.COND_POD_REFUSED]
    assert (cond.status, cond.reason) == ("True", models.REASON_POD_REFUSED)
    assert "violates PodSecurity" in cond.message and "fix: make spec.template" in cond.message
    assert [e[:2] for e in first.events] == [("Warning", models.REASON_POD_REFUSED)]  # not Created

    held = job(status=st.model_dump(mode="json"))
    early = plan(held, [], {}, False, NOW + timedelta(seconds=2))
    assert early.create is None and early.requeue_after == pytest.approx(3)  # no 2 s loop

    waits = []
    status = st
    for n in range(2, 10):
        later = NOW + timedelta(seconds=400 * n)
        again = plan(job(status=status.model_dump(mode="json")), [], {}, False, later)
        assert again.create is not None
        refusals.refused(again, job(), 403, POD_SECURITY, later)
        waits.append(again.requeue_after)
        status = again.status
    assert waits == [10, 20, 40, 80, 160, 300, 300, 300]


def test_a_changed_spec_is_tried_at_once_and_an_accepted_pod_clears_the_condition():
    first = plan(job(), [], {}, False, NOW)
    refusals.refused(first, job(), 422, INVALID_IMAGE, NOW)
    refused = first.status.model_dump(mode="json")
    assert refusals.after_spec_change(job(status=refused)).status.notBefore is not None
    fixed = job(status=refused)
    fixed = refusals.after_spec_change(type(fixed)(**{**fixed.__dict__, "generation": 2}))
    retry = plan(fixed, [], {}, False, NOW + timedelta(seconds=1))
    assert retry.create is not None
    refusals.accepted(retry.status, fixed, NOW)
    (cond,) = [c for c in retry.status.conditions if c.type == models.COND_POD_REFUSED]
    assert (cond.status, cond.reason, retry.status.podRefusals) == ("False", "PodCreated", 0)


# --- the reconcile pass, against an API that refuses -----------------------------------------


class RefusingKube:
    """The calls a pass makes, recorded; every pod create refused with ``answer``."""

    def __init__(self, job_body: dict[str, Any], answer: dict[str, Any]) -> None:
        self.body, self.answer = job_body, answer
        self.events: list[tuple[str, str, str]] = []
        self.creates = 0
        self.finalizers: list[bool] = []

    def get_job(self, namespace: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.body)

    def list_pods(self, namespace: str, name: str) -> list[dict[str, Any]]:
        return []

    list_labelled_pods = list_pods

    def list_jobs(self) -> list[dict[str, Any]]:
        return [copy.deepcopy(self.body)]

    def get_node(self, name: str) -> None:
        return None

    def create_pod(self, namespace: str, pod: dict[str, Any]) -> bool:
        self.creates += 1
        raise Refused(int(self.answer.get("code", 403)), dict(self.answer))

    def patch_status(self, namespace: str, name: str, rv: str, status: dict[str, Any]) -> Any:
        self.body["status"] = {k: v for k, v in status.items() if v is not None}
        return copy.deepcopy(self.body)

    def event(self, body: dict[str, Any], kind: str, reason: str, message: str) -> None:
        self.events.append((kind, reason, message))

    def set_job_finalizer(self, body: dict[str, Any], finalizer: str, present: bool) -> None:
        self.finalizers.append(present)
        names = [f for f in self.body["metadata"].get("finalizers", []) if f != finalizer]
        self.body["metadata"]["finalizers"] = names + ([finalizer] if present else [])

    def delete_pod(self, namespace: str, name: str) -> None:
        raise AssertionError("nothing to delete")


def test_a_pass_against_a_refusing_api_writes_the_condition_and_asks_back_in_5_s():
    kube = RefusingKube(
        body(checkpoint={"storage": {"uri": "s3://bkt/x"}, "deleteOnJobDeletion": True}),
        POD_SECURITY,
    )
    after = reconcile_once(kube, "ns", "a")  # type: ignore[arg-type]
    assert after == 5 and kube.creates == 1
    status = kube.body["status"]
    assert status["podRefusals"] == 1 and "activePod" not in status
    assert [c["type"] for c in status["conditions"]] == [models.COND_POD_REFUSED]
    assert kube.events and kube.events[-1][:2] == ("Warning", models.REASON_POD_REFUSED)
    assert kube.finalizers == [True]  # the pass went on: deleteOnJobDeletion still applies
    assert reconcile_once(kube, "ns", "a") is not None and kube.creates == 1  # type: ignore[arg-type]


def test_a_deleted_job_whose_cleanup_pod_is_refused_goes_after_three_tries_saying_so():
    deleted = body(checkpoint={"storage": {"uri": "s3://bkt/x"}, "deleteOnJobDeletion": True})
    deleted["metadata"].update(
        deletionTimestamp="2026-01-01T11:00:00Z", finalizers=[cleanup.FINALIZER]
    )
    kube = RefusingKube(deleted, POD_SECURITY)
    first = reconcile_once(kube, "ns", "a")  # type: ignore[arg-type]
    assert first == 5 and kube.creates == 1 and kube.finalizers == []
    assert kube.body["status"]["cleanupRefusals"] == 1
    assert kube.events[-1][:2] == ("Warning", models.REASON_POD_REFUSED)
    assert "try 1 of 3" in kube.events[-1][2].lower()
    assert reconcile_once(kube, "ns", "a") is not None and kube.creates == 1  # type: ignore[arg-type]
    for _ in range(2):  # the backoff over: tries 2 and 3
        kube.body["status"]["notBefore"] = "2000-01-01T00:00:00Z"
        reconcile_once(kube, "ns", "a")  # type: ignore[arg-type]
    assert kube.creates == 3 and kube.finalizers == [False]
    kind, reason, message = kube.events[-1]
    assert (kind, reason) == ("Warning", cleanup.REASON_ABANDONED)
    assert "the checkpoints under s3://bkt/x were NOT deleted" in message
    assert "violates PodSecurity" in message and "spotrun purge s3://bkt/x" in message


def test_the_containers_the_operator_adds_ask_what_pod_security_restricted_asks():
    """Else no template could fix a refusal in a ``restricted`` namespace: the sidecar and the
    cleanup container drop every capability and never escalate."""
    wanted = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    pod = builders.desired_pod(job(), 1, on_demand=False, gpus_available=False)
    assert pod["spec"]["initContainers"][0]["securityContext"] == wanted
    assert cleanup.cleanup_pod(job(), 1)["spec"]["containers"][0]["securityContext"] == wanted


def test_only_answers_a_retry_cannot_get_past_count_as_refusals():
    def answer(code: int, body: Any) -> ApiException:
        err = ApiException(status=code, reason="Reason")
        err.body = body
        return err

    refused = _refusal(answer(403, json.dumps(POD_SECURITY)))
    assert refused is not None and refused.code == 403
    assert refused.status["message"].startswith('pods "a-1" is forbidden')
    garbled = _refusal(answer(422, "<html>"))
    assert garbled is not None and garbled.status == {"message": "Reason"}
    for code in (409, 429, 500, 503):  # exists already, throttled, the server's own trouble
        assert _refusal(answer(code, "{}")) is None
