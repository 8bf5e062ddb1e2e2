"""The README's install from a release names what the release workflow publishes: the chart at
oci://ghcr.io/<owner>/charts/<chart name>, install.yaml on the GitHub release of tag v<version>,
both at the package's version. A renamed chart, a moved repository or a version bump without
the README fails here (nothing can pull them on this machine)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

from spotrun.version import __version__

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "unit"))
from test_readme_commands import README, readme_commands  # type: ignore[import-not-found]  # noqa: E402,E501

WORKFLOW = REPO / ".github" / "workflows" / "release.yml"


def _repository() -> tuple[str, str]:
    """(owner, name) of the GitHub repository, from pyproject's Homepage."""
    text = (REPO / "pyproject.toml").read_text()  # tomllib: Python 3.11+ only
    found = re.search(r'^Homepage = "https://github\.com/([\w.-]+)/([\w.-]+)"$', text, re.M)
    assert found, "pyproject.toml: no Homepage of a GitHub repository in [project.urls]"
    return found.group(1).lower(), found.group(2)


def _published(prefix: str) -> str:
    [command] = [c for c in readme_commands(README.read_text()) if c.startswith(prefix)]
    return str(command)


def test_the_helm_install_names_the_chart_the_workflow_pushes_at_this_version() -> None:
    owner, _ = _repository()
    chart = yaml.safe_load((REPO / "charts" / "spotrun" / "Chart.yaml").read_text())["name"]
    command = _published("helm install spotrun oci://").split()
    assert command[3] == f"oci://ghcr.io/{owner}/charts/{chart}", command
    assert command[command.index("--version") + 1] == __version__
    workflow = WORKFLOW.read_text()
    # `helm push <package> oci://ghcr.io/<owner>/charts` stores it as .../charts/<chart name>
    assert 'helm push "release-assets/spotrun-$VERSION.tgz" ' \
           '"oci://ghcr.io/${GITHUB_REPOSITORY_OWNER,,}/charts"' in workflow


def test_the_kubectl_apply_names_the_install_yaml_the_release_attaches() -> None:
    owner, name = _repository()
    url = _published("kubectl apply -f https://").split()[3]
    assert url == (f"https://github.com/{owner}/{name}/releases/download/v{__version__}"
                   "/install.yaml")
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    create = next(s["run"] for s in jobs["github-release"]["steps"]
                  if "gh release create" in s.get("run", ""))
    assert 'gh release create "$GITHUB_REF_NAME"' in create  # the release is named by the tag
    assert " release-assets/install.yaml " in create  # attached under its own name
