"""How an attempt's pod ended, classified from the Pod and Node objects real kubelets and
controllers write (fixtures/endings/*.yaml, each naming its source), and what the job's status
does with it: a kubelet's probe kill or an OOM kill is a failure, a lost pod a preemption.

fixtures/endings/kind-*.yaml were captured from a real kubelet, containerd and
kube-controller-manager on kind (tests/kind/capture_endings.py, each header says how); the
others were written from the Kubernetes and containerd sources they name."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from spotrun_operator import reasons
from spotrun_operator.decisions import plan
from spotrun_operator.endings import KILL_SETTLE_SECONDS, Outcome, classify_end
from spotrun_operator.podstate import node_health, parse_ts
from tests.unit.operator.test_decisions import job
from tests.unit.operator.test_gang import GANG, NODES, NOW, deleted, started_gang
from tests.unit.operator.test_gang import ended as gang_ended
from tests.unit.operator.test_gang import job as job_of_gang
from tests.unit.operator.test_gang import node as gang_node

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).parent / "fixtures" / "endings"
CASES = sorted(p.stem for p in FIXTURES.glob("*.yaml"))
# tests/kind/capture_endings.py's cases, as the outcome they must be charged as
CAPTURED = {
    "kind-oom-killed": "failure",
    "kind-liveness-probe-kill": "failure",
    "kind-scheduler-preemption": "preemption",
    "kind-drained-with-notice": "preemption",
    "kind-abrupt-node-loss": "preemption",
    "kind-taint-manager-unreachable": "preemption",
}


def load(name: str) -> dict[str, Any]:
    case: dict[str, Any] = yaml.safe_load((FIXTURES / f"{name}.yaml").read_text())
    return case


def at(case: dict[str, Any]) -> datetime:
    now = parse_ts(case["expect"]["now"])
    assert now is not None
    return now


def term(case: dict[str, Any]) -> dict[str, Any]:
    """The trainer's ``state.terminated`` in the fixture."""
    terminated: dict[str, Any] = case["pod"]["status"]["containerStatuses"][0]["state"][
        "terminated"
    ]
    return terminated


def finished(case: dict[str, Any]) -> datetime:
    when = parse_ts(term(case)["finishedAt"])
    assert when is not None
    return when


def classify(case: dict[str, Any], suspended: bool = False, now: datetime | None = None) -> Any:
    return classify_end(case["pod"], case["node"], suspended, "trainer", now=now or at(case))


def test_every_fixture_names_its_source():
    assert len(CASES) >= 9
    for name in CASES:
        text = (FIXTURES / f"{name}.yaml").read_text()
        assert "kubernetes/kubernetes" in text or "containerd" in text, name
        assert " @ " in text, f"{name}: no commit named"


def test_every_captured_case_has_a_fixture_from_a_real_kubelet():
    assert set(CAPTURED) == {n for n in CASES if n.startswith("kind-")}
    for name in CAPTURED:
        text = (FIXTURES / f"{name}.yaml").read_text()
        assert text.startswith("# Captured on kind (kubelet and kube-controller-manager v1."), name
        header = " ".join(text.split("\nexpect:")[0].replace("#", " ").split())
        assert f"case {name.removeprefix('kind-')})" in header, name
        node = load(name)["node"] or load("kind-oom-killed")["node"]
        assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")


def test_every_disruption_target_reason_has_a_fixture_and_is_a_preemption():
    seen = {}
    for name in CASES:
        case = load(name)
        for c in case["pod"]["status"].get("conditions") or []:
            if c["type"] == "DisruptionTarget":
                seen[c["reason"]] = classify(case).outcome
    assert set(seen) == set(reasons.DISRUPTION_REASONS)
    assert set(seen.values()) == {Outcome.PREEMPTED}


@pytest.mark.parametrize("name", CASES)
def test_fixture_is_classified_as_the_platform_wrote_it(name):
    case = load(name)
    ended = classify(case)
    assert ended is not None, name
    assert ended.outcome is Outcome(case["expect"]["outcome"]), ended
    assert case["expect"]["why"] in ended.why, ended.why


