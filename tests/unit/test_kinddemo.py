"""`hack/demo` on kind (the default): the job it submits, the preemptions it asks hack/kind for,
what it removes at the end, and how watch_job's preemption thread reports."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from localcluster import demo, kindcluster, kinddemo
from localcluster.kindcluster import Running

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).resolve().parents[2] / "manifests" / "examples" / "job.yaml"
TRAINER = "localhost:5001/spotrun/trainer:0.1.0-f3"


def test_the_example_changes_only_in_image_endpoint_bucket_prefix_and_epochs() -> None:
    example = demo.load_job(EXAMPLE, "spotrun-demo", "http://minio.minio.svc.cluster.local:9000")
    job = kinddemo.with_trainer(
        demo.load_job(EXAMPLE, "spotrun-test", "http://172.18.0.5:7070", prefix="demo-1a2b"),
        TRAINER, 100,
    )
    (trainer,) = job["spec"]["template"]["spec"]["containers"]
    assert trainer["image"] == TRAINER
    assert trainer["command"] == ["python", "examples/digits/train.py", "--epochs", "100"]
    storage = job["spec"]["checkpoint"]["storage"]
    assert storage["uri"] == "s3://spotrun-test/demo-1a2b"
    assert storage["endpoint"] == "http://172.18.0.5:7070"
    assert demo.planned_epochs(job) == 100
    # everything else is the example as written
    (original,) = example["spec"]["template"]["spec"]["containers"]
    assert original["command"][-1] == "20" and original["image"] != TRAINER  # not mutated
    for key in ("image", "command"):
        trainer.pop(key)
        original.pop(key)
    for s in (storage, example["spec"]["checkpoint"]["storage"]):
        s.pop("uri")
        s.pop("endpoint")
    assert job == example


def test_a_job_without_epochs_keeps_its_command() -> None:
    job = {"spec": {"template": {"spec": {"containers": [
        {"name": "t", "image": "x", "command": ["python", "train.py"], "args": ["--lr", "1"]}]}}}}
    out = kinddemo.with_trainer(job, TRAINER, 100)
    assert out["spec"]["template"]["spec"]["containers"][0] == {
        "name": "t", "image": TRAINER, "command": ["python", "train.py"], "args": ["--lr", "1"]}


def test_the_first_preemption_gives_notice_and_the_second_is_an_abrupt_loss(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(kindcluster, "preempt",
                        lambda node, notice, abrupt, env: calls.append(
                            ("preempt", node, str(notice), str(abrupt))))
    monkeypatch.setattr(kindcluster, "add_node",
                        lambda node, env: calls.append(("add-node", node)))
    capacity = kinddemo.Capacity({})
    for _ in range(2):
        capacity.preempt("spotrun-worker2")
        assert capacity.add_spot_node() == "spotrun-worker2"
    assert calls == [
        ("preempt", "spotrun-worker2", "5", "False"), ("add-node", "spotrun-worker2"),
        ("preempt", "spotrun-worker2", "0", "True"), ("add-node", "spotrun-worker2"),
    ]
    assert "notice" in kinddemo.PREEMPTIONS[0][2] and "abrupt" in kinddemo.PREEMPTIONS[1][2]


NOTHING = Running(engine=False, cluster=False, registry=False, s3=False)
ENGINE = Running(engine=True, cluster=False, registry=False, s3=False)
CLUSTER = Running(engine=True, cluster=True, registry=False, s3=False)
EVERYTHING = Running(engine=True, cluster=True, registry=True, s3=True)


def test_the_demo_removes_what_it_started_and_nothing_that_ran_before() -> None:
    steps = kinddemo.teardown_steps
    assert steps(NOTHING, keep=False, installed=True) == [("down", "--engine")]
    assert steps(ENGINE, keep=False, installed=True) == [("down",)]
    assert steps(CLUSTER, keep=False, installed=True) == [
        ("uninstall",), ("s3", "down"), ("registry", "down")]
    assert steps(EVERYTHING, keep=False, installed=True) == [("uninstall",)]
    # it stopped before helm install (e.g. another release was there): that is not its to remove
    assert steps(EVERYTHING, keep=False, installed=False) == []
    for before in (NOTHING, ENGINE, CLUSTER, EVERYTHING):
        assert steps(before, keep=True, installed=True) == []  # SPOTRUN_KIND_KEEP=1


def test_a_failed_preemption_stops_the_watch_with_its_cause() -> None:
    def broken(node: str) -> None:
        raise RuntimeError(f"hack/kind/preempt {node} --notice 5 failed (exit 86)")

    shown: list[str] = []
    failing = demo.Disruption(broken, lambda: "never", shown.append)
    failing.start("spotrun-worker2")
    with pytest.raises(RuntimeError, match="preempting or adding a node failed: hack/kind/preempt"):
        failing.finish()
    assert shown == []

    drained = threading.Event()

    def drain(node: str) -> None:
        drained.wait()

    working = demo.Disruption(drain, lambda: "spotrun-worker2", shown.append)
    working.start("spotrun-worker2")
    assert working.busy()  # the watch goes on meanwhile and starts no second one
    drained.set()
    working.finish()
    assert not working.busy() and shown == ["# a new spot node joins: spotrun-worker2"]
