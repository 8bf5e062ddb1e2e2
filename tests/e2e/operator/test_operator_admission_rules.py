"""The API server itself (the CRD's CEL rules, no operator running) refuses a spot node
selector term without requirements (a misspelled ``matchExpression``: it would have dropped
out of the merged affinity) and the names and mount path the injected entrypoint uses, and
takes the same job once corrected."""

from __future__ import annotations

import pytest
from kubernetes import client
from operator_support import ARGS, PLURAL
from test_operator_refusals import job, refused_by_api

pytestmark = pytest.mark.e2e

SPOT = {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]}


def test_the_api_refuses_a_spot_term_without_requirements(cluster, namespace, crd):
    custom = client.CustomObjectsApi(cluster.api)
    for term in ({"matchExpression": [SPOT]}, {}, {"matchExpressions": []}):
        body = job("terms", spot={"nodeSelectorTerms": [{"matchExpressions": [SPOT]}, term]})
        answer = refused_by_api(custom, namespace, body)
        assert "spec.spot.nodeSelectorTerms[1]" in answer, answer
        assert "needs a non-empty matchExpressions or matchFields" in answer, answer
    fine = job("terms", spot={"nodeSelectorTerms": [{"matchFields": [SPOT]}]})
    custom.create_namespaced_custom_object(*ARGS, namespace, PLURAL, fine)
    custom.delete_namespaced_custom_object(*ARGS, namespace, PLURAL, "terms")


def test_the_api_refuses_what_the_injected_entrypoint_uses(cluster, namespace, crd):
    custom = client.CustomObjectsApi(cluster.api)
    for field, item, reserved in (
        ("containers", {"name": "spotrun-entrypoint", "image": "img"}, "spotrun-entrypoint"),
        ("initContainers", {"name": "spotrun-entrypoint", "image": "img"}, "spotrun-entrypoint"),
        ("volumes", {"name": "spotrun-bin", "emptyDir": {}}, "spotrun-bin"),
    ):
        body = job("reserved")
        body["spec"]["template"]["spec"].setdefault(field, []).append(item)
        answer = refused_by_api(custom, namespace, body)
        assert f"the name {reserved} is reserved" in answer, answer
    body = job("mounts")
    trainer = body["spec"]["template"]["spec"]["containers"][0]
    trainer["volumeMounts"] = [{"name": "tools", "mountPath": "/spotrun/bin"}]
    answer = refused_by_api(custom, namespace, body)
    assert "the mount path /spotrun/bin is reserved" in answer, answer
    trainer["volumeMounts"] = [{"name": "tools", "mountPath": "/spotrun/binaries"}]
    body["spec"]["template"]["spec"]["volumes"] = [{"name": "tools", "emptyDir": {}}]
    custom.create_namespaced_custom_object(*ARGS, namespace, PLURAL, body)
    custom.delete_namespaced_custom_object(*ARGS, namespace, PLURAL, "mounts")
