"""The API server refuses what a gang cannot run (the CRD's CEL rules): a gang on a claim, and
time-based saves with several ranks. (spec.nodes.min's shrink and grow-back on real kubelets:
tests/kind/test_elastic_on_kind.py.)"""

from __future__ import annotations

import pytest
from kubernetes import client
from test_operator_refusals import job as plain_job
from test_operator_refusals import refused_by_api

pytestmark = pytest.mark.e2e


def test_the_api_refuses_a_gang_on_a_claim_and_time_based_saves_with_several_ranks(
    cluster, namespace, crd
):
    custom = client.CustomObjectsApi(cluster.api)
    claim = plain_job("claim", nodes={"max": 2})
    claim["spec"]["checkpoint"] = {"storage": {"pvc": {"claimName": "c"}}}
    answer = refused_by_api(custom, namespace, claim)
    assert "storage.pvc cannot be used with nodes.max" in answer, answer  # ">" is escaped
    for spec in ({"nodes": {"max": 2}}, {"procsPerNode": 2}):
        timed = plain_job("timed", ckpt={"intervalSeconds": 60}, **spec)
        answer = refused_by_api(custom, namespace, timed)
        assert "use spec.checkpoint.intervalSteps" in answer, answer
