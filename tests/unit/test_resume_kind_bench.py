"""bench/resume_kind_bench.py's pure parts: the job it submits, how it reads a trainer's progress
log and what it reports per resume (steps lost, the old trainer's final save -> first step)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from localcluster import demo

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "manifests" / "examples" / "job.yaml"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "resume_kind_bench", REPO / "bench" / "resume_kind_bench.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_each_pod_logs_progress_to_its_own_file_and_both_workers_are_spot(
    bench: ModuleType,
) -> None:
    example = demo.load_job(EXAMPLE, "b", "http://s3:7070")
    job = bench.bench_job(example, ["k-worker", "k-worker2"], "/mnt/spotrun-rwx/x", 30)
    pod = job["spec"]["template"]["spec"]
    (trainer,) = pod["containers"]
    env = {e["name"]: e for e in trainer["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # $(POD_NAME) is expanded by the kubelet: a file per pod, so pids never mix
    assert env["SPOTRUN_PROGRESS_FILE"]["value"] == "/progress/$(POD_NAME).jsonl"
    assert trainer["volumeMounts"] == [{"name": "progress", "mountPath": "/progress"}]
    assert pod["volumes"][0]["hostPath"] == {"path": "/mnt/spotrun-rwx/x", "type": "Directory"}
    (term,) = job["spec"]["spot"]["nodeSelectorTerms"]
    assert term["matchExpressions"][0]["values"] == ["k-worker", "k-worker2"]
    assert job["spec"]["spot"]["maxPreemptions"] == 31  # more than the example's 20
    assert "env" not in example["spec"]["template"]["spec"]["containers"][0]  # not changed


def test_a_resume_is_timed_from_the_old_trainers_final_save_and_counts_steps_lost(
    bench: ModuleType,
) -> None:
    old = bench.marks(
        [
            {"event": "start", "step": 0, "t": 100.0},
            {"event": "step", "step": 41, "t": 101.0},
            {"event": "step", "step": 42, "t": 102.0},
            {"event": "saved", "step": 42, "t": 102.5, "reason": "preemption"},
        ]
    )
    new = bench.marks(
        [
            {"event": "start", "step": 0, "t": 90.0},
            {"event": "restore", "step": 40, "t": 103.0, "seconds": 0.25},
            {"event": "step", "step": 41, "t": 103.5},
        ]
    )
    row = bench.resume_row(95.0, old, new)
    assert row["notice -> old final save"] == pytest.approx(7.5)
    assert row["notice -> new trainer's restore()"] == pytest.approx(7.75)
    assert row["final save -> restored"] == pytest.approx(0.5)
    assert row["library restore"] == pytest.approx(0.25)
    assert row["restored -> first step"] == pytest.approx(0.5)
    assert row[bench.TOTAL] == pytest.approx(1.0)
    assert row["lost"] == 2  # it restored 40, the old one had finished 42
    assert bench.marks([]) == {}
