"""The operator's Prometheus metrics (served at /metrics with ``--metrics-port``).

- ``spotrun_jobs{phase}``: jobs by phase, as the operator last saw each (every phase listed,
  zeros included, so a dashboard never loses a series);
- ``spotrun_preemptions_total``, ``spotrun_failures_total``: attempts ended by the platform /
  by the trainer's own error, as recorded in job status by this operator process;
- ``spotrun_reconcile_duration_seconds``: one reconcile pass of one job;
- ``spotrun_reaction_seconds``: from the pass that first saw an attempt's pod ended to the
  creation of the next attempt's pod (backoff included, when the job asks for one);
- ``spotrun_sidecar_reads_total{outcome}``: reads of sidecars' /status (off the reconcile
  threads): ok, invalid (not a report, too large), refused (not a 200: a redirect too),
  failed (no complete answer within the deadline, connection refused or reset);
- the process's own ``process_*`` series (resident memory, CPU seconds, open fds).

One ``Metrics`` object owns its registry, so tests read exactly what they produced.
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections.abc import Iterable, Iterator, Mapping
from typing import get_args

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .models import Phase

PHASES: tuple[str, ...] = get_args(Phase)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

Key = tuple[str, str]  # (namespace, name)


def phase_counts(phases: Iterable[str]) -> dict[str, int]:
    """How many jobs are in each phase; every known phase appears, unknown ones are kept."""
    tally = Tally(phases)
    return {**{p: tally.get(p, 0) for p in PHASES}, **tally}


class _Jobs(Collector):
    def __init__(self, phases: Mapping[Key, str]) -> None:
        self.phases = phases

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "spotrun_jobs",
            "ResumableTrainingJobs by phase, as the operator saw them",
            labels=["phase"],
        )
        for phase, count in phase_counts(list(self.phases.values())).items():
            family.add_metric([phase], count)
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._phases: dict[Key, str] = {}
        self._ended_at: dict[Key, float] = {}
        self._lock = threading.Lock()
        self.registry.register(_Jobs(self._phases))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self.preemptions = Counter(
            "spotrun_preemptions", "Attempts ended by the platform", registry=self.registry
        )
        self.failures = Counter(
            "spotrun_failures",
            "Attempts ended by the trainer's own error (not preemptions)",
            registry=self.registry,
        )
        self.reconcile = Histogram(
            "spotrun_reconcile_duration_seconds",
            "Duration of one reconcile pass of one job",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.sidecar_reads = Counter(
            "spotrun_sidecar_reads",
            "Reads of sidecars' /status, by outcome",
            labelnames=["outcome"],
            registry=self.registry,
        )
        self.reaction = Histogram(
            "spotrun_reaction_seconds",
            "From an attempt's end seen to the next attempt's pod created",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def job_seen(self, key: Key, phase: str) -> None:
        with self._lock:
            self._phases[key] = phase

    def job_gone(self, key: Key) -> None:
        with self._lock:
            self._phases.pop(key, None)
            self._ended_at.pop(key, None)

    def recorded(self, key: Key, preemptions: int, failures: int, seen_at: float) -> None:
        """A status patch recorded ``preemptions``/``failures`` more attempt ends."""
        if preemptions > 0:
            self.preemptions.inc(preemptions)
        if failures > 0:
            self.failures.inc(failures)
        if preemptions + failures > 0:
            with self._lock:
                self._ended_at.setdefault(key, seen_at)

    def sidecar_read(self, outcome: str) -> None:
        self.sidecar_reads.labels(outcome).inc()

    def replaced(self, key: Key, created_at: float) -> None:
        """The next attempt's pod was created."""
        with self._lock:
            seen_at = self._ended_at.pop(key, None)
        if seen_at is not None:
            self.reaction.observe(max(0.0, created_at - seen_at))

    def text(self) -> bytes:
        return generate_latest(self.registry)

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        start_http_server(port, addr=addr, registry=self.registry)


METRICS = Metrics()
