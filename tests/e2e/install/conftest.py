"""Fixtures of the install tests: helm and kubectl (the pinned binaries of hack/versions.env)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # e2e_support

from install_support import Tools  # noqa: E402


def _binary(name: str) -> Path:
    from localcluster import config

    return config.binary(name)


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    """helm alone: rendering and linting need no cluster."""
    return _binary("helm")


@pytest.fixture(scope="session")
def tools(cluster: Any, helm_bin: Path) -> Tools:
    """helm and kubectl on the test cluster's kubeconfig."""
    return Tools(helm_bin, _binary("kubectl"), Path(cluster.kubeconfig))
