"""The warm start's two waits, as pure decisions and with files: the new sidecar waits for the
old attempt's ended marker (or its deadline) before it restores; the trainer, started beside
its sidecar, waits for the sidecar's restore (.spotrun-ready) before it reads the volume."""

from __future__ import annotations

import json
import socket
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from spotrun import handoff, readiness
from spotrun.handoff import (
    SKEW_SECONDS,
    Ended,
    decode,
    encode,
    next_move,
    notice_began,
    stale,
    wait_for_previous,
)
from spotrun.podenv import PodEnv
from spotrun.probes import Health
from spotrun.sidecar import _serve_when_free
from spotrun.signals import StopRequest
from spotrun.store import StoreError

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


def test_the_marker_key_lies_outside_the_checkpoint_layout() -> None:
    assert handoff.key("jobs/digits", 3) == "jobs/digits/attempts/attempt-000000000003.json"
    assert handoff.key("", 12) == "attempts/attempt-000000000012.json"
    with pytest.raises(ValueError, match="attempt number"):
        handoff.key("p", 0)


def test_a_marker_round_trips_and_names_its_attempt() -> None:
    blob = encode(Ended(4, 1250, True), "ns/digits")
    found = decode(blob, 4)
    assert found is not None and (found.attempt, found.step, found.final_saved) == (4, 1250, True)
    assert found.time is not None and found.time.tzinfo is not None
    assert decode(blob, 5) is None  # another attempt's marker is not this one's
    gave_up = decode(encode(Ended(4, None, False), None), 4)
    assert gave_up is not None and (gave_up.step, gave_up.final_saved) == (None, False)


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"not json",
        b"[1, 2]",
        b"{" * 5000,
        json.dumps({"attempt": 4, "step": True, "finalSaved": True}).encode(),
        json.dumps({"attempt": 4, "step": -1, "finalSaved": True}).encode(),
        json.dumps({"attempt": 4, "step": 2**64, "finalSaved": True}).encode(),
        json.dumps({"attempt": 4, "step": "12", "finalSaved": True}).encode(),
        json.dumps({"attempt": 4, "step": 12, "finalSaved": "yes"}).encode(),
        json.dumps({"attempt": True, "step": 12, "finalSaved": True}).encode(),
        json.dumps({"attempt": 4, "step": 12, "finalSaved": True, "pad": "x" * 5000}).encode(),
    ],
)
def test_a_hostile_marker_reads_as_none(blob: bytes) -> None:
    assert decode(blob, 4) is None


def test_restore_waits_for_the_marker_or_the_deadline() -> None:
    until = T0 + timedelta(seconds=30)
    assert next_move(None, T0, until) == "wait"
    assert next_move(Ended(3, 10, True), T0, until) == "restore"
    assert next_move(None, until, until) == "restore"
    assert next_move(None, T0, None) == "restore"  # no deadline known: never wait blind


def test_a_marker_older_than_the_notice_is_another_incarnations() -> None:
    notice = T0 - timedelta(seconds=70)
    assert stale(Ended(3, 10, True, T0 - timedelta(days=2)), notice)
    assert stale(Ended(3, 10, True, None), notice)  # no time: cannot be trusted
    assert not stale(Ended(3, 10, True, T0), notice)
    assert not stale(Ended(3, 10, True, None), None)


def test_a_marker_from_a_node_whose_clock_runs_behind_is_not_stale() -> None:
    # The operator set until = notice + grace + margin by its clock; the old node's clock
    # runs behind by up to the margin, so its marker may carry a time before the notice.
    notice, grace = T0, 30.0
    until = notice + timedelta(seconds=grace + SKEW_SECONDS)
    behind = Ended(3, 10, True, notice - timedelta(seconds=SKEW_SECONDS * 0.9))
    assert not stale(behind, notice_began(until, grace))
    older = Ended(3, 10, True, notice - timedelta(seconds=SKEW_SECONDS * 2.5))
    assert stale(older, notice_began(until, grace))
    assert notice_began(None, grace) is None


