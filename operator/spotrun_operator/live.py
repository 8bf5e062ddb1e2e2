"""The current attempt's progress, read from its sidecar (GET /status) without ever letting a
tenant's pod stall the operator.

Design, and why this one. The sidecar of every attempt already knows its newest durable
checkpoint; the ways to learn it without calling into the pod were weighed and refused: the
sidecar patching its own pod or the job (every tenant pod would need write access to the
API, and a hostile one could write any status it likes through it), or the operator reading
the storage (it would need the job's S3 credentials, which it is by design never allowed to
read). So the operator still asks the pod, but treats the answer as hostile input and the
pod as an untrusted, possibly slow server:

- **Never on a reconcile thread.** A pass only reads ``Reports``' cache (a dict lookup under a
  lock) and, when the entry is older than ``REFRESH_SECONDS``, hands a refresh to a small
  pool of ``POLL_WORKERS`` threads of its own. Preemptions are handled by passes, so no
  number of slow sidecars can delay them; at worst they slow other jobs' progress reports.
  When a refresh brings a different report, ``on_change`` wakes the job for a new pass.
- **One overall deadline per request** (``DEADLINE_SECONDS``, connect included), enforced
  on the whole exchange: every socket operation gets only the time that is left, so a server
  answering one byte at a time gets nothing in after the deadline.
- **No redirects**: the answer is parsed as it is; a 3xx (any non-200) is no report, so a
  pod cannot make the operator GET another URL (an internal service) and copy its answer.
- **A size cap** (``MAX_RESPONSE_BYTES``) on what is read at all, and strict parsing into
  ``spotrun.contract.SidecarReport`` (bounded integers, no booleans as steps, finite
  metrics, bounded strings): anything else is no report, never an exception.

A failed or invalid read keeps the last good report (progress never goes back anyway) and is
counted in ``spotrun_sidecar_reads_total{outcome}``.
"""

from __future__ import annotations

import http.client
import io
import logging
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from spotrun import contract

from .models import SIDECAR

log = logging.getLogger("spotrun_operator")

DEADLINE_SECONDS = 1.0  # one request, from connect to the last byte
REFRESH_SECONDS = 2.0  # a cached report older than this is asked for again when a pass reads it
POLL_WORKERS = 4
MAX_RESPONSE_BYTES = contract.MAX_REPORT_BYTES + 4096  # the report and modest headers

Key = tuple[str, str]  # (namespace, job name)


@dataclass(frozen=True)
class Reading:
    """What one request brought: the report (None unless ``outcome`` is "ok")."""

    report: contract.SidecarReport | None
    outcome: str  # ok, invalid (not a report), refused (non-200, a redirect too), failed


def sidecar_url(pod: dict[str, Any], default_port: int) -> str | None:
    """``http://<podIP>:<port>/status`` of a pod whose spotrun sidecar runs, else None: a
    Running pod, or a Pending one whose native sidecar is up (restoring, or waiting for the
    storage) before the trainer starts."""
    status = pod.get("status") or {}
    ip = status.get("podIP")
    if not ip or pod["metadata"].get("deletionTimestamp"):
        return None
    phase = status.get("phase")
    if phase != "Running" and not (phase == "Pending" and _sidecar_running(status)):
        return None
    sidecar = next(
        (c for c in pod["spec"].get("initContainers") or [] if c.get("name") == SIDECAR), None
    )
    if sidecar is None:
        return None
    port = default_port
    for env in sidecar.get("env") or []:
        value = str(env.get("value", ""))
        if env.get("name") == "SPOTRUN_SIDECAR_PORT" and value.isascii() and value.isdigit():
            port = int(value)
    host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:{port}/status"


def _sidecar_running(status: dict[str, Any]) -> bool:
    for cs in status.get("initContainerStatuses") or []:
        if cs.get("name") == SIDECAR:
            return bool((cs.get("state") or {}).get("running") is not None)
    return False


