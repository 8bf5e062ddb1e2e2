"""The kind tier's groundwork (hack/kind/, hack/README.md "kind"): the runc wrapper, the
engine's proof, the built parts' versions. `make test-kind` runs them with the rest of the tier.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.kind.kindenv import CACHE, KIND_DIR, STOCK_NODE_IMAGE, versions

pytestmark = pytest.mark.kind

SYS_RESOURCE = "CAP_SYS_RESOURCE"


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=600, check=False)


def _fake_runc(tmp_path: Path) -> dict[str, str]:
    """An environment whose "real runc" records its arguments instead of running anything."""
    fake = tmp_path / "runc"
    fake.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/args\n')
    fake.chmod(0o755)
    return {**os.environ, "SPOTRUN_REAL_RUNC": str(fake)}


@pytest.mark.skipif(shutil.which("jq") is None, reason="the runc wrapper needs jq")
def test_runc_wrapper_drops_sys_resource_from_the_bundle(tmp_path: Path) -> None:
    caps = {"bounding": ["CAP_CHOWN", SYS_RESOURCE], "effective": [SYS_RESOURCE], "ambient": None}
    (tmp_path / "config.json").write_text(json.dumps({"process": {"capabilities": caps}}))
    args = ["--root", "/r", "--log-format", "json", "create", "--bundle", str(tmp_path), "c1"]
    done = _run(str(KIND_DIR / "runc-wrapper"), *args, env=_fake_runc(tmp_path))
    assert done.returncode == 0, done.stderr
    written = json.loads((tmp_path / "config.json").read_text())["process"]["capabilities"]
    assert written == {"bounding": ["CAP_CHOWN"], "effective": [], "ambient": None}
    assert (tmp_path / "args").read_text().split() == args  # runc gets the same arguments


@pytest.mark.skipif(shutil.which("jq") is None, reason="the runc wrapper needs jq")
def test_runc_wrapper_drops_sys_resource_from_an_exec_process(tmp_path: Path) -> None:
    process = tmp_path / "process.json"
    process.write_text(json.dumps({"args": ["sh"], "capabilities": {"bounding": [SYS_RESOURCE]}}))
    args = ["exec", "--process", str(process), "--detach", "c1"]
    done = _run(str(KIND_DIR / "runc-wrapper"), *args, env=_fake_runc(tmp_path))
    assert done.returncode == 0, done.stderr
    assert json.loads(process.read_text()) == {"args": ["sh"], "capabilities": {"bounding": []}}


def test_privileged_containers_boot_systemd(docker_engine: dict[str, str]) -> None:
    """What kind needs of the engine: privileged run and exec, systemd reaching "running"."""
    done = _run(str(KIND_DIR / "check-engine"), env=docker_engine)
    assert done.returncode == 0, done.stderr
    assert "3. systemd in a privileged container run as kind runs a node: running" in done.stderr
    left = _run(
        "docker", "ps", "--all", "--quiet", "--filter", "name=spotrun-kind-check", env=docker_engine
    )
    assert left.returncode == 0 and left.stdout == "", left.stdout + left.stderr


@pytest.mark.parametrize(
    ("part", "version_key", "command", "expected"),
    [
        ("kind", "KIND_VERSION", ["kind", "version"], "kind {v} "),
        ("containerd", "CONTAINERD_VERSION", ["containerd", "--version"], " {v} "),
        ("runc", "RUNC_VERSION", ["runc", "--version"], "runc version {v1}\n"),
        ("crictl", "CRI_TOOLS_VERSION", ["crictl", "--version"], "crictl version {v}"),
        ("cni-plugins", "CNI_PLUGINS_VERSION", ["portmap", "--version"], "portmap plugin {v}"),
        ("kubernetes-node", "KUBERNETES_VERSION", ["kubelet", "--version"], "Kubernetes {v}"),
        ("kubernetes-node", "KUBERNETES_VERSION", ["kubeadm", "version", "-o", "short"], "{v}"),
        ("kubernetes-node", "KUBERNETES_VERSION", ["kube-proxy", "--version"], "Kubernetes {v}"),
        ("coredns", "COREDNS_VERSION", ["coredns", "-version"], "CoreDNS-{v1}\n"),
        ("registry", "DISTRIBUTION_VERSION", ["registry", "--version"], "/v3 {v}\n"),
    ],
)
def test_built_parts_report_the_pinned_version(
    part: str, version_key: str, command: list[str], expected: str
) -> None:
    if STOCK_NODE_IMAGE and part not in ("kind", "registry"):
        pytest.skip(f"SPOTRUN_KIND_NODE_IMAGE={STOCK_NODE_IMAGE}: the node's {part} is not built")
    version = versions()[version_key]
    binary = CACHE / "bin" / f"{part}-{version}" / command[0]
    assert binary.exists(), f"{binary} is missing: run hack/kind/build-parts {part}"
    done = _run(str(binary), *command[1:])
    assert done.returncode == 0, done.stderr
    assert expected.format(v=version, v1=version.removeprefix("v")) in done.stdout + done.stderr
