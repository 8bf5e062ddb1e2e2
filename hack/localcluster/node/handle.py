"""A client for a running process node: tests and ``hack/cluster`` use it."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any


class ProcessNodeError(RuntimeError):
    pass


class ProcessNode:
    """Talks to the process node's control API; reads container logs from the state dir."""

    def __init__(self, control_port: int, state: Path) -> None:
        self.url = f"http://127.0.0.1:{control_port}"
        self.state = state

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")
            raise ProcessNodeError(f"process node: {method} {path}: {err.code} {detail}") from err

    def nodes(self) -> list[dict[str, Any]]:
        """The nodes this process node serves (including preempted ones, marked gone)."""
        result: list[dict[str, Any]] = self._call("GET", "/nodes")
        return result

    def add_node(self, capacity_type: str = "spot", name: str | None = None, gpus: int = 0,
                 zone: str | None = None) -> str:
        """Register a fresh node (``spot`` or ``on-demand``, in ``zone`` if given: else
        local-a/b/c by count); returns its name once Ready."""
        body: dict[str, Any] = {"capacityType": capacity_type, "gpus": gpus}
        if name:
            body["name"] = name
        if zone:
            body["zone"] = zone
        return str(self._call("POST", "/nodes", body)["name"])

    def preempt(self, node: str, notice_seconds: float = 0) -> None:
        """Start a spot interruption of ``node`` (taint, notice, evict, grace, delete)."""
        self._call("POST", f"/nodes/{node}/preempt", {"noticeSeconds": notice_seconds})

    def stop_lease(self, node: str) -> None:
        """Stop renewing ``node``'s Lease, as if its kubelet hung."""
        self._call("POST", f"/nodes/{node}/stop-lease", {})

    def log_dir(self, namespace: str, pod: str) -> Path | None:
        """``<state>/node/logs/<namespace>_<pod>_<uid>/`` of the newest pod of that name."""
        dirs = sorted((self.state / "node" / "logs").glob(f"{namespace}_{pod}_*"),
                      key=lambda p: p.stat().st_mtime)
        return dirs[-1] if dirs else None

    def log(self, namespace: str, pod: str, container: str, restart: int | None = None) -> str:
        """A container's log (its latest run unless ``restart`` names one); '' if none yet."""
        directory = self.log_dir(namespace, pod)
        if directory is None or not (directory / container).is_dir():
            return ""
        runs = sorted((directory / container).glob("*.log"), key=lambda p: int(p.stem))
        if restart is not None:
            runs = [p for p in runs if int(p.stem) == restart]
        return runs[-1].read_text(errors="replace") if runs else ""
