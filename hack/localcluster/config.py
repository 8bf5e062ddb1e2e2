"""Where things live: the repo, the binary cache, the state dir, the pinned versions."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

HACK_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = HACK_DIR.parent
VERSIONS_FILE = HACK_DIR / "versions.env"
ENTRYPOINT_DIR = REPO_ROOT / "entrypoint"  # spotrun-exec's sources (built, not pinned)

# Which component each binary comes from (hack/build-binaries builds per component).
COMPONENT_OF = {
    "etcd": "etcd",
    "kube-apiserver": "kubernetes",
    "kube-scheduler": "kubernetes",
    "kube-controller-manager": "kubernetes",
    "kubectl": "kubernetes",
    "versitygw": "versitygw",
    "helm": "helm",
    "actionlint": "actionlint",
    "spotrun-exec": "entrypoint",
}


class MissingBinaryError(RuntimeError):
    """A binary of the local environment is neither built nor on PATH."""


def cache_dir() -> Path:
    return Path(os.environ.get("SPOTRUN_CACHE", Path.home() / ".cache" / "spotrun"))


def state_dir() -> Path:
    default = cache_dir() / "cluster"
    return Path(os.environ.get("SPOTRUN_STATE_DIR", default))


def venv_bin() -> Path:
    return REPO_ROOT / ".venv" / "bin"


def versions() -> dict[str, str]:
    """The pinned versions from hack/versions.env (KEY=VALUE lines)."""
    out: dict[str, str] = {}
    for line in VERSIONS_FILE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def entrypoint_version() -> str:
    """``src-`` + the hash hack/build-binaries gives the entrypoint's sources (go.mod, *.go)."""
    digest = hashlib.sha256()
    names = ["go.mod", *(p.name for p in ENTRYPOINT_DIR.glob("*.go") if not p.name.startswith("."))]
    for name in sorted(names):
        digest.update(name.encode() + b"\0" + (ENTRYPOINT_DIR / name).read_bytes())
    return f"src-{digest.hexdigest()[:12]}"


def binary(name: str) -> Path:
    """The path of a binary: built into the cache by hack/build-binaries, else found on PATH."""
    component = COMPONENT_OF[name]
    if component == "entrypoint":
        version = entrypoint_version()
    else:
        version = versions()[f"{component.upper()}_VERSION"]
    built = cache_dir() / "bin" / f"{component}-{version}" / name
    if built.exists():
        return built
    found = shutil.which(name)
    if found:
        return Path(found)
    raise MissingBinaryError(
        f"{name} ({component} {version}) is not built: run `hack/build-binaries {component}` "
        f"(or `make binaries`) first; it looked in {built.parent} and on PATH"
    )
