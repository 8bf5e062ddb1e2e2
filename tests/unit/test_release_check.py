"""hack/release_check.py: a release tag, the package version, the chart and the manifests
must name one version; each disagreement is named with its fix. The repository as it stands
passes (the chart's and the manifests' image references follow the package version)."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest

from spotrun.version import __version__

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("release_check", REPO / "hack/release_check.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["release_check"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


rc = _load()


def test_the_repository_names_one_version_in_package_chart_and_manifests() -> None:
    release = rc.read_release()
    assert release.version == __version__
    assert any("install.yaml" in path for path in release.manifests)
    assert rc.disagreements(release, f"v{__version__}") == []


def test_the_release_tag_must_be_the_package_version() -> None:
    release = rc.read_release()
    found = rc.disagreements(release, "v9.9.9")
    assert len(found) == 1 and "tag v9.9.9 is not version" in found[0]
    assert rc.disagreements(release, f"refs/tags/v{__version__}") == []
    with pytest.raises(ValueError, match="does not start with 'v'"):
        rc.disagreements(release, __version__)


def test_a_chart_behind_the_package_is_named_with_each_key() -> None:
    release = rc.read_release()
    stale = replace(release, chart={**release.chart, "version": "0.0.9", "appVersion": "0.0.9"})
    found = rc.disagreements(stale)
    assert [line.split(" is ")[0] for line in found] == [
        "charts/spotrun/Chart.yaml version", "charts/spotrun/Chart.yaml appVersion"]


def test_a_pinned_operator_image_tag_in_values_is_refused() -> None:
    release = rc.read_release()
    pinned = replace(release, values={**release.values, "image": {"tag": "0.0.9"}})
    found = rc.disagreements(pinned)
    assert len(found) == 1 and "image.tag is '0.0.9': leave it empty" in found[0]


def test_a_stale_image_in_a_manifest_or_an_example_is_named_with_its_file() -> None:
    release = rc.read_release()
    manifests = dict(release.manifests)
    manifests["manifests/install.yaml"] += "        - image: ghcr.io/spotrun/operator:0.0.9\n"
    manifests["manifests/examples/job.yaml"] += '      image: "ghcr.io/spotrun/trainer:0.0.8"\n'
    manifests["manifests/examples/other.yaml"] = "      image: docker.io/library/python:3.0\n"
    found = rc.disagreements(replace(release, manifests=manifests))
    assert found == [
        f"manifests/examples/job.yaml uses ghcr.io/spotrun/trainer:0.0.8, not :{__version__}: "
        "run `make manifests` (install.yaml, operator.yaml) or edit the example",
        f"manifests/install.yaml uses ghcr.io/spotrun/operator:0.0.9, not :{__version__}: "
        "run `make manifests` (install.yaml, operator.yaml) or edit the example",
    ]


def test_main_exits_1_and_says_why_for_a_wrong_tag(capsys: pytest.CaptureFixture[str]) -> None:
    assert rc.main([f"v{__version__}"]) == 0
    assert rc.main(["v9.9.9"]) == 1
    assert "release check: tag v9.9.9" in capsys.readouterr().err


def test_an_untagged_or_digest_pinned_image_in_a_manifest_is_refused() -> None:
    release = rc.read_release()
    manifests = dict(release.manifests)
    manifests["manifests/examples/a.yaml"] = "      image: ghcr.io/spotrun/trainer  # latest\n"
    digest = "sha256:" + "a" * 64
    manifests["manifests/examples/b.yaml"] = f"      image: ghcr.io/spotrun/sidecar@{digest}\n"
    found = rc.disagreements(replace(release, manifests=manifests))
    assert len(found) == 2
    assert found[0].startswith("manifests/examples/a.yaml uses ghcr.io/spotrun/trainer without")
    assert found[1].startswith("manifests/examples/b.yaml pins ghcr.io/spotrun/sidecar@sha256:")
    assert f"by tag (:{__version__}" in found[1]


def test_a_stale_image_or_chart_version_in_the_docs_is_named_with_its_line() -> None:
    release = rc.read_release()
    docs = dict(release.docs)
    assert "README.md" in docs and any(p.startswith("docs/") for p in docs)
    docs["docs/new.md"] = (
        "intro\n"
        "helm install spotrun oci://ghcr.io/spotrun/charts/spotrun --version 0.0.9 \\\n"
        "  --set sidecar.image=ghcr.io/spotrun/sidecar:0.0.9\n"
        f"docker build -t ghcr.io/spotrun/trainer:{__version__} .\n"
    )
    found = rc.disagreements(replace(release, docs=docs))
    assert found == [
        f"docs/new.md:2 installs the chart --version 0.0.9, not {__version__}: edit it",
        f"docs/new.md:3 names ghcr.io/spotrun/sidecar:0.0.9, not :{__version__}: edit it",
    ]
