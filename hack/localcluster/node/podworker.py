"""One pod's life on the process node, in its own thread.

Volumes, then init containers in order (a native sidecar — an init container with
``restartPolicy: Always`` — counts as done once its startupProbe passes and keeps running),
then the main containers; restarts per ``restartPolicy`` with a short backoff; status
reported after every change. Graceful deletion: SIGTERM the main containers, then the
sidecars in reverse order once the mains have exited, SIGKILL at the grace deadline, final
status, then DELETE with grace 0 and a UID precondition.
"""

from __future__ import annotations

import logging
import shutil
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..kubeapi import Kube, KubeError
from . import podhosts, volumes
from .container import Process
from .envvars import ConfigError, Fetch, container_env, expand
from .nodes import now
from .podstatus import INIT, MAIN, SIDECAR, ContainerRun, pod_status
from .probes import ProbeState, run_once

Obj = dict[str, Any]
log = logging.getLogger("process-node.pod")

TICK = 0.1  # how often a pod's processes and probes are looked at
BACKOFF_MAX = 20.0
MESSAGE_LIMIT = 4096


@dataclass(frozen=True)
class NodeContext:
    """What every pod worker shares: the API, the state dir, env and volume sources."""

    kube: Kube
    state: Path
    fetch: Fetch
    token: volumes.TokenSource
    base_env: Callable[[Obj], dict[str, str]]
    workdir: str


class PodGone(Exception):
    """The pod object is gone from the API, or the node is: stop without ceremony."""


