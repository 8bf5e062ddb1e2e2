"""How often the periodic resync reconciles each job, as the number of jobs grows: pure.

kopf's timer wakes every job every ``TICK_SECONDS`` (that also tells the operator kopf still
reports the job: a paused peer's wake-ups lapse without it). A tick costs nothing; a resync
*pass* reads the job and its pods from the API. At 200 jobs one pass per job every 10 s is
20 passes a second; at 1000 jobs it would be 100 a second, more than 2 cores serve beside
the passes that react to events (each reads, decides and writes through the API server).

So all resyncs together get a budget of ``PASSES_PER_SECOND``: a job is resynced once
``resync_gap`` has passed since its last pass (of any kind: an event's pass heals as well),
10 s up to ``PASSES_PER_SECOND * 10`` jobs, then stretched in proportion (1000 jobs: 50 s).
Events and wake-ups a pass asks for are never paced: only the healing of missed events is.
The gap of each job is jittered a little, so jobs created together do not resync together.
"""

from __future__ import annotations

import zlib

TICK_SECONDS = 10.0  # kopf's timer interval per job
PASSES_PER_SECOND = 20.0  # resync passes of all jobs together, at most (on average)
JITTER = 0.1  # each job's gap is stretched by 0 .. 10 %, fixed per job


def resync_interval(jobs: int) -> float:
    """Seconds between two resync passes of one job while ``jobs`` jobs are held."""
    return max(TICK_SECONDS, jobs / PASSES_PER_SECOND)


def resync_gap(jobs: int, key: tuple[str, str]) -> float:
    """How long after a job's last pass a timer tick may resync it again.

    A tick that comes sooner is skipped. Half a tick is taken off, since the pass runs at the
    first tick after the gap: a job gets a pass about every ``resync_interval`` seconds (every
    tick's second one at small scale, as before). The jitter is the same for a job on every
    tick (a hash of its key), so its period stays steady."""
    spread = 1.0 + JITTER * (zlib.crc32("/".join(key).encode()) % 1000) / 1000
    return resync_interval(jobs) * spread - TICK_SECONDS / 2
