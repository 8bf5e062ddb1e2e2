"""Multi-node attempts (spec.nodes.max > 1): the pods of a gang, and how its end is decided."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from spotrun.podenv import PodEnv
from spotrun_operator import builders, gang
from spotrun_operator.builders import Job
from spotrun_operator.decisions import Plan, plan
from spotrun_operator.models import JobSpec, JobStatus
from spotrun_operator.reconcile import merge_patch

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
GANG = {"nodes": {"max": 2}, "procsPerNode": 2}


def job(status: dict[str, Any] | None = None, name: str = "a", **spec: Any) -> Job:
    body: dict[str, Any] = {
        "template": {
            "spec": {"containers": [{"name": "trainer", "image": "img", "command": ["torchrun"]}]}
        },
        "checkpoint": {
            "storage": {"uri": "s3://bucket/a", "endpoint": "http://s3:9000"},
            "sidecarPort": 9000,
        },
        **spec,
    }
    status_model = JobStatus.model_validate(status or {})
    return Job(name, "ns", "uid-1", 1, "100", JobSpec.model_validate(body), status_model)


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env") or [] if "value" in e}


def created(out: Plan) -> list[dict[str, Any]]:
    return [out.create, *out.create_rest] if out.create is not None else []


def node(name: str, **spec: Any) -> dict[str, Any]:
    ready = {"type": "Ready", "status": "True"}
    return {"metadata": {"name": name}, "spec": spec, "status": {"conditions": [ready]}}


NODES = {"n0": node("n0"), "n1": node("n1")}


def running(pod: dict[str, Any], node_name: str) -> dict[str, Any]:
    pod = json.loads(json.dumps(pod))
    pod["spec"]["nodeName"] = node_name
    pod["metadata"]["creationTimestamp"] = "2026-01-01T11:00:00Z"
    pod["status"] = {"phase": "Running", "startTime": "2026-01-01T11:00:00Z"}
    return pod


def ended(
    pod: dict[str, Any], phase: str, code: int, *, finished: datetime, step: int | None = None
) -> dict[str, Any]:
    pod = json.loads(json.dumps(pod))
    at = finished.isoformat().replace("+00:00", "Z")
    pod["status"] = {
        "phase": phase,
        "startTime": "2026-01-01T11:00:00Z",
        "containerStatuses": [
            {"name": "trainer", "state": {"terminated": {"exitCode": code, "finishedAt": at}}}
        ],
    }
    if step is not None:
        report = json.dumps({"step": step, "uri": "s3://bucket/a/x", "finalSaved": True})
        pod["status"]["initContainerStatuses"] = [
            {"name": builders.SIDECAR, "state": {"terminated": {"exitCode": 0, "message": report}}}
        ]
    return pod


def deleted(pod: dict[str, Any], disrupted: bool = False) -> dict[str, Any]:
    pod = json.loads(json.dumps(pod))
    pod["metadata"]["deletionTimestamp"] = "2026-01-01T12:00:30Z"
    if disrupted:
        pod["status"]["conditions"] = [
            {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}
        ]
    return pod


def started_gang(**spec: Any) -> tuple[Job, list[dict[str, Any]]]:
    """A gang job whose attempt 1 was created and whose two pods run on n0 and n1."""
    first = plan(job(**{**GANG, **spec}), [], {}, False, NOW)
    pods = [running(p, f"n{i}") for i, p in enumerate(created(first))]
    out = plan(job(first.status.model_dump(), **{**GANG, **spec}), pods, NODES, False, NOW)
    return job(out.status.model_dump(), **{**GANG, **spec}), pods


def test_a_default_job_keeps_its_single_pod_and_env():
    out = plan(job(), [], {}, False, NOW)
    pod = out.create
    assert pod is not None and pod["metadata"]["name"] == "a-1"
    assert out.create_rest == [] and out.service is None and out.status.gang is None
    env = env_of(pod["spec"]["containers"][0])
    assert not [k for k in env if k.startswith(("PET_", "MASTER_", "SPOTRUN_NNODES",
                                                 "SPOTRUN_NODE_RANK", "SPOTRUN_NPROC"))]
    assert env["SPOTRUN_SIDECAR_PORT"] == "9000"
    assert "hostname" not in pod["spec"] and "podAntiAffinity" not in pod["spec"]["affinity"]


def test_one_node_with_several_processes_gets_torchruns_env_for_one_node():
    pod = plan(job(procsPerNode=4), [], {}, False, NOW).create
    assert pod is not None and pod["metadata"]["name"] == "a-1"
    env = env_of(pod["spec"]["containers"][0])
    assert (env["PET_NNODES"], env["PET_NPROC_PER_NODE"], env["MASTER_ADDR"]) == (
        "1",
        "4",
        "127.0.0.1",
    )
    assert PodEnv.from_env(env).procs_per_node == 4


def test_a_gang_attempt_creates_every_rank_one_per_node_with_static_rendezvous():
    out = plan(job(**GANG), [], {}, False, NOW)
    pods = created(out)
    assert [p["metadata"]["name"] for p in pods] == ["a-1-0", "a-1-1"]
    assert out.status.activePod == "a-1-0"
    for rank, pod in enumerate(pods):
        spec = pod["spec"]
        assert (spec["hostname"], spec["subdomain"]) == (f"a-1-{rank}", "a")
        assert pod["metadata"]["labels"][gang.LABEL_RANK] == str(rank)
        anti = spec["affinity"]["podAntiAffinity"]
        [term] = anti["requiredDuringSchedulingIgnoredDuringExecution"]
        assert term["topologyKey"] == "kubernetes.io/hostname"
        labels = term["labelSelector"]["matchLabels"]
        assert labels == {builders.LABEL_JOB: "a", builders.LABEL_ATTEMPT: "1"}
        env = env_of(spec["containers"][0])
        assert env["PET_NNODES"] == "2" and env["PET_NODE_RANK"] == str(rank)
        assert env["PET_NPROC_PER_NODE"] == "2"
        assert env["PET_MASTER_ADDR"] == env["MASTER_ADDR"] == "a-1-0.a"
        assert env["PET_MASTER_PORT"] == env["MASTER_PORT"] == "29500"
        # torchrun's SIGKILL of its workers waits the pod's grace period, not its own 30 s
        grace = spec["terminationGracePeriodSeconds"]
        assert env["TORCH_ELASTIC_SHUTDOWN_TIMEOUT"] == str(grace)
        seen = PodEnv.from_env(env)
        assert (seen.nnodes, seen.node_rank, seen.procs_per_node) == (2, rank, 2)
        sidecar = spec["initContainers"][0]
        assert seen.sidecar_port == 9000 + rank
        assert PodEnv.from_env(env_of(sidecar)).sidecar_port == 9000 + rank
        assert sidecar["readinessProbe"]["httpGet"]["port"] == 9000 + rank
    service = out.service
    assert service is not None and service["metadata"]["name"] == "a"
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"] == {builders.LABEL_JOB: "a"}
    assert service["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert out.status.gang is not None and out.status.gang.worldSize == 4
    assert any(r == "Gang" and "world size 4" in m for _, r, m in out.events)


def test_the_rendezvous_port_is_the_trainers_port_named_rendezvous():
    template = {
        "spec": {
            "containers": [
                {
                    "name": "trainer",
                    "image": "img",
                    "ports": [{"name": "rendezvous", "containerPort": 23456}],
                }
            ]
        }
    }
    out = plan(job(template=template, **GANG), [], {}, False, NOW)
    assert out.create is not None
    assert env_of(out.create["spec"]["containers"][0])["MASTER_PORT"] == "23456"
    assert out.service is not None and out.service["spec"]["ports"][0]["port"] == 23456


def test_hostnames_and_the_service_name_are_dns_labels_for_any_job_name():
    long = "x" * 60 + ".y"
    assert len(gang.hostname(long, 123, 45)) <= 63 and gang.hostname(long, 123, 45).endswith(
        "-123-45"
    )
    assert gang.service_name("9lives").startswith("rtj-9lives-")
    assert gang.service_name("a") == "a"
    assert gang.master_addr("a", 2) == "a-2-0.a"


def test_an_operator_restarted_mid_creation_never_makes_a_second_pod_for_a_rank():
    first = plan(job(**GANG), [], {}, False, NOW)
    # the status patch was lost: the next pass builds the same names (a create conflicts)
    again = plan(job(**GANG), [running(created(first)[0], "n0")], {}, False, NOW)
    assert [p["metadata"]["name"] for p in created(again)] == ["a-1-0", "a-1-1"]
    # the status recorded it: nothing is created, even with a rank still unscheduled
    pods = [running(p, "n0") for p in created(first)]
    later = plan(job(first.status.model_dump(), **GANG), pods, NODES, False, NOW)
    assert later.create is None and later.create_rest == []


def test_the_attempt_runs_only_when_every_pod_runs():
    first = plan(job(**GANG), [], {}, False, NOW)
    one, two = created(first)
    pending = json.loads(json.dumps(two))
    pending["status"] = {"phase": "Pending"}
    half = plan(job(first.status.model_dump(), **GANG), [running(one, "n0"), pending], NODES,
                False, NOW)
    assert half.status.phase == "Pending" and half.status.gang is not None
    assert half.status.gang.nodes == "1/2"
    both = [running(one, "n0"), running(two, "n1")]
    full = plan(job(first.status.model_dump(), **GANG), both, NODES, False, NOW)
    assert full.status.phase == "Running" and full.status.gang is not None
    assert full.status.gang.nodes == "2/2"
    assert [(p.rank, p.node) for p in full.status.gang.pods] == [(0, "n0"), (1, "n1")]


def test_a_preempted_rank_stops_the_others_and_the_attempt_is_a_preemption_naming_it():
    j, (zero, one) = started_gang()
    hit = deleted(one, disrupted=True)
    out = plan(j, [zero, hit], NODES, False, NOW)
    assert out.delete == ["a-1-0"]  # rank 0 is stopped gracefully; rank 1 is already going
    assert out.status.preemptions == 0 and out.status.gang is not None
    assert out.status.gang.ending is not None and out.status.gang.ending.ranks == [1]
    assert any(r == "GangStopping" and "rank 1 (a-1-1 on node n1)" in m for _, r, m in out.events)
    # rank 0 exits 0 on SIGTERM (the gang agreed to stop): NOT success, rank 1 was preempted
    done = [
        deleted(ended(zero, "Succeeded", 0, finished=NOW, step=120)),
        ended(hit, "Failed", 143, finished=NOW, step=120),
    ]
    after = plan(job(out.status.model_dump(), **GANG), done, NODES, False, NOW)
    st = after.status
    assert (st.phase, st.preemptions, st.failures, st.attempt) == ("Restarting", 1, 0, 2)
    assert st.lastCheckpoint is not None and st.lastCheckpoint.step == 120
    # only node 0 commits a gang checkpoint: rank 1's part of a newer step is not the checkpoint
    newer_part = [done[0], ended(hit, "Failed", 143, finished=NOW, step=140)]
    part_only = plan(job(out.status.model_dump(), **GANG), newer_part, NODES, False, NOW)
    assert part_only.status.lastCheckpoint is not None
    assert part_only.status.lastCheckpoint.step == 120
    assert sorted(after.release) == ["a-1-0", "a-1-1"]
    assert any(r == "Preempted" and "rank 1" in m for _, r, m in after.events)
    assert st.gangHistory is not None
    assert (st.gangHistory[0].outcome, st.gangHistory[0].worldSize) == ("Preempted", 4)
    nxt = plan(job(st.model_dump(), **GANG), [], {}, False, NOW + timedelta(seconds=5))
    assert [p["metadata"]["name"] for p in created(nxt)] == ["a-2-0", "a-2-1"]


def test_the_next_gang_waits_until_every_old_pod_is_over():
    status = {"attempt": 2, "phase": "Restarting", "preemptions": 1}
    still = deleted(running(plan(job(**GANG), [], {}, False, NOW).create or {}, "n0"))
    out = plan(job(status, **GANG), [still], NODES, False, NOW)
    assert out.create is None and out.requeue_after is not None
    gone = plan(job(status, **GANG), [still], NODES, False, NOW + timedelta(seconds=31))
    assert gone.create is not None and gone.create["metadata"]["name"] == "a-2-0"


def test_a_rank_on_a_node_tainted_for_interruption_ends_the_attempt_as_a_preemption():
    j, pods = started_gang()
    tainted = {**NODES, "n1": node("n1", taints=[{"key": "aws-node-termination-handler/spot-itn",
                                                   "effect": "NoSchedule"}])}
    out = plan(j, pods, tainted, False, NOW)
    assert sorted(out.delete) == ["a-1-0", "a-1-1"]
    assert out.status.gang is not None and out.status.gang.ending is not None
    assert out.status.gang.ending.outcome == "Preempted" and out.status.gang.ending.ranks == [1]


def test_a_rank_that_fails_is_a_failure_of_the_attempt_once_settled():
    j, (zero, one) = started_gang(backoffLimit=2)
    early = [zero, ended(one, "Failed", 137, finished=NOW - timedelta(seconds=10))]
    wait = plan(j, early, NODES, False, NOW)
    assert wait.delete == [] and wait.status.gang is not None and wait.status.gang.ending is None
    assert wait.requeue_after is not None and wait.requeue_after <= 40
    late = plan(j, early, NODES, False, NOW + timedelta(seconds=45))
    assert late.delete == ["a-1-0"] and late.status.failures == 0
    assert late.status.gang is not None and late.status.gang.ending is not None
    assert late.status.gang.ending.outcome == "Failed"
    done = [deleted(ended(zero, "Succeeded", 0, finished=NOW)), early[1]]
    after = plan(job(late.status.model_dump(), backoffLimit=2, **GANG), done, NODES, False, NOW)
    st = after.status
    assert (st.failures, st.preemptions, st.attempt, st.phase) == (1, 0, 2, "Restarting")
    assert any(r == "AttemptFailed" and "rank 1" in m and "137" in m for _, r, m in after.events)


def test_a_rank_that_exits_0_first_is_waited_for_and_success_needs_every_rank():
    j, (zero, one) = started_gang()
    first = [ended(zero, "Succeeded", 0, finished=NOW, step=300), one]  # node 0 commits
    wait = plan(j, first, NODES, False, NOW)
    assert wait.delete == [] and wait.status.phase == "Running"
    both = [first[0], ended(one, "Succeeded", 0, finished=NOW)]
    done = plan(j, both, NODES, False, NOW)
    assert done.status.phase == "Succeeded" and done.status.lastCheckpoint is not None
    assert done.status.lastCheckpoint.step == 300


def test_a_gang_not_placed_within_the_pending_timeout_moves_to_on_demand():
    first = plan(job(spot={"pendingTimeoutSeconds": 30}, **GANG), [], {}, False, NOW)
    zero, one = created(first)
    stuck = json.loads(json.dumps(one))
    stuck["metadata"]["creationTimestamp"] = "2026-01-01T11:59:00Z"
    stuck["status"] = {
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "False", "message": "0/1 nodes"}],
    }
    out = plan(job(first.status.model_dump(), spot={"pendingTimeoutSeconds": 30}, **GANG),
               [running(zero, "n0"), stuck], NODES, False, NOW)
    st = out.status
    assert st.onDemand and st.attempt == 2 and sorted(out.delete) == ["a-1-0", "a-1-1"]
    assert st.preemptions == 0 and st.failures == 0


def test_suspending_a_gang_stops_every_pod():
    j, pods = started_gang()
    status = j.status.model_dump()
    out = plan(job(status, suspend=True, **GANG), pods, NODES, False, NOW)
    assert sorted(out.delete) == ["a-1-0", "a-1-1"]


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ({"nodes": {"min": 3, "max": 2}}, "nodes.min must not exceed"),
        ({"nodes": {"max": 0}}, "greater than or equal to 1"),
        ({"procsPerNode": 0}, "greater than or equal to 1"),
        ({"nodes": {"max": 100}, "checkpoint": {"storage": {"uri": "s3://bkt/a"},
                                               "sidecarPort": 65500}}, r"sidecarPort \+ rank"),
    ],
)
def test_bad_gang_specs_are_refused_naming_the_field(spec: dict[str, Any], says: str):
    body = {"template": {"spec": {"containers": [{"name": "t", "image": "i"}]}},
            "checkpoint": {"storage": {"uri": "s3://bkt/a"}}, **spec}
    with pytest.raises(ValidationError, match=says):
        JobSpec.model_validate(body)
    good = {**body, "nodes": {"max": 2, "min": 1}, "procsPerNode": 2,
            "checkpoint": {"storage": {"uri": "s3://bkt/a"}}}
    assert JobSpec.model_validate(good).nodes.least == 1


def test_the_status_patch_clears_nested_fields_the_new_status_lacks():
    old = {"attempt": 1, "gang": {"attempt": 1, "ending": {"outcome": "Preempted"}}, "x": 1}
    new = {"attempt": 2, "gang": {"attempt": 2}}
    assert merge_patch(old, new) == {"attempt": 2, "gang": {"attempt": 2, "ending": None},
                                     "x": None}


def test_the_process_nodes_hosts_file_names_every_gang_pod_of_the_namespace_at_loopback():
    from localcluster.node import podhosts

    first = plan(job(**GANG), [], {}, False, NOW)
    pods = [{**p, "metadata": {**p["metadata"], "namespace": "ns"}} for p in created(first)]
    plain = {"metadata": {"name": "other", "namespace": "ns"}, "spec": {}}
    text = podhosts.hosts_text("127.0.0.1 localhost\n", [*pods, plain])
    lines = text.splitlines()
    assert lines[0] == "127.0.0.1 localhost"
    assert "127.0.0.1 a-1-0.a a-1-0.a.ns.svc a-1-0.a.ns.svc.cluster.local" in lines
    assert any(line.startswith("127.0.0.1 a-1-1.a ") for line in lines)
    assert "other" not in text and podhosts.names(plain) == []


def test_an_edit_of_spec_nodes_applies_from_the_next_attempt():
    j, pods = started_gang()
    single = plan(job(j.status.model_dump()), pods, NODES, False, NOW)  # nodes.max back to 1
    assert single.create is None and single.status.phase == "Running"
    assert single.status.gang is not None and single.status.gang.nodes == "2/2"
    first = plan(job(), [], {}, False, NOW)  # a single pod in flight, then nodes.max: 2
    pod = running(first.create or {}, "n0")
    grown = plan(job(first.status.model_dump(), **GANG), [pod], NODES, False, NOW)
    assert grown.create is None and grown.status.gang is None
    assert grown.status.activePod == "a-1"