def test_liveness_kill_says_what_happened_and_what_to_do():
    ended = classify(load("liveness-probe-kill"))
    assert ended.outcome is Outcome.FAILED and ended.exit_code == 143
    assert "livenessProbe" in ended.message and "digits-3" in ended.message
    assert "Error" not in ended.message.split(";")[-1]  # the runtime's bare reason adds nothing


def test_a_real_kubelets_liveness_kill_names_the_probe():
    ended = classify(load("kind-liveness-probe-kill"))
    assert ended.outcome is Outcome.FAILED and ended.exit_code == 143
    assert "livenessProbe" in ended.message and "capture-liveness-probe-kill" in ended.message


def test_a_probe_kill_after_the_grace_period_sigkill_is_a_failure_too():
    case = load("liveness-probe-kill")
    term(case)["exitCode"] = 137
    ended = classify(case)
    assert ended.outcome is Outcome.FAILED and "exit code 137" in ended.why


@pytest.mark.parametrize(
    ("name", "node_of", "outcome", "why"),
    [
        # the same container end on a node gone silent or shutting down: the node explains it
        (
            "liveness-probe-kill",
            "taint-manager-unreachable",
            "Preempted",
            "node spot-7 unreachable",
        ),
        ("liveness-probe-kill", "graceful-node-shutdown", "Preempted", "node spot-7 not ready"),
        ("liveness-probe-kill", "podgc-node-deleted", "Preempted", "node spot-7 gone"),
        # the runtime reported the OOM kill: the node was up, whatever it says now
        ("oom-killed", "taint-manager-unreachable", "Failed", "OOMKilled"),
    ],
)
def test_the_node_explains_a_signal_but_never_an_oom_kill(name, node_of, outcome, why):
    case = load(name)
    case["node"] = load(node_of)["node"]
    ended = classify(case)
    assert ended.outcome is Outcome(outcome) and why in ended.why, ended


def test_an_oom_kill_says_to_raise_the_memory_limit():
    assert "limits.memory" in classify(load("oom-killed")).message


def test_oom_kill_during_an_eviction_is_the_evictions():
    case = load("oom-killed")
    case["pod"]["status"]["conditions"] = load("node-pressure-eviction")["pod"]["status"][
        "conditions"
    ]
    assert classify(case).outcome is Outcome.PREEMPTED


@pytest.mark.parametrize("name", ["taint-manager-unreachable", "kind-taint-manager-unreachable"])
def test_a_lost_pod_is_waited_for_until_its_grace_period_ends(name):
    case = load(name)
    deadline = parse_ts(case["pod"]["metadata"]["deletionTimestamp"])
    assert deadline is not None
    assert classify(case, now=deadline - timedelta(seconds=1)) is None
    assert classify(case, now=deadline).outcome is Outcome.PREEMPTED


def test_a_deleted_pod_on_a_reporting_node_is_waited_for():
    """Ready, or NotReady but still reporting: its kubelet will tell how the trainer ended."""
    case = load("taint-manager-unreachable")
    for node in (load("liveness-probe-kill")["node"], load("graceful-node-shutdown")["node"]):
        case["node"] = node
        assert classify(case) is None


def test_a_running_pod_on_an_unreachable_node_is_not_lost_before_it_is_deleted():
    case = load("taint-manager-unreachable")
    del case["pod"]["metadata"]["deletionTimestamp"]
    case["pod"]["status"]["conditions"] = []
    assert classify(case) is None


def test_a_lost_pod_of_a_suspended_job_is_suspended():
    ended = classify(load("taint-manager-unreachable"), suspended=True)
    assert ended.outcome is Outcome.SUSPENDED


@pytest.mark.parametrize(
    ("name", "health"),
    [
        ("liveness-probe-kill", "ready"),
        ("graceful-node-shutdown", "not-ready"),
        ("taint-manager-unreachable", "unreachable"),
        ("podgc-node-deleted", "gone"),
    ],
)
def test_node_health(name, health):
    assert node_health(load(name)["node"]) == health