class Clock:
    """A clock that moves on only when the waiter sleeps."""

    def __init__(self) -> None:
        self.now = T0
        self.slept: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> bool:
        self.slept.append(seconds)
        self.now += timedelta(seconds=seconds)
        return False


def test_the_wait_ends_when_the_marker_appears() -> None:
    clock = Clock()
    looks = iter([None, None, StoreError("S3 endpoint unreachable"), Ended(3, 40, True, T0)])

    def look() -> Ended | None:
        got = next(looks)
        if isinstance(got, Exception):
            raise got
        return got

    why, found = wait_for_previous(look, 3, T0 + timedelta(seconds=60), clock.sleep, clock=clock)
    assert why == "marker" and found is not None and found.step == 40
    assert len(clock.slept) == 3  # a storage error is one more wait, not a failure


def test_the_wait_ends_at_the_deadline_without_a_marker() -> None:
    clock = Clock()
    until = T0 + timedelta(seconds=2)
    why, found = wait_for_previous(lambda: None, 3, until, clock.sleep, clock=clock)
    assert (why, found) == ("deadline", None) and clock.now >= until


def test_a_stale_marker_is_waited_past_until_the_deadline() -> None:
    clock = Clock()
    old = Ended(3, 5, True, T0 - timedelta(days=1))
    until = T0 + timedelta(seconds=1)
    why, _ = wait_for_previous(
        lambda: old, 3, until, clock.sleep, not_before=T0 - timedelta(seconds=60), clock=clock
    )
    assert why == "deadline"


def test_a_stop_ends_the_wait() -> None:
    why, _ = wait_for_previous(
        lambda: None, 3, T0 + timedelta(hours=1), lambda s: True, clock=lambda: T0
    )
    assert why == "stopped"


# -- the trainer waits for its sidecar's restore -------------------------------------------


def test_without_a_sidecar_restore_does_not_wait(tmp_path: Path) -> None:
    assert readiness.wait(tmp_path, PodEnv()) == 0.0
    assert readiness.wait(tmp_path, PodEnv(upload="library")) == 0.0


def test_under_a_sidecar_restore_waits_for_the_ready_file(tmp_path: Path) -> None:
    marked = threading.Timer(0.3, readiness.mark, args=(tmp_path,))
    marked.start()
    try:
        waited = readiness.wait(tmp_path, PodEnv(upload="sidecar", ready_timeout=60.0))
    finally:
        marked.cancel()
    assert (tmp_path / readiness.READY).exists() and waited > 0


def test_a_sidecar_that_never_restores_is_named_with_the_fix(tmp_path: Path) -> None:
    ticks = iter(range(100))
    with pytest.raises(readiness.SidecarNotReadyError) as err:
        readiness.wait(
            tmp_path,
            PodEnv(upload="sidecar", ready_timeout=5.0),
            sleep=lambda s: None,
            clock=lambda: float(next(ticks)),
        )
    said = str(err.value)
    assert "spotrun-sidecar" in said and str(tmp_path / readiness.READY) in said
    assert "SPOTRUN_READY_TIMEOUT" in said and "waited 5s" in said


def test_a_sidecar_takes_its_port_once_the_old_pods_sidecar_lets_it_go() -> None:
    """Pods that share one network (the process node): the warm-started pod's sidecar waits
    for the port instead of crashing into the kubelet's restart backoff."""
    old = socket.create_server(("0.0.0.0", 0))
    port = old.getsockname()[1]
    got: list[object] = []
    waiter = threading.Thread(
        target=lambda: got.append(_serve_when_free(Health(), port, StopRequest()))
    )
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive() and got == []  # still waiting: the port is taken
    old.close()
    waiter.join(30)
    server = got[0]
    assert server is not None
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
            assert c.recv(100).startswith(b"HTTP/1.0 200")
    finally:
        server.shutdown()  # type: ignore[attr-defined]


def test_a_stop_while_the_port_is_taken_gives_up() -> None:
    with socket.create_server(("0.0.0.0", 0)) as old:
        stop = StopRequest()
        stop.record(15)
        assert _serve_when_free(Health(), old.getsockname()[1], stop) is None
