"""The CRD as the API server enforces it: bad specs are refused at admission, readably."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

pytestmark = pytest.mark.e2e

ARGS = ("spotrun.dev", "v1alpha1")
VALID: dict[str, Any] = {
    "apiVersion": "spotrun.dev/v1alpha1",
    "kind": "ResumableTrainingJob",
    "metadata": {"name": "ok"},
    "spec": {
        "template": {"spec": {"containers": [{"name": "trainer", "image": "img",
                                              "command": ["python", "train.py"]}]}},
        "checkpoint": {"storage": {"uri": "s3://bucket/prefix", "secretRef": {"name": "s3"}}},
    },
}


def _set(path: str, value: Any) -> Any:
    def mutate(body: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = body
        for key in parents:
            node = node.setdefault(key, {})
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return mutate


DELETE = object()

# (what is wrong, how to break the valid spec, words the API server's message must contain)
INVALID = [
    ("no template", _set("spec.template", DELETE), "spec.template: Required value"),
    ("no checkpoint", _set("spec.checkpoint", DELETE), "spec.checkpoint: Required value"),
    ("template without containers", _set("spec.template.spec", {}), "containers"),
    ("empty containers", _set("spec.template.spec.containers", []), "containers"),
    ("container without image", _set("spec.template.spec.containers", [{"name": "t"}]),
     "image"),
    ("template not an object", _set("spec.template", "pod"), "spec.template"),
    ("backoffLimit negative", _set("spec.backoffLimit", -1), "spec.backoffLimit"),
    ("backoffLimit a string", _set("spec.backoffLimit", "three"), "spec.backoffLimit"),
    ("suspend a string", _set("spec.suspend", "yes"), "spec.suspend"),
    ("gpu count negative", _set("spec.gpu", {"count": -1}), "spec.gpu.count"),
    ("gpu fallback unknown", _set("spec.gpu", {"count": 1, "fallback": "tpu"}),
     "spec.gpu.fallback"),
    ("maxPreemptions negative", _set("spec.spot", {"maxPreemptions": -2}),
     "spec.spot.maxPreemptions"),
    ("fallbackToOnDemandAfter zero", _set("spec.spot", {"fallbackToOnDemandAfter": 0}),
     "spec.spot.fallbackToOnDemandAfter"),
    ("fallback beyond maxPreemptions",
     _set("spec.spot", {"fallbackToOnDemandAfter": 5, "maxPreemptions": 2}),
     "must not exceed spot.maxPreemptions"),
    ("spot.enabled a number", _set("spec.spot", {"enabled": 3}), "spec.spot.enabled"),
    ("uri with a bad scheme", _set("spec.checkpoint.storage.uri", "gs://bucket/x"),
     "spec.checkpoint.storage.uri"),
    ("uri without bucket", _set("spec.checkpoint.storage.uri", "s3://"),
     "spec.checkpoint.storage.uri"),
    ("endpoint not a URL", _set("spec.checkpoint.storage.endpoint", "s3.local:9000"),
     "spec.checkpoint.storage.endpoint"),
    ("neither uri nor pvc", _set("spec.checkpoint.storage", {}),
     "exactly one of uri (s3://...) or pvc"),
    ("both uri and pvc", _set("spec.checkpoint.storage.pvc", {"claimName": "nfs"}),
     "exactly one of uri (s3://...) or pvc"),
    ("secretRef with a bad name", _set("spec.checkpoint.storage.secretRef", {"name": "Bad_Name"}),
     "spec.checkpoint.storage.secretRef.name"),
    ("keep zero", _set("spec.checkpoint.keep", 0), "spec.checkpoint.keep"),
    ("intervalSteps zero", _set("spec.checkpoint.intervalSteps", 0),
     "spec.checkpoint.intervalSteps"),
    ("keepBest mode unknown", _set("spec.checkpoint.keepBest", {"metric": "acc", "mode": "up"}),
     "spec.checkpoint.keepBest.mode"),
    ("relative checkpoint path", _set("spec.checkpoint.path", "ckpt"), "spec.checkpoint.path"),
    ("grace period too short", _set("spec.terminationGracePeriodSeconds", 1),
     "spec.terminationGracePeriodSeconds"),
    ("negative price", _set("spec.cost", {"spotHourly": -1}), "spec.cost.spotHourly"),
    ("unknown field", _set("spec.retries", 3), 'unknown field "spec.retries"'),
    ("unknown nested field", _set("spec.spot.preemptible", True),
     'unknown field "spec.spot.preemptible"'),
]


@pytest.fixture
def custom(cluster: Any, crd: Any) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(cluster.api)


def test_a_valid_job_is_accepted_with_defaults(custom, namespace):
    created = custom.create_namespaced_custom_object(
        *ARGS, namespace, "resumabletrainingjobs", copy.deepcopy(VALID), field_validation="Strict")
    spec = created["spec"]
    assert spec["backoffLimit"] == 3 and spec["suspend"] is False
    assert spec["spot"]["enabled"] is True and spec["spot"]["maxPreemptions"] == 20
    assert spec["gpu"] == {"count": 0, "fallback": "none", "resourceName": "nvidia.com/gpu"}
    assert spec["checkpoint"]["keep"] == 3
    short = custom.list_namespaced_custom_object(*ARGS, namespace, "resumabletrainingjobs")
    assert [i["metadata"]["name"] for i in short["items"]] == ["ok"]


@pytest.mark.parametrize(("case", "mutate", "words"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_spec_is_rejected_with_a_readable_message(custom, namespace, case, mutate, words):
    body = copy.deepcopy(VALID)
    body["metadata"]["name"] = "bad"
    mutate(body)
    with pytest.raises(ApiException) as err:
        custom.create_namespaced_custom_object(
            *ARGS, namespace, "resumabletrainingjobs", body, field_validation="Strict")
    assert err.value.status in (400, 422), err.value.body
    message = json.loads(err.value.body)["message"]
    assert words in message, f"{case}: {message}"


def test_at_least_twenty_kinds_of_invalid_spec():
    assert len(INVALID) >= 20