def test_a_node_with_only_the_unreachable_taint_is_unreachable():
    node = copy.deepcopy(load("liveness-probe-kill")["node"])
    node["spec"]["taints"] = [{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]
    assert node_health(node) == "unreachable"


def _ended_plan(name: str, now: datetime | None = None, **status: Any) -> Any:
    """plan() for job ``digits`` whose attempt 3 is the fixture's pod."""
    case = load(name)
    st = {"attempt": 3, "activePod": "digits-3", "phase": "Running", **status}
    nodes = {"spot-7": case["node"]} if case["node"] else {}
    j = replace(job(st, backoffLimit=2), name="digits")
    return plan(j, [case["pod"]], nodes, False, now or at(case))


def test_a_liveness_kill_counts_against_backoff_limit_not_preemptions():
    out = _ended_plan("liveness-probe-kill", preemptions=2)
    st = out.status
    assert (st.failures, st.preemptions, st.attempt, st.lastExitCode) == (1, 2, 4, 143)
    told = [(e.type, e.reason, e.message) for e in out.events]
    failed = [m for kind, reason, m in told if reason == "AttemptFailed"]
    assert told[0][0] == "Warning" and failed and "livenessProbe" in failed[0]
    assert "retry 1 of 2" in failed[0]


def test_a_lost_pod_counts_as_a_preemption_and_releases_the_pod():
    out = _ended_plan("taint-manager-unreachable")
    assert (out.status.preemptions, out.status.failures) == (1, 0)
    assert out.release == ["digits-3"]
    assert any(e.reason == "Preempted" and "pod lost" in e.message for e in out.events)


@pytest.mark.parametrize("name", sorted(CAPTURED))
def test_a_real_kubelets_ending_is_charged_as_it_should_be(name):
    """Each captured pod as attempt 1 of job ``a`` (only its name and labels changed): a
    failure is charged to backoffLimit, a preemption to the preemptions, never the other."""
    case = load(name)
    pod = copy.deepcopy(case["pod"])
    pod["metadata"]["name"] = "a-1"
    pod["metadata"]["labels"].update({"spotrun.dev/job": "a", "spotrun.dev/attempt": "1"})
    nodes = {pod["spec"]["nodeName"]: case["node"]} if case["node"] else {}
    j = job({"attempt": 1, "activePod": "a-1", "phase": "Running"}, backoffLimit=2)
    st = plan(j, [pod], nodes, False, at(case)).status
    failure = CAPTURED[name] == "failure"
    assert (st.failures, st.preemptions, st.attempt) == (int(failure), int(not failure), 2), st


def test_a_real_kubelets_probe_kill_is_decided_once_a_dead_node_would_show():
    case = load("kind-liveness-probe-kill")
    early = finished(case) + timedelta(seconds=KILL_SETTLE_SECONDS - 1)
    assert classify(case, now=early) is None
    assert classify(case, now=early + timedelta(seconds=1)).outcome is Outcome.FAILED


def test_a_kubelet_kill_is_decided_once_a_dead_node_would_show():
    """A VM switched off may report its trainer's SIGTERM exit before the node controller
    marks it unreachable: the end stays undecided for KILL_SETTLE_SECONDS, and is rechecked."""
    case = load("liveness-probe-kill")
    early = finished(case) + timedelta(seconds=KILL_SETTLE_SECONDS - 1)
    assert classify(case, now=early) is None
    assert classify(case, now=early + timedelta(seconds=1)).outcome is Outcome.FAILED
    waiting = _ended_plan("liveness-probe-kill", now=early)
    assert waiting.status.failures == 0 and waiting.release == []
    assert waiting.requeue_after is not None and waiting.requeue_after <= 5.0


def test_an_oom_kill_or_an_exit_1_is_decided_at_once():
    case = load("oom-killed")
    assert classify(case, now=finished(case)).outcome is Outcome.FAILED
    term(case).update(exitCode=1, reason="Error")
    assert classify(case, now=finished(case)).outcome is Outcome.FAILED


def _under_torchrun(case: dict[str, Any], code: int) -> dict[str, Any]:
    """The fixture's pod as one the operator runs under torchrun (PET_NNODES in the trainer's
    env, gang.torchrun_env), its trainer ended with ``code``."""
    case = copy.deepcopy(case)
    case["pod"]["spec"]["containers"] = [
        {"name": "trainer", "env": [{"name": "PET_NNODES", "value": "2"}]}
    ]
    term(case).update(exitCode=code, reason="Error")
    return case


@pytest.mark.parametrize(
    ("node_of", "why"),
    [
        ("taint-manager-unreachable", "node spot-7 unreachable"),
        ("graceful-node-shutdown", "node spot-7 not ready"),
        ("podgc-node-deleted", "node spot-7 gone"),
    ],
)
def test_torchrun_stopped_by_sigterm_exits_1_and_its_node_makes_that_a_preemption(node_of, why):
    """torchrun re-raises the SIGTERM it forwarded to its workers: exit 1, not 143. On a node
    gone, silent or shutting down that is a preemption; a plain trainer's exit 1 stays its own
    failure."""
    case = _under_torchrun(load("liveness-probe-kill"), 1)
    case["node"] = load(node_of)["node"]
    ended = classify(case)
    assert ended.outcome is Outcome.PREEMPTED and why in ended.why, ended
    plain = load("liveness-probe-kill")
    plain["node"] = case["node"]
    term(plain).update(exitCode=1, reason="Error")
    assert classify(plain).outcome is Outcome.FAILED


def test_torchruns_exit_1_on_a_healthy_node_is_a_failure_once_a_dead_node_would_show():
    case = _under_torchrun(load("liveness-probe-kill"), 1)
    early = finished(case) + timedelta(seconds=KILL_SETTLE_SECONDS - 1)
    assert classify(case, now=early) is None
    ended = classify(case, now=early + timedelta(seconds=1))
    assert ended.outcome is Outcome.FAILED and ended.why == "exit code 1", ended
    assert "killed by the kubelet" not in ended.message


def test_a_gang_rank_whose_torchrun_exits_1_as_its_node_dies_is_a_preemption_not_a_failure():
    """A spot VM switched off without graceful node shutdown: the kubelet still reports rank
    1's torchrun ending with exit 1 on SIGTERM, and the node turns unreachable only later. The
    gang's end waits for that, and it is a preemption, not charged to backoffLimit."""
    j, (zero, one) = started_gang(backoffLimit=0)
    exited = [zero, gang_ended(one, "Failed", 1, finished=NOW - timedelta(seconds=10))]
    wait = plan(j, exited, NODES, False, NOW)
    assert wait.delete == [] and wait.status.gang is not None and wait.status.gang.ending is None
    silent = {**NODES, "n1": gang_node(
        "n1", taints=[{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}])}
    out = plan(j, exited, silent, False, NOW + timedelta(seconds=45))
    assert out.delete == ["a-1-0"]
    assert out.status.gang is not None and out.status.gang.ending is not None
    assert (out.status.gang.ending.outcome, out.status.gang.ending.ranks) == ("Preempted", [1])
    assert "node n1 unreachable" in out.status.gang.ending.why
    done = [deleted(gang_ended(zero, "Failed", 1, finished=NOW, step=40)), exited[1]]
    later = job_of_gang(out.status.model_dump(), backoffLimit=0, **GANG)
    st = plan(later, done, silent, False, NOW + timedelta(seconds=50)).status
    assert (st.preemptions, st.failures, st.attempt, st.phase) == (1, 0, 2, "Restarting")


def test_a_lost_pod_says_no_final_save_was_reported_in_the_status():
    """A node lost with no notice: nothing reported a final save, and the Preempted condition
    (and Event) say so, next to the newest checkpoint the running attempt's sidecar reported."""
    out = _ended_plan("taint-manager-unreachable", lastCheckpoint={"step": 350, "uri": "s3://b/x"})
    (preempted,) = [c for c in out.status.conditions if c.type == "Preempted"]
    assert "last checkpoint step 350 (no final save reported)" in preempted.message, preempted
    assert "final save made it" not in preempted.message
