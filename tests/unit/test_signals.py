import os
import signal

import pytest

from spotrun.signals import StopRequest, save_deadline

pytestmark = pytest.mark.unit


def test_handler_records_chains_and_uninstall_restores() -> None:
    seen: list[int] = []

    def previous(signum, frame):  # type: ignore[no-untyped-def]
        seen.append(signum)

    original = signal.signal(signal.SIGTERM, previous)
    try:
        stop = StopRequest()
        assert stop.install()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.signum == signal.SIGTERM and seen == [signal.SIGTERM]
        stop.uninstall()
        assert signal.getsignal(signal.SIGTERM) is previous
    finally:
        signal.signal(signal.SIGTERM, original)


def test_deadline_leaves_room_for_the_save() -> None:
    assert save_deadline(30, 1.0) == 26.0
    assert save_deadline(30, 20.0) == 10.0  # never below a third of the grace period


def test_a_handled_stop_is_forgotten_and_wakes_the_watchdog() -> None:
    """Ctrl-C with on_interrupt="raise": once raised, the watchdog must not save and exit."""
    stop = StopRequest()
    stop.record(signal.SIGINT)
    stop.changed.clear()
    stop.reset()
    assert not stop.requested and stop.first_at is None and stop.changed.is_set()
