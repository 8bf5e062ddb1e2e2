"""Karpenter consolidation is not a spot interruption: attempt pods carry
karpenter.sh/do-not-disrupt unless the job lets Karpenter move them
(spec.disruption.doNotDisrupt)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from spotrun_operator.builders import DO_NOT_DISRUPT, desired_pod
from spotrun_operator.crd import crd
from spotrun_operator.decisions import plan
from tests.unit.operator.test_decisions import job

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


def annotations(**spec) -> dict[str, str]:
    pod = desired_pod(job(**spec), 1, on_demand=False, gpus_available=False)
    return dict(pod["metadata"].get("annotations") or {})


def test_attempt_pods_are_protected_from_consolidation_by_default():
    assert annotations()[DO_NOT_DISRUPT] == "true"
    created = plan(job(), [], {}, False, NOW).create
    assert created is not None and created["metadata"]["annotations"][DO_NOT_DISRUPT] == "true"


def test_on_demand_attempts_are_protected_too():
    pod = desired_pod(job(), 2, on_demand=True, gpus_available=False)
    assert pod["metadata"]["annotations"][DO_NOT_DISRUPT] == "true"


def test_a_job_can_let_karpenter_move_its_pods():
    assert DO_NOT_DISRUPT not in annotations(disruption={"doNotDisrupt": False})


def test_the_templates_own_annotations_are_kept():
    template = {
        "metadata": {"annotations": {"team": "vision", DO_NOT_DISRUPT: "false"}},
        "spec": {"containers": [{"name": "trainer", "image": "img", "command": ["python"]}]},
    }
    assert annotations(template=template) == {"team": "vision", DO_NOT_DISRUPT: "false"}
    template["metadata"]["annotations"].pop(DO_NOT_DISRUPT)
    off = annotations(template=template, disruption={"doNotDisrupt": False})
    assert off == {"team": "vision"}


def test_the_field_is_in_the_crd_with_its_default_and_description():
    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    field = schema["properties"]["disruption"]["properties"]["doNotDisrupt"]
    assert field["type"] == "boolean" and field["default"] is True
    assert "karpenter.sh/do-not-disrupt" in field["description"]


def test_a_typo_in_the_field_is_refused():
    with pytest.raises(ValidationError, match="doNotDisrupts"):
        job(disruption={"doNotDisrupts": False})
