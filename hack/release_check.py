"""Check that a release tag, the package, the chart and the manifests name one version.

    python hack/release_check.py v0.2.0   # the release workflow, on tag v0.2.0
    python hack/release_check.py          # the same checks without a tag

The version is written once, in trainer/spotrun/version.py. A release needs the chart's
``version`` and ``appVersion`` equal to it, the chart's operator image tag left empty (it then
follows ``appVersion``), every ``ghcr.io/spotrun/...`` image in manifests/ (install.yaml,
operator.yaml, the examples) tagged with it (an untagged or digest-pinned reference is refused:
a release names its images by tag), and every tagged ``ghcr.io/spotrun/...`` reference and
``--version`` of the chart in the README and docs/ naming it too. Exit 1 naming each
disagreement and its fix.
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
DOCS = (Path("README.md"), Path("docs"))
# an image line of a manifest: the name, then ":tag", "@digest" or nothing
OUR_IMAGE = re.compile(
    r"^\s*-?\s*image:\s*[\"']?(ghcr\.io/spotrun/[\w.-]+)([:@][^\s\"']+)?", re.M
)
# in prose and commands: a tagged image, or the chart's OCI reference with its --version
DOC_IMAGE = re.compile(r"(?<![\w/.])(ghcr\.io/spotrun/[\w.-]+):([0-9][\w.+-]*)")
DOC_CHART = re.compile(r"oci://ghcr\.io/spotrun/charts/spotrun\s+--version[ =]([^\s\\`]+)")


@dataclass(frozen=True)
class Release:
    """What a release must agree on, as read from the repository."""

    version: str  # trainer/spotrun/version.py
    chart: dict[str, object]  # Chart.yaml
    values: dict[str, object]  # values.yaml
    manifests: dict[str, str]  # path relative to the repo -> text
    docs: dict[str, str]  # README.md and docs/*.md: path -> text


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
        for name, ref in OUR_IMAGE.findall(text):
            found.extend(_manifest_image(path, name, ref, v))
    for path, text in sorted(release.docs.items()):
        found.extend(_doc_references(path, text, v))
    return found


def _manifest_image(path: str, name: str, ref: str, version: str) -> list[str]:
    fix = "run `make manifests` (install.yaml, operator.yaml) or edit the example"
    if not ref:
        return [f"{path} uses {name} without a tag: pin it to :{version}; {fix}"]
    if ref.startswith("@"):
        return [f"{path} pins {name}{ref[:19]}... by digest: a release names its images by "
                f"tag (:{version}; the workflow records the digests); {fix}"]
    if ref[1:] != version:
        return [f"{path} uses {name}{ref}, not :{version}: {fix}"]
    return []


def _doc_references(path: str, text: str, version: str) -> list[str]:
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for name, tag in DOC_IMAGE.findall(line):
            if tag != version:
                found.append(f"{path}:{number} names {name}:{tag}, not :{version}: edit it")
        for tag in DOC_CHART.findall(line):
            if tag != version:
                found.append(f"{path}:{number} installs the chart --version {tag}, not "
                             f"{version}: edit it")
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
    docs = {str(p.relative_to(repo)): p.read_text()
            for d in DOCS for p in ([repo / d] if d.suffix else sorted((repo / d).glob("*.md")))}
    return Release(
        version=versions[0],
        chart=yaml.safe_load((chart_dir / "Chart.yaml").read_text()),
        values=yaml.safe_load((chart_dir / "values.yaml").read_text()),
        manifests=manifests,
        docs=docs,
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
