"""The chart as rendered: lint-clean, the plain manifests and CRD copies in step with it,
least-privilege RBAC in both modes, a non-root operator pod, peering for 2+ replicas."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path
from typing import Any

import pytest
from install_support import CHART, MANIFESTS, load, of_kind, render

pytestmark = pytest.mark.e2e


def _load_generator() -> Any:
    """charts/generate_manifests.py, loaded by path: putting charts/ on sys.path would make
    charts/spotrun shadow the spotrun package for every test collected after this one."""
    spec = importlib.util.spec_from_file_location(
        "generate_manifests", CHART.parent / "generate_manifests.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generate_manifests = _load_generator()

VARIANTS = [
    (),
    ("watchNamespaces={team-a,team-b}",),
    ("replicas=2",),
    ("replicas=3", "watchNamespaces={team-a}"),
    ("metrics.serviceMonitor.enabled=true", "crds.enabled=false", "rbac.create=false",
     "serviceAccount.create=false", "serviceAccount.name=ops"),
    ("jobDefaults.storage.uriPrefix=s3://ckpt/jobs", "jobDefaults.spot.tolerations[0].key=pool",
     "jobDefaults.spot.tolerations[0].operator=Exists"),
]


@pytest.mark.parametrize("sets", VARIANTS, ids=lambda s: ",".join(s) or "defaults")
def test_helm_lint_is_clean(helm_bin: Path, sets: tuple[str, ...]) -> None:
    args = [a for s in sets for a in ("--set", s)]
    done = subprocess.run([str(helm_bin), "lint", "--strict", str(CHART), *args],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[WARNING]" not in done.stdout and "[ERROR]" not in done.stdout, done.stdout


def test_plain_manifests_are_the_charts_rendering() -> None:
    assert generate_manifests.stale(generate_manifests.manifests()) == [], \
        "manifests/ differ from the chart: run `make manifests`"


def _without_helm_metadata(crd: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in crd["metadata"].items() if k not in ("labels", "annotations")}
    return {**crd, "metadata": meta}


def test_chart_crds_are_the_generated_ones(helm_bin: Path) -> None:
    for copy, name in (("files", "crd.yaml"), ("crds", "kopf-peering-crd.yaml")):
        assert (CHART / copy / name).read_text() == (MANIFESTS / name).read_text(), \
            f"charts/spotrun/{copy}/{name} differs from manifests/{name}: run `make crd`"
    single = of_kind(render(helm_bin), "CustomResourceDefinition")
    assert [_without_helm_metadata(c) for c in single] == load(MANIFESTS / "crd.yaml")
    assert single[0]["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    # kopf's peering CRDs are never templates: a release's peering object (replicas=2) could
    # not be mapped by Helm before they exist ("resource mapping not found"); crds/ is
    # installed first
    peered = of_kind(render(helm_bin, "replicas=2"), "CustomResourceDefinition")
    assert [_without_helm_metadata(c) for c in peered] == load(MANIFESTS / "crd.yaml")
    assert of_kind(render(helm_bin, "crds.enabled=false"), "CustomResourceDefinition") == []
    kept = render(helm_bin, "crds.keep=false")
    assert "annotations" not in of_kind(kept, "CustomResourceDefinition")[0]["metadata"]


def _grants(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"]
            for r in rule["resources"] for v in rule["verbs"]}


def _operator_roles(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in of_kind(docs, kind) if d["metadata"]["name"] == "spotrun-operator"]


@pytest.mark.parametrize("sets", VARIANTS[:4], ids=lambda s: ",".join(s) or "defaults")
def test_operator_rbac_never_reaches_secrets_or_wildcards(helm_bin: Path, sets: Any) -> None:
    docs = render(helm_bin, *sets)
    roles = _operator_roles(docs, "ClusterRole") + _operator_roles(docs, "Role")
    assert roles
    for role in roles:
        for group, resource, verb in _grants(role):
            assert resource != "secrets" and "*" not in (group, resource, verb), role


def test_watching_namespaces_grants_pods_only_there(helm_bin: Path) -> None:
    docs = render(helm_bin, "watchNamespaces={team-a,team-b}")
    cluster_wide = _grants(_operator_roles(docs, "ClusterRole")[0])
    assert {r for _, r, _ in cluster_wide} == {"nodes", "namespaces", "customresourcedefinitions"}
    assert {v for _, _, v in cluster_wide} == {"get", "list", "watch"}
    roles = _operator_roles(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert all(("", "pods", "create") in _grants(r) for r in roles)
    bindings = _operator_roles(docs, "RoleBinding")
    assert all(b["subjects"] == [{"kind": "ServiceAccount", "name": "spotrun-operator",
                                  "namespace": "spotrun-system"}] for b in bindings)
    env = _container(docs)["env"]
    assert {"name": "SPOTRUN_NAMESPACES", "value": "team-a,team-b"} in env

    everywhere = _grants(_operator_roles(render(helm_bin), "ClusterRole")[0])
    assert ("", "pods", "create") in everywhere and ("", "nodes", "patch") not in everywhere


def _container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(of_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0])


def test_operator_pod_is_non_root_and_configured_by_values(helm_bin: Path) -> None:
    docs = render(helm_bin, "ports.health=9101", "ports.metrics=9102", "logLevel=DEBUG")
    pod = of_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]
    c = _container(docs)
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"]
    sc = c["securityContext"]
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert "tolerations" not in pod  # never on tainted spot pools
    assert c["command"] == ["python", "-m", "spotrun_operator"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["SPOTRUN_LIVENESS"] == "http://0.0.0.0:9101/healthz"
    assert env["SPOTRUN_METRICS_PORT"] == "9102" and env["SPOTRUN_LOG_LEVEL"] == "DEBUG"
    assert "SPOTRUN_PEERING" not in env
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"health": 9101, "metrics": 9102}
    service = of_kind(docs, "Service")[0]
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert of_kind(docs, "Deployment")[0]["spec"]["strategy"] == {"type": "Recreate"}


def test_two_replicas_join_a_peering_the_chart_creates(helm_bin: Path) -> None:
    docs = render(helm_bin, "replicas=2", "peering.lifetime=15")
    env = {e["name"]: e.get("value") for e in _container(docs)["env"]}
    assert env["SPOTRUN_PEERING"] == "spotrun" and env["SPOTRUN_PEERING_LIFETIME"] == "15"
    assert [d["metadata"]["name"] for d in of_kind(docs, "ClusterKopfPeering")] == ["spotrun"]
    assert "strategy" not in of_kind(docs, "Deployment")[0]["spec"]
    namespaced = render(helm_bin, "replicas=2", "watchNamespaces={team-a,team-b}")
    assert sorted(d["metadata"]["namespace"] for d in of_kind(namespaced, "KopfPeering")) == [
        "team-a", "team-b"]
    assert of_kind(namespaced, "ClusterKopfPeering") == []
    assert of_kind(render(helm_bin), "ClusterKopfPeering") == []


def test_service_monitor_needs_the_metrics_service(helm_bin: Path) -> None:
    done = subprocess.run(
        [str(helm_bin), "template", "x", str(CHART), "--set", "metrics.serviceMonitor.enabled=true",
         "--set", "metrics.service.enabled=false"], capture_output=True, text=True)
    assert done.returncode != 0 and "needs metrics.service.enabled" in done.stderr


@pytest.mark.parametrize("bad", ["logLevel=VERBOSE", "jobDefaults.storage.uriPrefix=http://x",
                                 "watchNamespaces={Team_A}", "ports.health=70000"])
def test_bad_values_are_refused_with_the_field_named(helm_bin: Path, bad: str) -> None:
    done = subprocess.run([str(helm_bin), "template", "x", str(CHART), "--set", bad],
                          capture_output=True, text=True)
    field = bad.split("=")[0].split(".")[-1]
    assert done.returncode != 0 and field in done.stderr, done.stderr
