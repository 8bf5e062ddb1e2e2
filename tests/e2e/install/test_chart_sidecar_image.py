"""The chart value ``sidecar.image`` reaches the operator as SPOTRUN_SIDECAR_IMAGE (set only when
given, so the default install runs the pods of before); helm refuses a value that is no image
reference, naming the value, as the operator would (injection.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from install_support import CHART, of_kind, render

pytestmark = pytest.mark.e2e

IMAGE = "ghcr.io/spotrun/sidecar:0.1.0"


def _operator_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    deployment = of_kind(docs, "Deployment")[0]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container["env"]}


def test_the_sidecar_image_reaches_the_operator_only_when_set(helm_bin: Path) -> None:
    assert "SPOTRUN_SIDECAR_IMAGE" not in _operator_env(render(helm_bin))
    env = _operator_env(render(helm_bin, f"sidecar.image={IMAGE}"))
    assert env["SPOTRUN_SIDECAR_IMAGE"] == IMAGE


@pytest.mark.parametrize("value", ["Ghcr.io/Spotrun/Sidecar:1", "sidecar:"])
def test_helm_refuses_a_sidecar_image_that_is_no_image_reference(
    helm_bin: Path, value: str
) -> None:
    done = subprocess.run(
        [str(helm_bin), "template", "spotrun", str(CHART), "--set", f"sidecar.image={value}"],
        capture_output=True, text=True,
    )
    assert done.returncode != 0
    assert "sidecar.image" in done.stderr or "/sidecar/image" in done.stderr, done.stderr
