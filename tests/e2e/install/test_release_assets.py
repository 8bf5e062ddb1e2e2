"""hack/release-assets, as the release workflow runs it: install.yaml holds the CRD and then
the operator at the package version, and the chart package is named and versioned after it.
(e2e tier: it needs the helm binary that `make binaries` builds; no cluster.)"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from spotrun.version import __version__

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[3]


def test_release_assets_hold_the_crd_and_operator_and_the_versioned_chart(
    helm_bin: Path, tmp_path: Path
) -> None:
    out = tmp_path / "assets"
    env = dict(os.environ, HELM=str(helm_bin), PYTHON=sys.executable)
    done = subprocess.run([str(REPO / "hack/release-assets"), str(out)],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"version {__version__} everywhere" in done.stdout

    docs = [d for d in yaml.safe_load_all((out / "install.yaml").read_text()) if d]
    kinds = [d["kind"] for d in docs]
    assert kinds[0] == "CustomResourceDefinition", kinds
    assert docs[0]["metadata"]["name"] == "resumabletrainingjobs.spotrun.dev"
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    images = [c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]]
    assert images == [f"ghcr.io/spotrun/operator:{__version__}"]

    package = out / f"spotrun-{__version__}.tgz"
    with tarfile.open(package) as tar:
        member = tar.extractfile("spotrun/Chart.yaml")
        assert member is not None
        chart = yaml.safe_load(member.read())
        names = set(tar.getnames())
    assert (chart["version"], chart["appVersion"]) == (__version__, __version__)
    assert {"spotrun/files/crd.yaml", "spotrun/values.yaml"} <= names