class PodWorker(threading.Thread):
    def __init__(self, pod: Obj, ctx: NodeContext) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.pod = pod
        self.ctx = ctx
        self.uid: str = meta["uid"]
        self.namespace: str = meta["namespace"]
        self.pod_name: str = meta["name"]
        self.wake = threading.Event()
        self.gone = threading.Event()
        self.pod_dir = ctx.state / "node" / "pods" / self.uid
        self.log_dir = ctx.state / "node" / "logs" / f"{self.namespace}_{self.pod_name}_{self.uid}"
        spec = pod["spec"]
        self.init_runs = [
            ContainerRun(c, SIDECAR if c.get("restartPolicy") == "Always" else INIT)
            for c in spec.get("initContainers") or []
        ]
        self.main_runs = [ContainerRun(c, MAIN) for c in spec["containers"]]
        if not self.init_runs:  # a kubelet says PodInitializing only while init containers run
            for run in self.main_runs:
                run.waiting_reason = "ContainerCreating"
        self.restart_policy: str = spec.get("restartPolicy", "Always")
        self.phase = "Pending"
        self.reason = ""
        self.message = ""
        self.initialized = not self.init_runs
        self.start_time = now()
        self.started_mono = time.monotonic()
        self.volume_paths: dict[str, Path] = {}
        self.sidecars: list[ContainerRun] = []  # the sidecars reached so far, in order
        self._reported: Obj | None = None

    # --- called from other threads -------------------------------------------------------
    def update(self, pod: Obj) -> None:
        self.pod = pod
        self.wake.set()

    def stop_now(self) -> None:
        """The pod object or its node is gone: kill everything, report nothing."""
        self.gone.set()
        self.wake.set()

    # --- the thread ---------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._lifecycle()
        except PodGone:
            pass
        except Exception:  # a worker must never die silently: log, then clean up below
            log.exception("pod %s/%s: the process node failed", self.namespace, self.pod_name)
        finally:
            for run in self.init_runs + self.main_runs:
                if run.process is not None:
                    run.process.kill_all()
            shutil.rmtree(self.pod_dir, ignore_errors=True)

    def _lifecycle(self) -> None:
        self._report()
        missing = [r.name for r in self.init_runs + self.main_runs if not r.spec.get("command")]
        if missing:
            for run in self.init_runs + self.main_runs:
                if run.name in missing:
                    run.waiting_reason = "CreateContainerError"
                    run.waiting_message = (
                        "the process node runs `command` (+ `args`) as a local process and "
                        "cannot run an image's entrypoint: set `command`"
                    )
            # Like a kubelet that cannot create the container: Pending, not Failed (so a
            # ReplicaSet does not churn replacements), until the pod is deleted.
            self._report()
            while not self._deleting():
                self._wait(1.0)
            self._terminate()
            return
        self._prepare_volumes()
        for run in self.init_runs:
            if not self._run_init(run):
                return
        self.initialized = True
        self._report()
        self._run_mains()

    def _wait(self, seconds: float = TICK) -> None:
        self.wake.wait(seconds)
        self.wake.clear()
        if self.gone.is_set():
            raise PodGone

    def _deleting(self) -> bool:
        return bool(self.pod["metadata"].get("deletionTimestamp"))

    def _deadline_exceeded(self) -> bool:
        limit = self.pod["spec"].get("activeDeadlineSeconds")
        return limit is not None and time.monotonic() - self.started_mono >= float(limit)

    def _prepare_volumes(self) -> None:
        while True:
            if self._deleting():
                self._terminate()
                raise PodGone
            try:
                self.volume_paths = volumes.prepare(
                    self.pod, self.pod_dir, self.ctx.fetch, self.ctx.token
                )
                return
            except (ConfigError, KubeError) as err:
                for run in self.init_runs + self.main_runs:
                    run.waiting_reason, run.waiting_message = "ContainerCreating", str(err)
                self._report()
                self._wait(1.0)

    # --- containers ---------------------------------------------------------------------
    def _start(self, run: ContainerRun) -> bool:
        """Start ``run`` unless it is backing off or its config is incomplete."""
        if time.monotonic() < run.backoff_until:
            return False
        spec = run.spec
        try:
            env = container_env(self.pod, spec, self.ctx.fetch, self.ctx.base_env(self.pod))
            mounts = volumes.mounts(spec, self.volume_paths, volumes.read_only_volumes(self.pod))
        except ConfigError as err:
            run.waiting_reason, run.waiting_message = "CreateContainerConfigError", str(err)
            return False
        argv = [expand(a, env) for a in list(spec["command"]) + list(spec.get("args") or [])]
        term = self.pod_dir / "termination" / f"{run.name}-{run.restart_count}"
        term.parent.mkdir(parents=True, exist_ok=True)
        term.write_text("")
        mounts.append(
            volumes.Mount(term, spec.get("terminationMessagePath", "/dev/termination-log"), False)
        )
        hosts = self._hosts_file()
        if hosts is not None:
            mounts.append(volumes.Mount(hosts, "/etc/hosts", True))
        log_path = self.log_dir / run.name / f"{run.restart_count}.log"
        run.log_path = str(log_path)
        workdir = spec.get("workingDir") or self.ctx.workdir
        run.process = Process(argv, env, mounts, workdir, log_path)
        run.started_at, run.finished_at, run.exit_code = now(), None, None
        run.reason = run.message = run.waiting_message = ""
        run.startup = ProbeState(spec["startupProbe"]) if spec.get("startupProbe") else None
        run.readiness = ProbeState(spec["readinessProbe"]) if spec.get("readinessProbe") else None
        run.liveness = ProbeState(spec["livenessProbe"]) if spec.get("livenessProbe") else None
        run.started = run.startup is None
        run.ready = run.started and run.readiness is None
        return True

    def _hosts_file(self) -> Path | None:
        """The pod-DNS stand-in (podhosts.py) for a pod with hostname and subdomain."""
        if not podhosts.names(self.pod):
            return None
        try:
            listed = self.ctx.kube.get(f"/api/v1/namespaces/{self.namespace}/pods")
        except KubeError as err:
            log.warning("%s/%s: no pod list for /etc/hosts: %s", self.namespace, self.pod_name, err)
            listed = {"items": [self.pod]}
        return podhosts.write(self.pod, list(listed.get("items") or []), self.pod_dir)

    def _reap(self, run: ContainerRun) -> bool:
        """Record the exit of ``run``'s process; True if it just ended."""
        if run.process is None or run.exit_code is not None:
            return False
        code = run.process.exit_code()
        if code is None:
            return False
        run.process.reap_group()
        run.exit_code, run.finished_at = code, now()
        run.reason = "Completed" if code == 0 else "Error"
        run.message = self._termination_message(run)
        run.started = run.ready = False
        return True

    def _termination_message(self, run: ContainerRun) -> str:
        term = self.pod_dir / "termination" / f"{run.name}-{run.restart_count}"
        text: str
        try:
            text = term.read_text(errors="replace")[:MESSAGE_LIMIT]
        except FileNotFoundError:
            text = ""
        policy = str(run.spec.get("terminationMessagePolicy", "File"))
        if not text.strip() and run.exit_code and policy == "FallbackToLogsOnError":
            lines = Path(run.log_path).read_text(errors="replace").splitlines()[-80:]
            text = "\n".join(lines)[-2048:]
        return text

    def _schedule_restart(self, run: ContainerRun) -> None:
        run.last_terminated = {k: v for k, v in run.terminated_state().items() if v != ""}
        run.restart_count += 1
        delay = min(2.0 ** (run.restart_count - 1), BACKOFF_MAX)
        run.backoff_until = time.monotonic() + delay
        run.exit_code, run.process = None, None
        run.waiting_reason = "CrashLoopBackOff"
        run.waiting_message = (
            f"back-off {delay:.0f}s restarting failed container={run.name} "
            f"pod={self.pod_name}_{self.namespace}({self.uid})"
        )

    def _tick_probes(self, run: ContainerRun) -> None:
        if not run.running or run.process is None:
            return
        if not run.started and run.startup is not None and run.startup.due():
            run.startup.record(run_once(run.startup.probe, run.spec, run.process))
            if run.startup.passed:
                run.started = True
                run.ready = run.readiness is None
            elif run.startup.failed:
                log.info("%s/%s: %s failed its startup probe", self.namespace, self.pod_name,
                         run.name)
                run.process.kill_all()
        if run.started and run.readiness is not None and run.readiness.due():
            run.readiness.record(run_once(run.readiness.probe, run.spec, run.process))
            run.ready = run.readiness.passed
        if run.started and run.liveness is not None and run.liveness.due():
            run.liveness.record(run_once(run.liveness.probe, run.spec, run.process))
            if run.liveness.failed:
                log.info("%s/%s: %s failed its liveness probe", self.namespace, self.pod_name,
                         run.name)
                run.process.kill_all()  # then restarted (or not) per restartPolicy

    def _keep_sidecars(self) -> None:
        """Keep the sidecars reached so far running (a sidecar always restarts)."""
        for run in self.sidecars:
            if self._reap(run):
                self._schedule_restart(run)
            if run.process is None:
                self._start(run)
            self._tick_probes(run)

    # --- phases -------------------------------------------------------------------------
    def _run_init(self, run: ContainerRun) -> bool:
        """Run one init container (or bring one sidecar up); False when the pod ended."""
        if run.kind == SIDECAR:
            self.sidecars.append(run)
        while True:
            if self._deleting() or self._deadline_exceeded():
                self._terminate()
                return False
            self._keep_sidecars()
            if run.kind == SIDECAR:
                if run.running and run.started:
                    return True
            else:
                if run.process is None:
                    self._start(run)
                elif self._reap(run):
                    if run.exit_code == 0:
                        self._report()
                        return True
                    if self.restart_policy == "Never":
                        self._finish("Failed", "", "")
                        return False
                    self._schedule_restart(run)
            self._report()
            self._wait()

    def _run_mains(self) -> None:
        while True:
            if self._deleting():
                self._terminate()
                return
            if self._deadline_exceeded():
                self.reason = "DeadlineExceeded"
                self.message = "Pod was active on the node longer than the specified deadline"
                self._terminate()
                return
            self._keep_sidecars()
            for run in self.main_runs:
                if run.process is None and not run.terminated:
                    self._start(run)
                elif self._reap(run):
                    restart = self.restart_policy == "Always" or (
                        self.restart_policy == "OnFailure" and run.exit_code != 0
                    )
                    if restart:
                        self._schedule_restart(run)
                self._tick_probes(run)
            if all(r.terminated for r in self.main_runs):
                ok = all(r.exit_code == 0 for r in self.main_runs)
                self._stop_sidecars(self._grace_deadline(None))
                self._finish("Succeeded" if ok else "Failed", self.reason, self.message)
                return
            if any(r.running for r in self.main_runs):
                self.phase = "Running"
            self._report()
            self._wait()

    def _grace_deadline(self, seconds: int | None) -> float:
        if seconds is None:
            seconds = int(self.pod["spec"].get("terminationGracePeriodSeconds", 30))
        return time.monotonic() + seconds

    @staticmethod
    def _pre_stop_then_sigterm(run: ContainerRun, deadline: float) -> None:
        """Run the container's preStop hook (within the grace period), then SIGTERM it."""
        process = run.process
        if process is None:
            return
        hook = (run.spec.get("lifecycle") or {}).get("preStop")
        remaining = max(deadline - time.monotonic(), 0.0)
        if hook and "sleep" in hook:
            time.sleep(min(float(hook["sleep"]["seconds"]), remaining))
        elif hook:
            run_once(dict(hook, timeoutSeconds=remaining), run.spec, process)
        process.signal(signal.SIGTERM)

    def _stop_runs(self, runs: list[ContainerRun], deadline: float) -> None:
        """preStop + SIGTERM ``runs`` together, wait for them until ``deadline``, then SIGKILL."""
        for run in runs:
            if run.running and run.process is not None:
                threading.Thread(target=self._pre_stop_then_sigterm, args=(run, deadline),
                                 name=f"stop-{run.name}", daemon=True).start()
        while any(run.running for run in runs) and time.monotonic() < deadline:
            for run in runs:
                self._reap(run)
            self._report()
            self._wait(TICK)
        for run in runs:
            if run.running and run.process is not None:
                run.process.kill_all()
                self._reap(run)

    def _stop_sidecars(self, deadline: float) -> None:
        for run in reversed(self.sidecars):
            self._stop_runs([run], deadline)

    def _terminate(self) -> None:
        """Graceful deletion (or the active deadline): stop everything, report, delete."""
        meta = self.pod["metadata"]
        grace = meta.get("deletionGracePeriodSeconds") if self._deleting() else None
        deadline = self._grace_deadline(grace)
        self._stop_runs([r for r in self.init_runs if r.kind == INIT] + self.main_runs, deadline)
        self._stop_sidecars(deadline)
        ok = all(r.exit_code == 0 for r in self.main_runs) and self.restart_policy != "Always"
        self._finish("Succeeded" if ok and self.initialized else "Failed", self.reason,
                     self.message)

    def _finish(self, phase: str, reason: str, message: str) -> None:
        """Report the terminal phase, then wait for deletion and remove the pod object."""
        for run in self.init_runs + self.main_runs:
            if run.process is not None and run.running:
                run.process.kill_all()
                self._reap(run)
        self.phase, self.reason, self.message = phase, reason, message
        self._report(force=True)
        while not self._deleting():
            self._wait(1.0)
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": self.uid},
        }
        try:
            self.ctx.kube.delete(f"/api/v1/namespaces/{self.namespace}/pods/{self.pod_name}", body)
        except KubeError as err:
            if err.status not in (404, 409):
                raise
        raise PodGone

    def _report(self, force: bool = False) -> None:
        status = pod_status(
            self.pod, self.phase, self.init_runs, self.main_runs, self.initialized,
            self.start_time, self.reason, self.message,
        )
        comparable = {k: v for k, v in status.items() if k != "conditions"}
        comparable["c"] = [(c["type"], c["status"]) for c in status["conditions"]]
        if comparable == self._reported and not force:
            return
        path = f"/api/v1/namespaces/{self.namespace}/pods/{self.pod_name}/status"
        try:
            self.ctx.kube.patch(path, {"status": status}, kind="strategic")
            self._reported = comparable
        except KubeError as err:
            if err.status == 404:
                raise PodGone from err
            log.warning("pod %s/%s: status update failed: %s", self.namespace, self.pod_name, err)
