"""Probes (exec, httpGet, tcpSocket) with the kubelet's timing fields."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from .container import Process

Obj = dict[str, Any]


def _port(value: Any, container: Obj) -> int:
    if isinstance(value, int) or str(value).isdigit():
        return int(value)
    for port in container.get("ports") or []:
        if port.get("name") == value:
            return int(port["containerPort"])
    raise ValueError(f"probe port {value!r} is not a port of container {container['name']}")


def run_once(probe: Obj, container: Obj, process: Process) -> bool:
    """One probe attempt: True on success."""
    timeout = max(float(probe.get("timeoutSeconds", 1)), 0.1)
    try:
        if "exec" in probe:
            result = subprocess.run(
                process.exec_argv(probe["exec"]["command"]),
                env=process.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=timeout,
            )
            return result.returncode == 0
        if "httpGet" in probe:
            get = probe["httpGet"]
            scheme = get.get("scheme", "HTTP").lower()
            host = get.get("host") or "127.0.0.1"
            url = f"{scheme}://{host}:{_port(get['port'], container)}{get.get('path', '/')}"
            request = urllib.request.Request(url)
            for header in get.get("httpHeaders") or []:
                request.add_header(header["name"], header["value"])
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                return 200 <= int(resp.status) < 400
        if "tcpSocket" in probe:
            tcp = probe["tcpSocket"]
            port = _port(tcp["port"], container)
            with socket.create_connection((tcp.get("host") or "127.0.0.1", port), timeout):
                return True
    except (OSError, subprocess.TimeoutExpired, urllib.error.URLError, ValueError):
        return False
    return False


@dataclass
class ProbeState:
    """Where one probe of one container run stands."""

    probe: Obj
    started: float = field(default_factory=time.monotonic)
    next_at: float = 0.0
    successes: int = 0
    failures: int = 0
    passed: bool = False

    def __post_init__(self) -> None:
        self.next_at = self.started + float(self.probe.get("initialDelaySeconds", 0))

    def due(self) -> bool:
        return time.monotonic() >= self.next_at

    def record(self, ok: bool) -> None:
        """Count one attempt's outcome and schedule the next."""
        self.next_at = time.monotonic() + float(self.probe.get("periodSeconds", 10))
        if ok:
            self.failures = 0
            self.successes += 1
            if self.successes >= int(self.probe.get("successThreshold", 1)):
                self.passed = True
        else:
            self.successes = 0
            self.failures += 1
            if self.failures >= int(self.probe.get("failureThreshold", 3)):
                self.passed = False

    @property
    def failed(self) -> bool:
        return self.failures >= int(self.probe.get("failureThreshold", 3))
