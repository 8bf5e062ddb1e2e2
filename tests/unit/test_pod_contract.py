"""The pod's environment is one typed contract (``spotrun.podenv.PodEnv``), both ways.

Pods rendered by the operator's builders for jobs that use every spec field set exactly the
model's operator-set variables, each of which ``PodEnv.from_env`` reads and some pod-side code
uses; no pod-side module reads a SPOTRUN_* variable by itself, and the builders name none by
hand. A variable the operator sets that nothing reads (spec.checkpoint.keepBest once), or one
the pod reads that the operator no longer sets, fails here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from spotrun import podenv
from spotrun.env import Settings
from spotrun.podenv import PodEnv, PodEnvError
from spotrun.retention import KeepBest
from spotrun.sidecar import SidecarConfig
from spotrun_operator.builders import SIDECAR, Rank, desired_pod
from tests.unit.operator.test_decisions import job

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
POD_SIDE = ROOT / "trainer" / "spotrun"
BUILDERS = ROOT / "operator" / "spotrun_operator" / "builders.py"

EVERY_FIELD = {
    "path": "/data/ckpt",
    "intervalSteps": 50,
    "intervalSeconds": 600,
    "keep": 2,
    "keepBest": {"metric": "val_loss", "mode": "min"},
    "sidecarPort": 18790,
    "deleteOnJobDeletion": True,
}


def _pods() -> list[dict[str, Any]]:
    """A job on S3 and one on a claim, each with every checkpoint field, a saved step, GPUs;
    and rank 1 of a gang (2 nodes x 2 processes) on S3."""
    s3 = {
        **EVERY_FIELD,
        "storage": {
            "uri": "s3://bucket/jobs/a",
            "endpoint": "http://s3:9000",
            "secretRef": {"name": "c"},
        },
    }
    pvc = {**EVERY_FIELD, "storage": {"pvc": {"claimName": "shared"}}}
    # attempt 2 was preempted with notice and still saves: attempt 3 is a warm start
    draining = [{"attempt": 2, "pod": "a-2", "until": "2026-01-01T12:00:30Z"}]
    status = {"lastCheckpoint": {"step": 1200}, "draining": draining}
    out = []
    for checkpoint in (s3, pvc):
        spec = {"checkpoint": checkpoint, "gpu": {"count": 1}, "terminationGracePeriodSeconds": 45}
        out.append(desired_pod(job(status, **spec), 3, on_demand=False, gpus_available=True))
    ranked = {k: v for k, v in s3.items() if k != "intervalSeconds"}  # one rank's only
    spec = {"checkpoint": ranked, "nodes": {"max": 2}, "procsPerNode": 2}
    rank = Rank(1, 2)
    out.append(desired_pod(job(status, **spec), 3, on_demand=False, gpus_available=True, rank=rank))
    return out


def _containers(pod: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from pod["spec"]["containers"]
    yield from pod["spec"]["initContainers"]


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env") or [] if "value" in e}


def _rendered() -> set[str]:
    return {
        name
        for pod in _pods()
        for container in _containers(pod)
        for name in _env(container)
        if name.startswith("SPOTRUN_")
    }


class Recording(Mapping[str, str]):
    """An environment that remembers which variables were asked for."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values, self.asked = values, set[str]()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return self.values[key]

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return self.values.get(key, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


def test_the_operator_sets_exactly_the_models_operator_variables() -> None:
    rendered = _rendered()
    model = set(podenv.variables("operator"))
    assert rendered - model == set(), "set by the operator, unknown to PodEnv"
    assert model - rendered == set(), "in PodEnv as operator-set, never set by the operator"
    assert rendered & set(podenv.variables("user")) == set()


def test_every_variable_the_operator_sets_is_read_by_from_env() -> None:
    for pod in _pods():
        for container in _containers(pod):
            env = Recording(_env(container))
            PodEnv.from_env(env)
            spotrun = {n for n in env.values if n.startswith("SPOTRUN_")}
            assert spotrun <= env.asked, f"{container['name']}: nothing reads {spotrun - env.asked}"


def test_what_the_operator_writes_is_what_the_pod_reads() -> None:
    s3_pod, pvc_pod, gang_pod = _pods()
    sidecar = next(c for c in s3_pod["spec"]["initContainers"] if c["name"] == SIDECAR)
    trainer = s3_pod["spec"]["containers"][0]
    config = SidecarConfig.from_env(PodEnv.from_env(_env(sidecar)))
    assert (config.keep, config.best, config.port) == (2, KeepBest("val_loss", "min"), 18790)
    assert (config.expected_step, config.mode) == (1200, "sync")
    settings = Settings.from_env(_env(trainer))
    assert (settings.interval_steps, settings.interval_seconds) == (50, 600)
    assert (settings.grace_seconds, settings.attempt, settings.device) == (45.0, 3, "cuda")
    assert (settings.checkpoint_dir, settings.upload) == ("/data/ckpt", "sidecar")
    assert settings.storage_uri == "s3://bucket/jobs/a"
    # warm start: the sidecar waits for attempt 2's final save, until its grace + skew is over
    assert config.previous_attempt == 2
    assert config.previous_until == datetime(2026, 1, 1, 12, 0, 40, tzinfo=timezone.utc)
    pvc_sidecar = next(c for c in pvc_pod["spec"]["initContainers"] if c["name"] == SIDECAR)
    assert SidecarConfig.from_env(PodEnv.from_env(_env(pvc_sidecar))).mode == "report"
    # a gang's rank 1: its node rank, the gang's size, and a sidecar port of its own
    for container in _containers(gang_pod):
        seen = PodEnv.from_env(_env(container))
        assert (seen.nnodes, seen.node_rank, seen.procs_per_node) == (2, 1, 2)
        assert seen.sidecar_port == 18791


def test_to_env_and_from_env_are_inverse() -> None:
    full = PodEnv(
        **{
            f.name: value
            for f, value in zip(
                fields(PodEnv),
                ["j", "ns", 4, "/c", "cpu", 12.5, 4, 3, 2, 3, "acc", "max", 9000, 5, 60]
                + ["s3://b/p"]
                + ["sidecar", "report", 77, True, "/p.jsonl", 9.0, 0.5, 30.0, 4.0, "/t", 8, 2, 7.5]
                + [False, True]
                + [3, datetime(2026, 1, 1, 12, 0, 40, tzinfo=timezone.utc), 600.0],
                strict=True,
            )
        }
    )
    assert PodEnv.from_env(full.to_env()) == full


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("SPOTRUN_KEEP", "0", "whole number >= 1"),
        ("SPOTRUN_SIDECAR_PORT", "70000", "<= 65535"),
        ("SPOTRUN_SYNC_POLL_SECONDS", "soon", "number of seconds"),
        ("SPOTRUN_UPLOAD", "both", "one of sidecar, library"),
        ("SPOTRUN_KEEP_BEST_MODE", "best", "one of min, max"),
        ("SPOTRUN_KEEP_BEST_METRIC", "acc", "needs SPOTRUN_KEEP_BEST_MODE"),
        ("SPOTRUN_NODE_RANK", "2", "not below SPOTRUN_NNODES=1"),
        ("SPOTRUN_PREVIOUS_UNTIL", "2026-01-01T12:00:00", "RFC 3339 time with a zone"),
        ("SPOTRUN_PREVIOUS_UNTIL", "soon", "RFC 3339 time with a zone"),
        ("SPOTRUN_PREVIOUS_ATTEMPT", "0", "whole number >= 1"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(name: str, value: str, says: str) -> None:
    with pytest.raises(PodEnvError, match=name) as refused:
        PodEnv.from_env({name: value})
    assert says in str(refused.value) and repr(value) in str(refused.value)


# -- no variable read or written around the model ------------------------------------------


def _reads(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """SPOTRUN_* names read from a mapping: ``x.get("N")``, ``getenv("N")``, ``x["N"]``,
    ``"N" in x``; a child's environment being written (``env["N"] = ...``) is not a read."""

    def name(node: ast.AST) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value if node.value.startswith("SPOTRUN_") else None
        return None

    for node in ast.walk(tree):
        found: list[ast.AST] = []
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute | ast.Name):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
            if called in ("get", "getenv") and node.args:
                found.append(node.args[0])
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            found.append(node.slice)
        elif isinstance(node, ast.Compare) and any(
            isinstance(op, ast.In | ast.NotIn) for op in node.ops
        ):
            found.append(node.left)
        for candidate in found:
            if (var := name(candidate)) is not None:
                yield node.lineno, var


# ``spotrun chaos`` runs on a laptop and plays the operator for its child runs: it writes their
# environment, and reads back what the user gave it there (not a pod's configuration)
LAPTOP_TOOLS = {"chaos.py"}


def _pod_side_modules() -> Iterator[Path]:
    skip = {"podenv.py", *LAPTOP_TOOLS}
    return (p for p in sorted(POD_SIDE.glob("*.py")) if p.name not in skip)


def test_no_pod_side_module_reads_a_spotrun_variable_around_the_model() -> None:
    found = [
        f"{path.name}:{line}: {var}"
        for path in _pod_side_modules()
        for line, var in _reads(ast.parse(path.read_text()))
    ]
    assert found == [], "read these through spotrun.podenv.PodEnv (add a field there)"


def test_the_check_above_sees_a_direct_read() -> None:
    tree = ast.parse('import os\nos.environ.get("SPOTRUN_X")\nenv["SPOTRUN_Y"]\n')
    assert [var for _, var in _reads(tree)] == ["SPOTRUN_X", "SPOTRUN_Y"]


def test_the_builders_name_no_spotrun_variable_by_hand() -> None:
    literals = [
        node.value
        for node in ast.walk(ast.parse(BUILDERS.read_text()))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.startswith("SPOTRUN_")
    ]
    assert literals == []


def test_every_field_of_the_model_is_used_by_pod_side_code() -> None:
    used = {
        node.attr
        for path in _pod_side_modules()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and _is_pod_env(node.value)
    }
    unused = {f.name for f in fields(PodEnv)} - used - {"keep_best_metric", "keep_best_mode"}
    assert unused == set(), "fields of PodEnv nothing on the pod's side uses"
    assert "keep_best" in used  # the two keepBest variables are used through this property


def _is_pod_env(node: ast.AST) -> bool:
    """``env.<field>`` (the name every reader gives its PodEnv) or ``PodEnv.from_env().<f>``."""
    if isinstance(node, ast.Name):
        return node.id == "env"
    return isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "from_env"
