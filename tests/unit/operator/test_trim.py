"""The operator hands memory its threads freed back to the system (glibc's malloc_trim)."""

from __future__ import annotations

import asyncio
import ctypes
import platform
from typing import Any

import pytest

from spotrun_operator import trim

pytestmark = pytest.mark.unit


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_glibc_trim_is_found_and_runs() -> None:
    call = trim.malloc_trim()
    assert call is not None
    assert call() in (0, 1)  # 1: memory was released


def test_without_malloc_trim_nothing_is_called(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoTrim:
        def __init__(self, name: Any) -> None:
            pass

        def __getattr__(self, name: str) -> Any:
            raise AttributeError(name)

    monkeypatch.setattr(ctypes, "CDLL", NoTrim)
    assert trim.malloc_trim() is None
    asyncio.run(asyncio.wait_for(trim.every(0.01), 5))  # returns at once: no loop of trims


def test_trims_run_until_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(trim, "malloc_trim", lambda: lambda: calls.append(1) or 1)

    async def scenario() -> None:
        task = asyncio.ensure_future(trim.every(0.01))
        while len(calls) < 3:
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(asyncio.wait_for(scenario(), 10))
    assert len(calls) >= 3
