"""The operator's --sidecar-image (injection.py): set, the pod runs its sidecar from that image
and the trainer's command through the spotrun-exec an init container copies into a shared
volume, so the trainer's image needs nothing of spotrun; unset, the pod of before. A value
that is no image reference is refused, naming the setting."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from spotrun_operator import __main__ as operator_main
from spotrun_operator import cleanup, injection, reconcile
from spotrun_operator.builders import Job, desired_pod
from tests.unit.operator.test_decisions import job

pytestmark = pytest.mark.unit

IMAGE = "ghcr.io/spotrun/sidecar:0.1.0"


def pod(j: Job) -> dict[str, Any]:
    spec: dict[str, Any] = desired_pod(j, 1, on_demand=False, gpus_available=False)["spec"]
    return spec


def by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {i["name"]: i for i in items}


def test_unset_the_pod_is_as_before_spotrun_exec_in_the_trainers_image() -> None:
    spec = pod(job())
    assert [c["name"] for c in spec["initContainers"]] == ["spotrun-sidecar"]
    sidecar, trainer = spec["initContainers"][0], spec["containers"][0]
    assert sidecar["image"] == trainer["image"] == "img"
    assert trainer["command"] == ["spotrun", "exec", "--", "python", "train.py"]
    assert [v["name"] for v in spec["volumes"]] == ["spotrun-checkpoints"]
    assert [m["name"] for m in trainer["volumeMounts"]] == ["spotrun-checkpoints"]


def test_set_the_entrypoint_is_copied_in_first_and_wraps_the_trainers_command() -> None:
    spec = pod(replace(job(), sidecar_image=IMAGE))
    inits = spec["initContainers"]
    assert [c["name"] for c in inits] == ["spotrun-entrypoint", "spotrun-sidecar"]
    copier, sidecar, trainer = inits[0], inits[1], spec["containers"][0]
    assert copier["image"] == sidecar["image"] == IMAGE
    assert copier["command"] == ["spotrun-exec", "--copy-to", "/spotrun/bin"]
    assert "restartPolicy" not in copier  # a plain init container: it runs to the end first
    assert copier["securityContext"]["allowPrivilegeEscalation"] is False
    assert sidecar["command"] == ["spotrun", "sidecar"]  # unchanged
    assert trainer["image"] == "img"
    assert trainer["command"] == ["/spotrun/bin/spotrun-exec", "--", "python", "train.py"]
    volume = by_name(spec["volumes"])["spotrun-bin"]
    assert "emptyDir" in volume
    assert by_name(copier["volumeMounts"])["spotrun-bin"]["mountPath"] == "/spotrun/bin"
    mount = by_name(trainer["volumeMounts"])["spotrun-bin"]
    assert (mount["mountPath"], mount["readOnly"]) == ("/spotrun/bin", True)
    assert "spotrun-bin" not in by_name(sidecar["volumeMounts"])


def test_the_users_init_containers_come_after_ours_and_keep_their_args() -> None:
    template = {"spec": {
        "initContainers": [{"name": "fetch", "image": "busybox", "command": ["true"]}],
        "containers": [
            {"name": "trainer", "image": "img", "command": ["python"], "args": ["t.py", "-x"]}
        ],
    }}
    spec = pod(replace(job(template=template), sidecar_image=IMAGE))
    assert [c["name"] for c in spec["initContainers"]] == [
        "spotrun-entrypoint", "spotrun-sidecar", "fetch"
    ]
    trainer = spec["containers"][0]
    assert trainer["command"] == ["/spotrun/bin/spotrun-exec", "--", "python"]
    assert trainer["args"] == ["t.py", "-x"]


def test_without_signal_forwarding_or_a_command_nothing_is_injected() -> None:
    for j in (
        job(signalForwarding=False),
        job(template={"spec": {"containers": [{"name": "trainer", "image": "img"}]}}),
    ):
        spec = pod(replace(j, sidecar_image=IMAGE))
        assert [c["name"] for c in spec["initContainers"]] == ["spotrun-sidecar"]
        assert spec["initContainers"][0]["image"] == IMAGE  # the sidecar's image still
        assert spec["containers"][0].get("command") in (None, ["python", "train.py"])
        assert "spotrun-bin" not in by_name(spec["volumes"])


def test_the_jobs_own_sidecar_image_wins_for_the_sidecar_not_the_entrypoint() -> None:
    own = job(checkpoint={"storage": {"uri": "s3://bucket/a"}, "sidecarImage": "reg/own:1"})
    inits = by_name(pod(replace(own, sidecar_image=IMAGE))["initContainers"])
    assert inits["spotrun-sidecar"]["image"] == "reg/own:1"
    assert inits["spotrun-entrypoint"]["image"] == IMAGE  # built to hold spotrun-exec


def test_the_cleanup_pod_runs_from_the_sidecar_image() -> None:
    j = job(checkpoint={"storage": {"uri": "s3://bucket/a"}, "deleteOnJobDeletion": True})
    assert cleanup.cleanup_pod(j, 1)["spec"]["containers"][0]["image"] == "img"
    injected = cleanup.cleanup_pod(replace(j, sidecar_image=IMAGE), 1)
    assert injected["spec"]["containers"][0]["image"] == IMAGE


def test_a_parsed_job_carries_the_operators_image() -> None:
    body = {
        "metadata": {"name": "a", "namespace": "ns", "uid": "u", "resourceVersion": "1"},
        "spec": {
            "template": {"spec": {"containers": [
                {"name": "trainer", "image": "img", "command": ["python", "t.py"]}
            ]}},
            "checkpoint": {"storage": {"uri": "s3://bucket/a"}},
        },
    }
    assert reconcile.parse(body).sidecar_image is None
    assert reconcile.parse(body, IMAGE).sidecar_image == IMAGE


@pytest.mark.parametrize(
    "value",
    [IMAGE, "python:3.12-slim", "localhost:5000/team/sidecar@sha256:" + "ab" * 32, "sidecar"],
)
def test_image_references_are_taken(value: str) -> None:
    assert injection.sidecar_image(value) == value
    assert injection.from_env({"SPOTRUN_SIDECAR_IMAGE": value}) == value


def test_empty_or_unset_is_off() -> None:
    assert injection.sidecar_image("") is None
    assert injection.from_env({}) is None
    assert injection.from_env({"SPOTRUN_SIDECAR_IMAGE": "  "}) is None


@pytest.mark.parametrize(
    "value",
    [
        "ghcr.io/Spotrun/Sidecar:1",
        "sidecar image",
        "sidecar:",
        "ghcr.io//x",
        "x" * 256,
        IMAGE + "\n",  # a trailing newline (a file's last line read as is) is no reference
    ],
)
def test_a_bad_value_is_refused_naming_the_setting(value: str) -> None:
    with pytest.raises(injection.SettingError) as err:
        injection.sidecar_image(value)
    message = str(err.value)
    assert "--sidecar-image / SPOTRUN_SIDECAR_IMAGE (chart value sidecar.image)" in message
    assert repr(value) in message
    assert "e.g. ghcr.io/spotrun/sidecar:0.1.0" in message


def test_the_operator_refuses_to_start_with_a_bad_image(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPOTRUN_SIDECAR_IMAGE", "Not An Image")
    with pytest.raises(SystemExit) as done:
        operator_main.main([])
    assert done.value.code == 2
    assert "SPOTRUN_SIDECAR_IMAGE (chart value sidecar.image): 'Not An Image'" in (
        capsys.readouterr().err
    )


def test_the_charts_schema_checks_sidecar_image_as_the_operator_does() -> None:
    import json
    from pathlib import Path

    schema = json.loads(
        (Path(__file__).parents[3] / "charts/spotrun/values.schema.json").read_text()
    )
    image = schema["properties"]["sidecar"]["properties"]["image"]
    assert image["pattern"] == "^$|" + injection.IMAGE_PATTERN
    assert image["maxLength"] == 255
