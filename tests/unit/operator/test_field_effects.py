"""Spec and status fields whose effect no other test showed (docs/fields.md lists each field
with the test proving what it does): the pod the operator builds, and the status it plans."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from spotrun_operator.builders import Job, desired_pod
from spotrun_operator.conditions import set_condition
from spotrun_operator.decisions import plan
from spotrun_operator.models import JobStatus
from spotrun_operator.podstate import ts
from tests.unit.operator.test_decisions import NOW, ended_pod, job

pytestmark = pytest.mark.unit

S3 = {"storage": {"uri": "s3://bucket/jobs/a"}}


def containers(j: Job) -> dict[str, dict[str, Any]]:
    spec = desired_pod(j, 1, on_demand=False, gpus_available=True)["spec"]
    return {c["name"]: c for c in spec["initContainers"] + spec["containers"]}


def env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def two_containers(**spec: Any) -> Job:
    template = {"spec": {"containers": [
        {"name": "logger", "image": "busybox", "command": ["tail", "-f", "/dev/null"]},
        {"name": "trainer", "image": "img", "command": ["python", "train.py"]},
    ]}}
    return job(template=template, **spec)


def test_trainer_container_picks_the_container_that_gets_the_contract() -> None:
    by_name = containers(two_containers(trainerContainer="trainer"))
    assert env(by_name["trainer"])["SPOTRUN_JOB"] == "a"
    assert "SPOTRUN_JOB" not in env(by_name["logger"])
    assert by_name["spotrun-sidecar"]["image"] == "img"  # the trainer's image, not the first
    default = containers(two_containers())  # without it: the first container
    assert env(default["logger"])["SPOTRUN_JOB"] == "a"


def test_sidecar_image_is_the_sidecars_image() -> None:
    assert containers(job())["spotrun-sidecar"]["image"] == "img"
    chosen = containers(job(checkpoint={**S3, "sidecarImage": "ghcr.io/x/sidecar:2"}))
    assert chosen["spotrun-sidecar"]["image"] == "ghcr.io/x/sidecar:2"
    assert chosen["trainer"]["image"] == "img"


def test_gpu_resource_name_is_the_resource_requested() -> None:
    trainer = containers(job(gpu={"count": 2, "resourceName": "amd.com/gpu"}))["trainer"]
    assert trainer["resources"]["limits"] == {"amd.com/gpu": "2"}
    assert "nvidia.com/gpu" not in trainer["resources"].get("requests", {})


def test_checkpoint_path_is_where_both_containers_mount_and_look() -> None:
    by_name = containers(job(checkpoint={**S3, "path": "/data/ckpt"}))
    for name in ("trainer", "spotrun-sidecar"):
        assert env(by_name[name])["SPOTRUN_CHECKPOINT_DIR"] == "/data/ckpt"
        mounts = {m["name"]: m["mountPath"] for m in by_name[name]["volumeMounts"]}
        assert mounts["spotrun-checkpoints"] == "/data/ckpt"


def test_keep_reaches_the_trainer_and_the_sidecar() -> None:
    by_name = containers(job(checkpoint={**S3, "keep": 7}))
    assert env(by_name["trainer"])["SPOTRUN_KEEP"] == "7"
    assert env(by_name["spotrun-sidecar"])["SPOTRUN_KEEP"] == "7"


def running_job(started_ago: timedelta, **spec: Any) -> tuple[Job, list[dict[str, Any]]]:
    status = {"attempt": 1, "activePod": "a-1", "phase": "Running",
              "startTime": ts(NOW - started_ago)}
    pod = desired_pod(job(), 1, on_demand=False, gpus_available=False)
    pod["spec"]["nodeName"] = "spot-1"
    pod["status"] = {"phase": "Running"}
    return job(status, **spec), [pod]


def test_active_deadline_fails_a_job_that_ran_longer_and_deletes_its_pod() -> None:
    j, pods = running_job(timedelta(hours=2), activeDeadlineSeconds=3600)
    out = plan(j, pods, {}, False, NOW)
    assert out.status.phase == "Failed"
    assert "activeDeadlineSeconds=3600" in out.status.conditions[-1].message
    assert out.delete == ["a-1"]
    young, pods = running_job(timedelta(minutes=30), activeDeadlineSeconds=3600)
    assert plan(young, pods, {}, False, NOW).status.phase != "Failed"


def test_start_time_is_the_first_pass_and_completion_time_the_success() -> None:
    first = plan(job(), [], {}, False, NOW)
    assert first.status.startTime == ts(NOW)
    assert first.status.completionTime is None
    later = NOW + timedelta(hours=1)
    status = first.status.model_dump()
    done = plan(job(status), [ended_pod(1, "Succeeded", 0)], {}, False, later)
    assert done.status.phase == "Succeeded"
    assert done.status.startTime == ts(NOW)  # kept
    assert done.status.completionTime == ts(later)


def test_observed_generation_follows_the_spec_in_status_and_conditions() -> None:
    base = job()
    running = JobStatus(attempt=1, activePod="a-1", phase="Running", startTime=ts(NOW))
    seventh = Job(base.name, base.namespace, base.uid, 7, base.resource_version, base.spec,
                  running)
    out = plan(seventh, [ended_pod(1, "Succeeded", 0)], {}, False, NOW)
    assert out.status.observedGeneration == 7
    assert out.status.conditions
    assert {c.observedGeneration for c in out.status.conditions} == {7}


def test_last_transition_time_moves_only_when_the_condition_flips() -> None:
    st = JobStatus()
    set_condition(st, "Running", True, "Started", "pod a-1", NOW, 1)
    later = NOW + timedelta(minutes=5)
    set_condition(st, "Running", True, "Restored", "pod a-2", later, 1)  # same status
    assert st.conditions[0].lastTransitionTime == ts(NOW)
    set_condition(st, "Running", False, "Preempted", "node gone", later, 1)  # flips
    assert st.conditions[0].lastTransitionTime == ts(later)


def test_termination_grace_period_is_the_pods_and_the_trainers_deadline() -> None:
    j = job(terminationGracePeriodSeconds=45)
    pod = desired_pod(j, 1, on_demand=False, gpus_available=False)
    assert pod["spec"]["terminationGracePeriodSeconds"] == 45
    by_name = containers(j)
    assert env(by_name["trainer"])["SPOTRUN_GRACE_SECONDS"] == "45"
    assert env(by_name["spotrun-sidecar"])["SPOTRUN_GRACE_SECONDS"] == "45"


def test_spot_disabled_makes_every_attempt_an_on_demand_pod() -> None:
    out = plan(job(spot={"enabled": False}), [], {}, False, NOW)
    assert out.create is not None
    assert out.create["spec"].get("tolerations", []) == []
    spot = plan(job(), [], {}, False, NOW).create
    assert spot is not None and spot["spec"]["tolerations"]  # spot taints tolerated
    labels = out.create["metadata"]["labels"]
    assert "on-demand" in labels.values() and "on-demand" not in spot["metadata"]["labels"].values()