def fetch(url: str, deadline: float = DEADLINE_SECONDS) -> Reading:
    """GET ``url`` (plain http) within ``deadline`` seconds in all; never raises."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return Reading(None, "invalid")
    try:
        raw = exchange(parts.hostname, parts.port or 80, parts.path or "/", deadline)
    except (OSError, ValueError) as err:  # timeouts, refusals, resets, too much
        log.debug("sidecar %s: no report (%s)", url, err)
        return Reading(None, "failed")
    return parse_response(raw)


def exchange(host: str, port: int, path: str, deadline: float) -> bytes:
    """The raw HTTP/1.0 response to ``GET path``, read within ``deadline`` seconds overall.

    TimeoutError at the deadline, ValueError past ``MAX_RESPONSE_BYTES``."""
    end = time.monotonic() + deadline

    def left() -> float:
        remaining = end - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no complete answer within {deadline:g}s")
        return remaining

    request = f"GET {path} HTTP/1.0\r\nHost: {host}\r\nAccept: application/json\r\n\r\n"
    chunks: list[bytes] = []
    size = 0
    with socket.create_connection((host, port), timeout=left()) as sock:
        sock.settimeout(left())
        sock.sendall(request.encode("ascii"))
        while True:
            sock.settimeout(left())
            data = sock.recv(min(65536, MAX_RESPONSE_BYTES + 1 - size))
            if not data:
                return b"".join(chunks)
            chunks.append(data)
            size += len(data)
            if size > MAX_RESPONSE_BYTES:
                raise ValueError(f"answer larger than {MAX_RESPONSE_BYTES} bytes")


class _Replay:
    """What ``http.client.HTTPResponse`` reads from: bytes already received."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def makefile(self, *_: Any, **__: Any) -> io.BytesIO:
        return io.BytesIO(self.raw)


def parse_response(raw: bytes) -> Reading:
    """A complete HTTP response as a Reading: only a 200 whose body is a valid report is one;
    a redirect is not followed (it is "refused" like any other status)."""
    response = http.client.HTTPResponse(_Replay(raw))  # type: ignore[arg-type]
    try:
        response.begin()
        if response.status != 200:
            return Reading(None, "refused")
        body = response.read()  # bounded: ``raw`` is; short of Content-Length: IncompleteRead
    except (http.client.HTTPException, ValueError, OSError):
        return Reading(None, "invalid")
    report = contract.parse(body)
    return Reading(report, "ok" if report is not None else "invalid")


@dataclass
class _Entry:
    url: str
    report: contract.SidecarReport | None = None
    fetched: float = float("-inf")  # monotonic time the last read ended
    busy: bool = False


class Reports:
    """The newest report of each job's current sidecar, refreshed off the reconcile threads.

    ``get`` never blocks on a pod; ``on_change(namespace, name)`` is called (from a poller
    thread) when a refresh brings a report different from the cached one; ``on_read(outcome)``
    after every request."""

    def __init__(
        self,
        on_change: Callable[[str, str], None] = lambda namespace, name: None,
        on_read: Callable[[str], None] = lambda outcome: None,
        *,
        workers: int = POLL_WORKERS,
        refresh: float = REFRESH_SECONDS,
        read: Callable[[str], Reading] = fetch,
    ) -> None:
        self.on_change, self.on_read, self.refresh, self.read = on_change, on_read, refresh, read
        self._entries: dict[Key, _Entry] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="sidecar-poll")

    def get(self, key: Key, url: str) -> contract.SidecarReport | None:
        """The cached report of ``key``'s sidecar at ``url`` (None before the first good read);
        starts a refresh in the background when the cache is stale."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.url != url:  # a new attempt's pod: start afresh
                entry = self._entries[key] = _Entry(url)
            stale = time.monotonic() - entry.fetched >= self.refresh
            if stale and not entry.busy:
                entry.busy = True
                self._pool.submit(self._refresh, key, entry)
            return entry.report

    def forget(self, key: Key) -> None:
        """No sidecar to ask for ``key`` (no current pod, the job gone)."""
        with self._lock:
            self._entries.pop(key, None)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _refresh(self, key: Key, entry: _Entry) -> None:
        reading = Reading(None, "failed")
        try:
            reading = self.read(entry.url)
        finally:  # whatever happened, the next pass may ask again
            with self._lock:
                entry.busy = False
                entry.fetched = time.monotonic()
                changed = (
                    self._entries.get(key) is entry
                    and reading.report is not None
                    and reading.report != entry.report
                )
                if changed:
                    entry.report = reading.report
        self.on_read(reading.outcome)
        if changed:
            self.on_change(*key)
