"""README's Quickstart from a release, on kind: what .github/workflows/release.yml publishes,
made and published the way it does, then the README's two install commands.

- `hack/release-assets` makes the chart package and install.yaml (the workflow's step), and
  `helm push` publishes the package to the kind cluster's registry under `spotrun/charts`: the
  path `ghcr.io/spotrun/charts` has on the nodes' ghcr.io mirror (hack/kind/registry), as the
  workflow pushes it to `oci://ghcr.io/<owner>/charts`.
- The README's `helm install spotrun oci://ghcr.io/spotrun/charts/spotrun --version ...` runs
  as written but for the host: helm runs on this machine, not on a node, so `ghcr.io` becomes the
  registry's address and `--plain-http` is added (the registry speaks http; ghcr.io https). The
  operator runs the chart's default image, `ghcr.io/spotrun/operator:<version>`, whose digest is
  the one pushed from this tree, and takes the example job (one epoch, this S3 server) to
  Succeeded. Then `helm uninstall`.
- The README's `kubectl apply -f https://github.com/.../install.yaml` runs with the built
  install.yaml for the URL: the CRD and the operator (same image and digest) in one file. The
  test removes the operator and its RBAC and keeps the CRD, as the chart's uninstall does.

What stays unproven here: ghcr.io and github.com themselves (no registry or GitHub is reachable).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from spotrun.version import __version__
from tests.kind import chart
from tests.kind.jobs import Job, example_manifests
from tests.kind.kindenv import HELM, KUBECTL, REPO, KindCluster, run
from tests.unit.test_readme_commands import readme_command

pytestmark = [pytest.mark.kind, pytest.mark.timeout(1800)]

NAMESPACE = "release-kind"
PUBLISHED = "oci://ghcr.io/spotrun/charts"  # release.yml's oci://ghcr.io/<owner>/charts
RELEASED_TRAINER = f"ghcr.io/spotrun/trainer:{__version__}"


def release_assets(out: Path) -> tuple[Path, Path]:
    """hack/release-assets OUT, as the release workflow runs it: (install.yaml, the package)."""
    env = {**os.environ, "HELM": str(HELM), "PYTHON": sys.executable}
    done = run(REPO / "hack" / "release-assets", out, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return out / "install.yaml", out / f"spotrun-{__version__}.tgz"


def helm_env(cluster: KindCluster, home: Path) -> dict[str, str]:
    """The cluster's environment with helm's registry login, cache and config under HOME (the
    user's own ~/.config/helm untouched)."""
    return {
        **cluster.env,
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
        "HELM_REGISTRY_CONFIG": str(home / "config" / "registry.json"),
    }


def test_the_published_chart_and_install_yaml_install_the_operator_as_the_readme_says(
    kind_cluster: KindCluster, pushed: dict[str, str], kind_s3: dict[str, str], tmp_path: Path
) -> None:
    install_yaml, package = release_assets(tmp_path / "assets")
    env = helm_env(kind_cluster, tmp_path / "helm")
    registry = pushed["operator"].partition("/")[0]  # localhost:<port>
    published = PUBLISHED.replace("ghcr.io", registry)
    pushing = run(HELM, "push", package, published, "--plain-http", env=env, timeout=300)
    assert pushing.returncode == 0, pushing.stderr
    assert f"Pushed: {registry}/spotrun/charts/spotrun:{__version__}" in pushing.stderr + (
        pushing.stdout
    )

    helm = readme_command(f"helm install spotrun {PUBLISHED}/spotrun")
    assert helm[helm.index("--version") + 1] == __version__, helm
    assert helm[helm.index("--namespace") + 1] == chart.NAMESPACE, helm
    as_here = [
        arg.replace("ghcr.io", registry, 1) if arg.startswith("oci://") else arg for arg in helm[1:]
    ]
    try:
        installing = run(
            HELM,
            *as_here,
            "--plain-http",
            "--take-ownership",
            "--wait",
            "--timeout",
            "10m",
            env=env,
            timeout=900,
        )
        assert installing.returncode == 0, installing.stderr
        listed = json.loads(run(HELM, "list", "-n", chart.NAMESPACE, "-o", "json", env=env).stdout)
        assert [(r["name"], r["chart"], r["app_version"]) for r in listed] == [
            ("spotrun", f"spotrun-{__version__}", __version__)
        ], listed
        chart.released_operator(kind_cluster, pushed)

        kind_cluster.kubectl("create", "namespace", NAMESPACE)
        job = Job(kind_cluster, kind_s3, NAMESPACE)
        manifests = example_manifests(RELEASED_TRAINER, kind_s3, job.prefix, 1)
        kind_cluster.kubectl("-n", NAMESPACE, "apply", "-f", "-", stdin=manifests)
        status = job.finished()
        assert status["phase"] == "Succeeded", status
        assert (status["attempt"], status["preemptions"], status["failures"]) == (1, 0, 0)
    finally:  # the job's namespace first, while the operator runs: it lifts its finalizers
        kind_cluster.delete_namespace(NAMESPACE)
        chart.uninstall(kind_cluster)

    apply = readme_command("kubectl apply -f https://github.com/")
    assert apply[-1].endswith(f"/v{__version__}/install.yaml"), apply
    try:
        kind_cluster.kubectl(*apply[1:-1], str(install_yaml))
        chart.released_operator(kind_cluster, pushed)
    finally:  # the operator and its RBAC; the CRD stays, as after helm uninstall
        run(
            KUBECTL,
            "delete",
            "-f",
            REPO / "manifests" / "install.yaml",
            "--ignore-not-found",
            "--timeout=300s",
            env=kind_cluster.env,
        )
