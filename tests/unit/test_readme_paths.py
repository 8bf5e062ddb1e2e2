"""Every repository file the README tells a user to apply, install or read exists: a
quickstart naming a manifest that is gone (or never was) fails here, not on a user's cluster."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
PATH = re.compile(r"(?<![\w/.-])((?:manifests|charts|docs|examples|bench)/[\w./-]*[\w/])")


def readme_paths(text: str) -> set[str]:
    return {p.rstrip("/.") for p in PATH.findall(text)}


def test_every_path_the_readme_names_exists() -> None:
    paths = readme_paths((REPO / "README.md").read_text())
    assert "manifests/crd.yaml" in paths and "manifests/install.yaml" in paths
    assert sorted(p for p in paths if not (REPO / p).exists()) == []


def test_the_non_helm_quickstart_applies_the_crd_with_the_install() -> None:
    text = (REPO / "README.md").read_text()
    quickstart = text[text.index("## Quickstart on your cluster"):]
    quickstart = quickstart[:quickstart.index("\n## ", 1)]
    applies = [line for line in quickstart.splitlines() if "kubectl apply" in line]
    install = next(line for line in applies if "manifests/install.yaml" in line)
    assert "manifests/crd.yaml" in install.split("manifests/install.yaml")[0]


def test_a_missing_path_is_seen() -> None:
    assert readme_paths("run `kubectl apply -f manifests/nope.yaml`.") == {"manifests/nope.yaml"}
