"""kopf handlers: thin. Every event of a job, of its pods or of a node, and a timer, trigger
the same level-based reconcile of the job (``reconcile.reconcile_once``) in a worker thread.

In memory there are only locks (one pass per job at a time) and wake-up timers; everything a
decision depends on is read from the API on each pass, so a restart loses nothing.

A handler only *asks* for a pass (``Reconciler.request``) and returns at once: kopf's worker
for the object then drops the event's body instead of holding it (and the next one) while
the pass waits its turn; and the events of a job that come while a pass of it waits for its
turn join that pass, which reads the job after all of them (at 1000 jobs, startup brings
3-4 events per job and each one used to cost a pass of its own).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from . import decisions, injection, live, pacing, trim
from .builders import LABEL_JOB
from .cleanup import LABEL_CLEANUP
from .kube import Conflict, Kube, load_config, watched_namespaces
from .metrics import METRICS, Metrics
from .models import GROUP, PLURAL, VERSION
from .reconcile import reconcile_once

log = logging.getLogger("spotrun_operator")
RESYNC_SECONDS = pacing.TICK_SECONDS
RETRY_SECONDS = 0.5
EVENT_WORKERS = 4
RESYNC_WORKERS = 2
# No word from kopf about a job for this long (2 resync intervals and some): kopf is paused.
SILENCE_SECONDS = 2 * RESYNC_SECONDS + 5


@dataclass
class Reconciler:
    """Serializes passes per job and schedules the next one when a plan asks for it.

    Passes run in threads: those a change triggered (an event, a requested wake-up) in their
    own pool, the periodic resyncs in a smaller one, so a backlog of resyncs (200 jobs every
    10 s on 2 cores) never delays the reaction to a preemption. A resync is skipped while a
    pass of the job is under way or when one ran within its gap (``pacing.py``: the resyncs of
    all jobs together stay within a budget, so the gap grows past 200 jobs).

    A wake-up a pass asked for runs only while kopf still tells about the job (its resync
    timer does every interval): a replica that kopf's peering paused, or one whose job went
    away unseen, lets its own wake-ups lapse instead of reconciling beside the active one.

    Sidecars' progress reports are read by ``reports`` in threads of its own (``live.py``):
    a pass only reads its cache, and a changed report wakes the job."""

    kube: Kube
    metrics: Metrics = METRICS
    sidecar_image: str | None = None  # --sidecar-image (injection.py): what pods are made of
    locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
    wakeups: dict[tuple[str, str], asyncio.TimerHandle] = field(default_factory=dict)
    last_pass: dict[tuple[str, str], float] = field(default_factory=dict)
    heard: dict[tuple[str, str], float] = field(default_factory=dict)
    queued: set[tuple[str, str]] = field(default_factory=set)  # a pass waits for its turn
    requests: set[asyncio.Future[None]] = field(default_factory=set)  # what request() started
    events_pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(EVENT_WORKERS, thread_name_prefix="reconcile")
    )
    resync_pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(RESYNC_WORKERS, thread_name_prefix="resync")
    )
    resync_slots: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(RESYNC_WORKERS)
    )
    reports: live.Reports = field(init=False)
    loop: asyncio.AbstractEventLoop | None = None

    def __post_init__(self) -> None:
        self.reports = live.Reports(self.report_changed, self.metrics.sidecar_read)

    def report_changed(self, namespace: str, name: str) -> None:
        """From a poller thread: a sidecar's report changed, so reconcile its job now."""
        if self.loop is not None:
            self.loop.call_soon_threadsafe(
                lambda: asyncio.ensure_future(self.run(namespace, name, woken=True))
            )

    def _pass(self, namespace: str, name: str) -> float | None:
        with self.metrics.reconcile.time():
            return reconcile_once(
                self.kube, namespace, name, self.metrics, self.reports, self.sidecar_image
            )

    async def run(
        self, namespace: str, name: str, resync: bool = False, woken: bool = False
    ) -> None:
        key = (namespace, name)
        self.loop = asyncio.get_running_loop()
        if not woken:
            self.heard[key] = time.monotonic()  # kopf told about the job: it is active
        elif time.monotonic() - self.heard.get(key, -1e9) > SILENCE_SECONDS:
            log.debug("%s/%s: kopf silent (paused by peering?); wake-up dropped", *key)
            return
        if key in self.queued:
            return  # a pass of this job waits for its turn: it reads the job after this change
        lock = self.locks.setdefault(key, asyncio.Lock())
        if not resync:
            self.queued.add(key)
            started = False
            try:
                async with lock:
                    started = True
                    self.queued.discard(key)  # from now on a change needs a pass of its own
                    after = await self._execute(key, self.events_pool)
            finally:
                if not started:
                    self.queued.discard(key)
        else:
            gap = pacing.resync_gap(len(self.heard), key)  # longer at scale (pacing.py)
            if time.monotonic() - self.last_pass.get(key, -1e9) < gap:
                return  # checked before queueing too: a skipped tick never waits for a slot
            async with self.resync_slots:  # queue here, not while holding the job's lock
                if lock.locked() or time.monotonic() - self.last_pass.get(key, -1e9) < gap:
                    return  # a pass is under way or ran lately: nothing to heal
                async with lock:
                    after = await self._execute(key, self.resync_pool)
        if after is not None:
            self.wake(namespace, name, max(after, 0.05))

    async def _execute(self, key: tuple[str, str], pool: ThreadPoolExecutor) -> float | None:
        namespace, name = key
        try:
            return await asyncio.get_running_loop().run_in_executor(
                pool, self._pass, namespace, name
            )
        except Conflict as err:
            log.info("%s; reconciling again", err)
            return RETRY_SECONDS
        except ApiException as err:
            log.warning("%s/%s: API error %s %s; retrying", namespace, name, err.status, err.reason)
            return RETRY_SECONDS * 4
        finally:
            self.last_pass[key] = time.monotonic()

    def request(self, namespace: str, name: str) -> None:
        """From a kopf handler: reconcile the job soon (``run``), without waiting for it."""
        task = asyncio.ensure_future(self.run(namespace, name))
        self.requests.add(task)

        def done(task: asyncio.Future[None]) -> None:
            self.requests.discard(task)
            if not task.cancelled() and (err := task.exception()) is not None:
                # as kopf logs a failed handler; the next resync tries again
                log.error("%s/%s: reconcile failed", namespace, name, exc_info=err)

        task.add_done_callback(done)

    def wake(self, namespace: str, name: str, delay: float) -> None:
        key = (namespace, name)
        if (old := self.wakeups.pop(key, None)) is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self.wakeups[key] = loop.call_later(
            delay, lambda: asyncio.ensure_future(self.run(namespace, name, woken=True))
        )

    def forget(self, namespace: str, name: str) -> None:
        if (old := self.wakeups.pop((namespace, name), None)) is not None:
            old.cancel()
        self.locks.pop((namespace, name), None)
        self.last_pass.pop((namespace, name), None)
        self.heard.pop((namespace, name), None)
        self.queued.discard((namespace, name))
        self.reports.forget((namespace, name))
        self.metrics.job_gone((namespace, name))


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    """Keep kopf's own bookkeeping in annotations (status belongs to the schema)."""
    settings.persistence.finalizer = f"{GROUP}/operator"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)  # not one line per event
    level = os.environ.get("SPOTRUN_LOG_LEVEL", "INFO").upper()
    logging.getLogger("spotrun_operator").setLevel(level)  # INFO: decisions and Events
    settings.watching.server_timeout = 300
    configure_peering(settings.peering, os.environ)
    memo.reconciler = Reconciler(
        Kube(load_config(), watched_namespaces(os.environ)),
        sidecar_image=injection.from_env(os.environ),
    )


