"""What `helm template` renders and the example manifests pass the real API server's
validation (server-side dry-run: admission, schema, CEL rules)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from install_support import CHART, EXAMPLES, MANIFESTS, Tools

pytestmark = pytest.mark.e2e

CRD = "crd/resumabletrainingjobs.spotrun.dev"


@pytest.mark.parametrize("sets", [
    (),
    ("watchNamespaces={default,kube-public}", "jobDefaults.storage.uriPrefix=s3://ckpt/jobs",
     "jobDefaults.spot.tolerations[0].key=pool", "jobDefaults.spot.tolerations[0].operator=Exists"),
], ids=["all-namespaces", "two-namespaces-with-job-defaults"])
def test_helm_template_passes_a_server_side_dry_run(
    tools: Tools, helm_bin: Path, namespace: str, sets: tuple[str, ...]
) -> None:
    args = [a for s in sets for a in ("--set", s)]
    # as for the test cluster (1.37), which serves the jobDefaults' MutatingAdmissionPolicy
    args += ["--api-versions", "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy"]
    rendered = subprocess.run(
        [str(helm_bin), "template", "spotrun", str(CHART), "-n", namespace, *args],
        check=True, capture_output=True, text=True).stdout
    out = tools.kubectl("apply", "--dry-run=server", "-f", "-", stdin=rendered)
    kinds = {d["kind"] for d in yaml.safe_load_all(rendered) if d}
    assert {"CustomResourceDefinition", "Deployment", "ClusterRole", "ServiceAccount",
            "Service"} <= kinds
    assert out.count("(server dry run)") == len([d for d in yaml.safe_load_all(rendered) if d])


def test_example_manifests_apply_cleanly(tools: Tools, namespace: str) -> None:
    tools.kubectl("apply", "-f", str(MANIFESTS / "crd.yaml"))
    tools.kubectl("wait", "--for=condition=Established", CRD, "--timeout=60s")
    out = tools.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", str(EXAMPLES))
    names = sorted(p.name for p in EXAMPLES.glob("*.yaml"))
    assert names == [
        "fallback-on-demand.yaml", "gpu-spot.yaml", "job.yaml", "multinode.yaml", "s3-secret.yaml"
    ]
    assert out.count("(server dry run)") == len(names), out
    assert "resumabletrainingjob.spotrun.dev/digits created (server dry run)" in out


def test_a_broken_example_is_refused(tools: Tools, namespace: str, tmp_path: Path) -> None:
    """The dry-run above can fail: the API server refuses an example with a bad field."""
    tools.kubectl("apply", "-f", str(MANIFESTS / "crd.yaml"))
    tools.kubectl("wait", "--for=condition=Established", CRD, "--timeout=60s")
    job = yaml.safe_load((EXAMPLES / "job.yaml").read_text())
    job["spec"]["gpu"]["fallback"] = "tpu"
    with pytest.raises(AssertionError, match="fallback"):
        tools.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-",
                      stdin=yaml.safe_dump(job))
