"""A node selector term without requirements (empty, or a misspelled key such as
``matchExpression``) is refused: ANDed with the other side's terms it would drop out, and a
"spot" pod could land on on-demand nodes. The CRD says it for spec.spot.nodeSelectorTerms,
the model for the template's own required terms too, and the merge refuses what slipped by."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from spotrun_operator import affinity, crd, models
from spotrun_operator.builders import desired_pod
from spotrun_operator.reconcile import InvalidJob, parse
from tests.unit.operator.test_decisions import job
from tests.unit.operator.test_refusals import body

pytestmark = pytest.mark.unit

SPOT = {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot"]}
GPU = {"key": "gpu", "operator": "In", "values": ["a100"]}
MISSPELLED = {"matchExpression": [SPOT]}


def spot_items_schema() -> dict[str, Any]:
    spec = crd.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    terms = spec["properties"]["spot"]["properties"]["nodeSelectorTerms"]
    items: dict[str, Any] = terms["items"]
    return items


def test_the_crd_refuses_a_spot_term_without_requirements() -> None:
    items = spot_items_schema()
    assert items["x-kubernetes-validations"] == [models.TERM_RULE]
    assert set(items["properties"]) == {"matchExpressions", "matchFields"}  # what CEL reads
    assert "matchExpressions.size() > 0" in models.TERM_RULE["rule"]


@pytest.mark.parametrize("term", [MISSPELLED, {}, {"matchExpressions": []}])
def test_a_spot_term_without_requirements_is_refused_naming_it(term: Any) -> None:
    spot = {"nodeSelectorTerms": [{"matchExpressions": [SPOT]}, term]}
    with pytest.raises(ValidationError, match=r"spec.spot.nodeSelectorTerms\[1\]: a node selector"):
        models.JobSpec.model_validate(body(spot=spot)["spec"])
    with pytest.raises(InvalidJob, match="ns/a: .*correct or remove it"):
        parse(body(spot=spot))


@pytest.mark.parametrize("term", [{"matchExpressions": [SPOT]}, {"matchFields": [SPOT]}])
def test_a_term_with_requirements_is_taken(term: dict[str, Any]) -> None:
    spec = models.JobSpec.model_validate(body(spot={"nodeSelectorTerms": [term]})["spec"])
    assert spec.spot.nodeSelectorTerms == [term]


def test_a_template_with_an_empty_required_term_is_refused() -> None:
    spec = body()["spec"]
    spec["template"]["spec"]["affinity"] = {
        "nodeAffinity": {
            affinity.REQUIRED: {"nodeSelectorTerms": [{"matchExpressions": [GPU]}, MISSPELLED]}
        }
    }
    with pytest.raises(ValidationError, match=r"nodeSelectorTerms\[1\]: a node selector term"):
        models.JobSpec.model_validate(spec)


def test_the_merge_never_lets_a_term_without_requirements_drop_out() -> None:
    """Before: the misspelled spot term ANDed into just the template's GPU term, so the pod
    required a GPU node and nothing about spot."""
    own = {
        "nodeAffinity": {affinity.REQUIRED: {"nodeSelectorTerms": [{"matchExpressions": [GPU]}]}}
    }
    with pytest.raises(ValueError, match="the operator's required node affinity term"):
        affinity.merged(own, [MISSPELLED], [])
    with pytest.raises(ValueError, match="the template's required node affinity term"):
        affinity.merged(
            {"nodeAffinity": {affinity.REQUIRED: {"nodeSelectorTerms": [{}]}}},
            [{"matchExpressions": [SPOT]}],
            [],
        )
    joined = affinity.merged(own, [{"matchExpressions": [SPOT]}], [])
    (term,) = joined["nodeAffinity"][affinity.REQUIRED]["nodeSelectorTerms"]
    assert term == {"matchExpressions": [GPU, SPOT]}


def test_a_spot_pod_with_the_template_s_own_terms_still_requires_spot() -> None:
    template = {
        "spec": {
            "containers": [{"name": "trainer", "image": "img", "command": ["python"]}],
            "affinity": {
                "nodeAffinity": {
                    affinity.REQUIRED: {"nodeSelectorTerms": [{"matchExpressions": [GPU]}]}
                }
            },
        }
    }
    pod = desired_pod(job(template=template), 1, on_demand=False, gpus_available=False)
    terms = pod["spec"]["affinity"]["nodeAffinity"][affinity.REQUIRED]["nodeSelectorTerms"]
    assert terms and all(GPU in t["matchExpressions"] for t in terms)
    assert all(
        any(e["key"] != "gpu" for e in t["matchExpressions"]) for t in terms
    )  # each term also holds a spot requirement
