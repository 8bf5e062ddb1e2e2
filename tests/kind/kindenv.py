"""Where the kind tier's tests find hack/kind, the cache and the pinned versions."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
KIND_DIR = REPO / "hack" / "kind"
CACHE = Path(os.environ.get("SPOTRUN_CACHE", Path.home() / ".cache" / "spotrun"))


def versions() -> dict[str, str]:
    """hack/versions.env and hack/kind/versions.env as one dict (KEY=value lines)."""
    pairs = {}
    for env_file in (KIND_DIR.parent / "versions.env", KIND_DIR / "versions.env"):
        for line in env_file.read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                key, value = line.split("=", 1)
                pairs[key] = value
    return pairs
