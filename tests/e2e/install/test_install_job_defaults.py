"""jobDefaults: the chart's MutatingAdmissionPolicy fills in spot node selection and S3
storage that a new job leaves out, in the namespaces it is bound to; a job's own values win."""

from __future__ import annotations

import copy
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_support import wait_for
from install_support import CHART, MANIFESTS, Tools

pytestmark = pytest.mark.e2e

TERMS = [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["cheap"]}]}]
TOLERATIONS = [{"key": "pool", "operator": "Equal", "value": "cheap", "effect": "NoSchedule"}]
BARE = {
    "apiVersion": "spotrun.dev/v1alpha1", "kind": "ResumableTrainingJob",
    "metadata": {"name": "bare"},
    "spec": {"template": {"spec": {"containers": [
        {"name": "trainer", "image": "trainer:1", "command": ["python", "train.py"]}]}}},
}


@pytest.fixture
def job_defaults(tools: Tools, helm_bin: Path, namespace: str) -> Iterator[str]:
    """The policy of release "defaults", bound to ``namespace`` only."""
    values = {"jobDefaults": {
        "namespaces": [namespace],
        "spot": {"nodeSelectorTerms": TERMS, "tolerations": TOLERATIONS},
        "storage": {"uriPrefix": "s3://checkpoints/teams/", "endpoint": "http://minio.minio:9000",
                    "secretName": "s3-credentials"},
    }}
    rendered = subprocess.run(
        [str(helm_bin), "template", "defaults", str(CHART), "--show-only",
         "templates/job-defaults.yaml", "-f", "-",  # the test cluster (1.37) serves v1:
         "--api-versions", "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy"],
        input=yaml.safe_dump(values), check=True, capture_output=True, text=True).stdout
    tools.kubectl("apply", "-f", str(MANIFESTS / "crd.yaml"))
    tools.kubectl("wait", "--for=condition=Established",
                  "crd/resumabletrainingjobs.spotrun.dev", "--timeout=60s")
    tools.kubectl("apply", "-f", "-", stdin=rendered)
    try:
        wait_for(lambda: _defaulted(tools, namespace), "the policy to take effect")
        yield namespace
    finally:
        tools.kubectl("delete", "-f", "-", stdin=rendered)


def created(tools: Tools, namespace: str, job: dict[str, Any]) -> dict[str, Any]:
    """The job as the API server would store it (server-side dry-run: admission included)."""
    out = tools.kubectl("create", "--dry-run=server", "-o", "yaml", "-n", namespace, "-f", "-",
                        stdin=yaml.safe_dump(job))
    return dict(yaml.safe_load(out))


def _defaulted(tools: Tools, namespace: str) -> bool:
    try:
        return "checkpoint" in created(tools, namespace, BARE)["spec"]
    except AssertionError:  # refused: checkpoint is required and not filled in yet
        return False


def test_a_bare_job_gets_the_defaults(tools: Tools, job_defaults: str) -> None:
    spec = created(tools, job_defaults, BARE)["spec"]
    assert spec["spot"]["nodeSelectorTerms"] == TERMS
    assert spec["spot"]["tolerations"] == TOLERATIONS
    assert spec["checkpoint"]["storage"] == {
        "uri": f"s3://checkpoints/teams/{job_defaults}/bare",
        "endpoint": "http://minio.minio:9000", "secretRef": {"name": "s3-credentials"}}


def test_a_jobs_own_values_win(tools: Tools, job_defaults: str) -> None:
    own = copy.deepcopy(BARE)
    own["spec"]["spot"] = {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "mine", "operator": "Exists"}]}]}
    own["spec"]["checkpoint"] = {"storage": {"uri": "s3://mine/run", "endpoint": "https://s3.x"}}
    spec = created(tools, job_defaults, own)["spec"]
    assert spec["spot"]["nodeSelectorTerms"] == own["spec"]["spot"]["nodeSelectorTerms"]
    assert spec["spot"]["tolerations"] == TOLERATIONS  # the one field it left out
    assert spec["checkpoint"]["storage"] == {"uri": "s3://mine/run", "endpoint": "https://s3.x",
                                             "secretRef": {"name": "s3-credentials"}}
    pvc = copy.deepcopy(BARE)
    pvc["spec"]["checkpoint"] = {"storage": {"pvc": {"claimName": "shared"}}}
    assert created(tools, job_defaults, pvc)["spec"]["checkpoint"]["storage"] == {
        "pvc": {"claimName": "shared"}}  # no S3 endpoint or Secret on a PVC


def test_other_namespaces_are_left_alone(tools: Tools, job_defaults: str) -> None:
    with pytest.raises(AssertionError, match="checkpoint"):  # required, and nobody filled it in
        created(tools, "default", BARE)