@kopf.on.startup()
async def start_trimming(memo: Any, **_: Any) -> None:
    """Hand freed memory back to the system every minute (``trim.py``)."""
    memo.trimming = asyncio.ensure_future(trim.every())


@kopf.on.cleanup()
async def stop_trimming(memo: Any, **_: Any) -> None:
    if (task := getattr(memo, "trimming", None)) is not None:
        task.cancel()


def configure_peering(peering: Any, env: Mapping[str, str]) -> None:
    """Replicas of one Deployment start alike, and kopf pauses every operator of a peering that
    sees another one of the same priority: so each replica takes its own priority
    (SPOTRUN_PEERING_PRIORITY, else a random one); the highest is active, the others stand by.
    SPOTRUN_PEERING_LIFETIME: seconds a silent replica still counts as alive (kopf: 60), i.e.
    about how long a standby waits before it takes over from one that died."""
    if peering.standalone:
        return
    peering.priority = int(env.get("SPOTRUN_PEERING_PRIORITY") or random.randint(1, 2**31 - 1))
    if lifetime := env.get("SPOTRUN_PEERING_LIFETIME"):
        peering.lifetime = int(lifetime)


def _reconciler(memo: Any) -> Reconciler:
    reconciler: Reconciler = memo.reconciler
    return reconciler


@kopf.on.event(GROUP, VERSION, PLURAL)
async def job_event(type: str, name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    """Any change of a job (spec, status, deletion): reconcile it."""
    assert namespace is not None  # the CRD is namespaced
    if type == "DELETED":
        _reconciler(memo).forget(namespace, name)
        return
    _reconciler(memo).request(namespace, name)


@kopf.timer(GROUP, VERSION, PLURAL, interval=RESYNC_SECONDS)
async def resync(name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    """Periodic level-based resync: heals missed events."""
    assert namespace is not None
    await _reconciler(memo).run(namespace, name, resync=True)


@kopf.on.event("", "v1", "pods", labels={LABEL_JOB: kopf.PRESENT})
async def pod_event(labels: Mapping[str, str], namespace: str | None, memo: Any, **_: Any) -> None:
    """A pod of a job changed: reconcile its job."""
    assert namespace is not None
    _reconciler(memo).request(namespace, labels[LABEL_JOB])


@kopf.on.event("", "v1", "pods", labels={LABEL_CLEANUP: kopf.PRESENT})
async def cleanup_pod_event(
    labels: Mapping[str, str], namespace: str | None, memo: Any, **_: Any
) -> None:
    """A checkpoint-cleanup pod of a deleted job changed: carry on with that job."""
    assert namespace is not None
    _reconciler(memo).request(namespace, labels[LABEL_CLEANUP])


@kopf.index("", "v1", "pods", labels={LABEL_JOB: kopf.PRESENT})
def pods_by_node(
    spec: kopf.Spec, labels: Mapping[str, str], namespace: str | None, **_: Any
) -> dict[str, tuple[str, str]] | None:
    """Which jobs have pods on a node (for node events)."""
    node = spec.get("nodeName")
    return {str(node): (str(namespace), labels[LABEL_JOB])} if node else None


@kopf.on.event("", "v1", "nodes")
async def node_event(name: str, spec: kopf.Spec, type: str, memo: Any, **kwargs: Any) -> None:
    """A node got an interruption taint or went away: reconcile the jobs with pods on it."""
    if type != "DELETED" and decisions.interruption_taint({"spec": dict(spec)}) is None:
        return
    index: kopf.Index[str, tuple[str, str]] = kwargs["pods_by_node"]
    for namespace, job in set(index.get(name, [])):
        _reconciler(memo).request(namespace, job)
