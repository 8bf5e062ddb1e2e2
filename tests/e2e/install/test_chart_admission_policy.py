"""The chart's jobDefaults MutatingAdmissionPolicy is rendered only where the API server serves
the kind: v1 (Kubernetes 1.36+), else v1beta1 (1.34/1.35 with the feature gate and runtime
config), else nothing, since most managed 1.33-1.35 clusters serve neither and an unserved
kind fails the whole install. `helm template` plays each server with --api-versions."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from install_support import CHART, docs_of, of_kind

pytestmark = pytest.mark.e2e

V1 = "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy"
V1BETA1 = "admissionregistration.k8s.io/v1beta1/MutatingAdmissionPolicy"
V1ALPHA1 = "admissionregistration.k8s.io/v1alpha1/MutatingAdmissionPolicy"
DEFAULTS = ("jobDefaults.storage.endpoint=http://minio:9000", "watchNamespaces={team-a}")


def render(helm_bin: Path, sets: tuple[str, ...], served: tuple[str, ...]) -> list[dict[str, Any]]:
    """``helm template`` as for an API server that serves the ``served`` kinds."""
    args = [a for s in sets for a in ("--set", s)]
    args += [a for v in served for a in ("--api-versions", v)]
    out = subprocess.run([str(helm_bin), "template", "spotrun", str(CHART), *args],
                         check=True, capture_output=True, text=True).stdout
    return docs_of(out)


def policy_versions(docs: list[dict[str, Any]]) -> list[str]:
    kinds = ("MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding")
    return [d["apiVersion"] for d in docs if d["kind"] in kinds]


def test_no_policy_where_the_server_serves_none(helm_bin: Path) -> None:
    assert policy_versions(render(helm_bin, DEFAULTS, ())) == []
    # 1.32/1.33 with the alpha enabled: the chart writes no v1alpha1 objects.
    assert policy_versions(render(helm_bin, DEFAULTS, (V1ALPHA1,))) == []


@pytest.mark.parametrize(("served", "version"), [
    ((V1,), "admissionregistration.k8s.io/v1"),
    ((V1BETA1,), "admissionregistration.k8s.io/v1beta1"),
    ((V1BETA1, V1), "admissionregistration.k8s.io/v1"),
], ids=["1.36+", "1.34-beta-enabled", "both"])
def test_the_served_version_is_rendered(helm_bin: Path, served: tuple[str, ...],
                                        version: str) -> None:
    docs = render(helm_bin, DEFAULTS, served)
    assert policy_versions(docs) == [version, version]
    binding = of_kind(docs, "MutatingAdmissionPolicyBinding")[0]["spec"]
    assert binding["policyName"] == of_kind(docs, "MutatingAdmissionPolicy")[0]["metadata"]["name"]
    assert binding["matchResources"]["namespaceSelector"]["matchExpressions"][0]["values"] == [
        "team-a"]


def test_job_defaults_install_nothing_until_one_is_set(helm_bin: Path) -> None:
    assert policy_versions(render(helm_bin, (), (V1,))) == []
    assert policy_versions(render(helm_bin, ("watchNamespaces={team-a}",), (V1,))) == []
