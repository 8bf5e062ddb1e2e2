"""A trainer that dies without saving does not hold its pod for the grace period (README, "S3 and
the sidecar": the sidecar "on SIGTERM stays until the trainer's final checkpoint is in S3 ...
one that died without saving ends the wait at once"), on kind's real kubelets: the sidecar
learns it from the lock the trainer's Checkpointer holds in the shared emptyDir (`.spotrun-alive`,
flock), which the kernel drops when the process dies, across two containers of one pod.

The example digits job runs as `python -c` of a few lines that run examples/digits/train.py
unchanged, but make its SIGTERM handler exit at once (os._exit(1)): the save the library would
make never happens, as with a script whose own cleanup crashes. The spot worker is preempted
with a 5 s notice and the job's 60 s grace period. The sidecar, whose log is followed while it
runs, stops waiting with "the trainer exited without saving a final checkpoint" (not "grace
deadline reached"), and its report says no final save; the pod ends before its grace period
(hack/kind/preempt says so, else it names the pods still running); it counts as a preemption;
attempt 2 restores the newest periodic checkpoint committed in S3 (README, "Grace periods":
the next attempt resumes from the last periodic checkpoint).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kind.jobs import SPOT_WORKER, Job, StartDigits, committed_steps, hack

pytestmark = [pytest.mark.kind, pytest.mark.timeout(1800)]

EPOCHS = 5000  # never done here: the test ends once attempt 2 has restored
CRASH_ON_SIGTERM = """
import os, runpy, signal, sys
install = signal.signal
def crashing(signum, handler):
    if signum == signal.SIGTERM and callable(handler):
        handler = lambda *_: os._exit(1)  # dies at the SIGTERM: the final save never happens
    return install(signum, handler)
signal.signal = crashing
sys.argv = ["examples/digits/train.py", "--epochs", sys.argv[1]]
runpy.run_path("examples/digits/train.py", run_name="__main__")
"""


def crash_on_sigterm(job: dict[str, Any]) -> None:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    container["command"] = ["python", "-c", CRASH_ON_SIGTERM, str(EPOCHS)]


@pytest.fixture
def digits(start_digits: StartDigits) -> Job:
    return start_digits("unsaved-kind", EPOCHS, edit=crash_on_sigterm)


@pytest.fixture
def sidecar_log(digits: Job, tmp_path: Path) -> Iterator[Path]:
    with digits.followed("digits-1", "spotrun-sidecar", tmp_path / "sidecar-1.log") as path:
        yield path


def test_a_trainer_dead_without_saving_ends_the_sidecars_wait_and_the_next_restores_s3s_newest(
    digits: Job, sidecar_log: Path
) -> None:
    preempt = hack(digits.cluster, "preempt", SPOT_WORKER, "--notice", "5")
    assert "still running after the grace period" not in preempt, preempt
    newest = max(committed_steps(digits.s3, digits.prefix))  # nothing commits after the node
    log = sidecar_log.read_text()
    assert "the trainer exited without saving a final checkpoint" in log, log[-3000:]
    assert "grace deadline reached" not in log, log[-3000:]
    assert '"finalSaved":false' in log, log[-3000:]

    hack(digits.cluster, "add-node", SPOT_WORKER)  # the cloud brings capacity back
    digits.restored_in("digits-2", newest)
    status = digits.status()
    assert (status["preemptions"], status["failures"], status["attempt"]) == (1, 0, 2), status
    assert not status["lastCheckpoint"].get("finalSaved"), status
