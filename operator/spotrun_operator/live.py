"""Ask a running attempt's sidecar for its newest durable checkpoint (GET /status).

I/O at the edge: 1 s timeout, any failure is None (the next pass asks again).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from .builders import SIDECAR

TIMEOUT_SECONDS = 1.0


def sidecar_url(pod: dict[str, Any], default_port: int) -> str | None:
    """``http://<podIP>:<port>/status`` of a Running pod with a spotrun sidecar, else None."""
    status = pod.get("status") or {}
    ip = status.get("podIP")
    if status.get("phase") != "Running" or not ip or pod["metadata"].get("deletionTimestamp"):
        return None
    sidecar = next(
        (c for c in pod["spec"].get("initContainers") or [] if c.get("name") == SIDECAR), None
    )
    if sidecar is None:
        return None
    port = default_port
    for env in sidecar.get("env") or []:
        if env.get("name") == "SPOTRUN_SIDECAR_PORT" and str(env.get("value", "")).isdigit():
            port = int(env["value"])
    host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:{port}/status"


def fetch(url: str, timeout: float = TIMEOUT_SECONDS) -> Any:
    """The JSON at ``url``, or None when it cannot be had in time."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (http only)
            return json.loads(response.read(65536))
    except (OSError, ValueError, urllib.error.URLError):
        return None
