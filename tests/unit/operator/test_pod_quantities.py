"""Quantities a user wrote as YAML numbers reach the API as strings: the Python client refuses
ints there, so such a pod could never be created."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from pydantic import ValidationError

from spotrun_operator.builders import desired_pod
from tests.unit.operator.test_decisions import job

pytestmark = pytest.mark.unit


class Sent(Exception):
    """The client validated the body and got as far as sending it."""


def send(pod: dict[str, Any]) -> None:
    api = client.CoreV1Api(client.ApiClient(client.Configuration(host="http://127.0.0.1:9")))

    def call_api(*_: Any, **__: Any) -> None:
        raise Sent

    api.api_client.call_api = call_api  # type: ignore[method-assign]
    api.create_namespaced_pod("ns", pod, _preload_content=False)


def test_numeric_quantities_in_the_template_become_strings():
    j = job()
    template = j.spec.template["spec"]
    template["containers"][0]["resources"] = {
        "limits": {"cpu": 2, "memory": "1Gi"},
        "requests": {"cpu": 0.5},
    }
    template["overhead"] = {"cpu": 1}
    template["volumes"] = [{"name": "scratch", "emptyDir": {"sizeLimit": 1000}}]
    with pytest.raises(ValidationError):
        send({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": template})

    pod = desired_pod(j, 1, on_demand=False, gpus_available=False)
    spec = pod["spec"]
    assert spec["containers"][0]["resources"] == {
        "limits": {"cpu": "2", "memory": "1Gi"},
        "requests": {"cpu": "0.5"},
    }
    assert spec["overhead"] == {"cpu": "1"}
    assert spec["volumes"][0]["emptyDir"] == {"sizeLimit": "1000"}
    with pytest.raises(Sent):
        send(pod)


def test_gpu_request_is_a_string_quantity():
    pod = desired_pod(job(gpu={"count": 2}), 1, on_demand=False, gpus_available=True)
    assert pod["spec"]["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    with pytest.raises(Sent):
        send(pod)
