"""Check that a release tag, the package, the chart and the manifests name one version.

    python hack/release_check.py v0.2.0   # the release workflow, on tag v0.2.0
    python hack/release_check.py          # the same checks without a tag

The version is written once, in trainer/spotrun/version.py. A release needs the chart's
``version`` and ``appVersion`` equal to it, the chart's operator image tag left empty (it then
follows ``appVersion``), and every ``ghcr.io/spotrun/...`` image in manifests/ (install.yaml,
operator.yaml, the examples) tagged with it. Exit 1 naming each disagreement and its fix.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
VERSION_FILE = Path("trainer/spotrun/version.py")
CHART = Path("charts/spotrun")
MANIFESTS = Path("manifests")
OUR_IMAGE = re.compile(r"^\s*-?\s*image:\s*[\"']?(ghcr\.io/spotrun/[\w.-]+):([^\s\"']+)", re.M)


@dataclass(frozen=True)
class Release:
    """What a release must agree on, as read from the repository."""

    version: str  # trainer/spotrun/version.py
    chart: dict[str, object]  # Chart.yaml
    values: dict[str, object]  # values.yaml
    manifests: dict[str, str]  # path relative to the repo -> text


def tag_version(tag: str) -> str:
    """``v0.2.0`` (or ``refs/tags/v0.2.0``) -> ``0.2.0``."""
    name = tag.removeprefix("refs/tags/")
    if not name.startswith("v"):
        raise ValueError(f"release tag {tag!r} does not start with 'v': tag releases as v1.2.3")
    return name[1:]


def disagreements(release: Release, tag: str | None = None) -> list[str]:
    """Each way the tag, the chart and the manifests differ from the package version."""
    v = release.version
    found = []
    if tag is not None and tag_version(tag) != v:
        found.append(f"tag {tag} is not version {v} (trainer/spotrun/version.py): tag v{v}, "
                     "or change version.py and the chart first")
    for key in ("version", "appVersion"):
        if str(release.chart.get(key)) != v:
            found.append(f"charts/spotrun/Chart.yaml {key} is {release.chart.get(key)!r}, "
                         f"not {v!r}: set it to {v}")
    image = release.values.get("image")
    tag_value = image.get("tag") if isinstance(image, dict) else None
    if tag_value:
        found.append(f"charts/spotrun/values.yaml image.tag is {tag_value!r}: leave it empty "
                     "so that the operator image follows the chart's appVersion")
    for path, text in sorted(release.manifests.items()):
        for name, image_tag in OUR_IMAGE.findall(text):
            if image_tag != v:
                found.append(f"{path} uses {name}:{image_tag}, not :{v}: run `make manifests` "
                             f"(install.yaml, operator.yaml) or edit the example")
    return found


def read_release(repo: Path = REPO) -> Release:
    tree = ast.parse((repo / VERSION_FILE).read_text())
    versions = [node.value.value for node in tree.body if isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets)
                and isinstance(node.value, ast.Constant)]
    if len(versions) != 1 or not isinstance(versions[0], str):
        raise ValueError(f"{VERSION_FILE}: expected one `__version__ = \"X.Y.Z\"` line")
    chart_dir = repo / CHART
    manifests = {str(p.relative_to(repo)): p.read_text()
                 for p in sorted((repo / MANIFESTS).rglob("*.yaml"))}
    return Release(
        version=versions[0],
        chart=yaml.safe_load((chart_dir / "Chart.yaml").read_text()),
        values=yaml.safe_load((chart_dir / "values.yaml").read_text()),
        manifests=manifests,
    )


def main(argv: list[str]) -> int:
    release = read_release()
    try:
        found = disagreements(release, argv[0] if argv else None)
    except ValueError as bad:
        found = [str(bad)]
    for line in found:
        print(f"release check: {line}", file=sys.stderr)
    if not found:
        print(f"release check: version {release.version} everywhere")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
