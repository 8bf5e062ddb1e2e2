"""Hand memory freed by the C allocator back to the system, now and then.

The reconcile threads parse API answers (a pod list per pass, every job's list before a job's
first pod) with the C allocator's per-thread arenas; what they free stays in those arenas,
resident, until ``malloc_trim`` returns whole free pages to the kernel. At 1000 jobs one call
took the operator from 311 to 282 MB resident (measured 2026-12-01). glibc only: elsewhere
(musl, macOS) there is nothing to call and this does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

log = logging.getLogger("spotrun_operator")

EVERY_SECONDS = 60.0


def malloc_trim() -> Callable[[], int] | None:
    """glibc's ``malloc_trim(0)``, or None where the C library has none."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: int(trim(0))


async def every(seconds: float = EVERY_SECONDS) -> None:
    """Trim every ``seconds`` until cancelled (a task of the operator's event loop)."""
    trim = malloc_trim()
    if trim is None:
        log.debug("no malloc_trim in this C library: freed memory is not trimmed")
        return
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(seconds)
        await loop.run_in_executor(None, trim)  # ctypes lets go of the GIL meanwhile
