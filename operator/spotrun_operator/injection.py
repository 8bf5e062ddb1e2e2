"""The operator's sidecar image and the entrypoint it injects (issue 16): with
``--sidecar-image`` (``SPOTRUN_SIDECAR_IMAGE``, chart value ``sidecar.image``) a user's
training image needs nothing of spotrun.

Set, each attempt's pod gets: the sidecar from that image (its command unchanged); a first
init container from the same image that copies ``spotrun-exec`` (entrypoint/, a static Go
binary) into an emptyDir mounted at ``/spotrun/bin``; and, with ``signalForwarding``, the
trainer's command run through ``/spotrun/bin/spotrun-exec --`` instead of ``spotrun exec --``.
Unset: the pod of before (the sidecar from the trainer's image, ``spotrun exec``).
A job's own ``spec.checkpoint.sidecarImage`` still names its sidecar's image; the entrypoint
always comes from the operator's image, which is built to hold it (sidecar/Dockerfile).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from . import models as m

ENV = "SPOTRUN_SIDECAR_IMAGE"
FLAG = "--sidecar-image"
SETTING = f"{FLAG} / {ENV} (chart value sidecar.image)"
INIT_CONTAINER = m.ENTRYPOINT_CONTAINER  # names a template may not use (models.RESERVED)
VOLUME = m.ENTRYPOINT_VOLUME
DIR = m.ENTRYPOINT_DIR
ENTRYPOINT = f"{DIR}/spotrun-exec"
# The command of the init container: the binary on the sidecar image's PATH copies itself.
COPY_COMMAND = ["spotrun-exec", "--copy-to", DIR]
LEGACY_WRAPPER = ["spotrun", "exec", "--"]  # in the trainer's own image

# An image reference as the container runtimes take it: [host[:port]/]path[:tag][@digest].
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*(?::[0-9]+)?/)?"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
_DIGEST = r"(?:@[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,})?"
IMAGE_PATTERN = rf"^{_HOST}{_COMPONENT}(?:/{_COMPONENT})*{_TAG}{_DIGEST}$"
_IMAGE = re.compile(IMAGE_PATTERN)


class SettingError(ValueError):
    """The operator's sidecar image setting is not an image reference."""


def sidecar_image(value: str | None) -> str | None:
    """The setting's value checked: None when unset or empty, else an image reference."""
    if value is None or not value.strip():
        return None
    if len(value) > 255 or not _IMAGE.fullmatch(value):
        raise SettingError(
            f"{SETTING}: {value!r} is not an image reference ([registry/]name[:tag][@digest], "
            "lowercase name, no spaces); set it to the spotrun sidecar image, e.g. "
            "ghcr.io/spotrun/sidecar:0.1.0, or leave it empty to run the sidecar from each "
            "trainer's image"
        )
    return value


def from_env(env: Mapping[str, str]) -> str | None:
    return sidecar_image(env.get(ENV))


def trainer_command(command: list[str], image: str | None) -> list[str]:
    """The trainer's command behind the signal-forwarding entrypoint: the injected one when the
    operator has a sidecar image, else ``spotrun exec`` from the trainer's own image."""
    wrapper = [ENTRYPOINT, "--"] if image else LEGACY_WRAPPER
    return [*wrapper, *command]


def add_entrypoint(
    pod_spec: dict[str, Any], trainer: dict[str, Any], image: str, security: dict[str, Any]
) -> None:
    """Give ``pod_spec`` the shared volume, mounted read-only in ``trainer``, and, first of its
    init containers, the one that copies ``spotrun-exec`` there from ``image`` and exits."""
    copier = {
        "name": INIT_CONTAINER,
        "image": image,
        "command": list(COPY_COMMAND),
        "volumeMounts": [{"name": VOLUME, "mountPath": DIR}],
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": security,
    }
    pod_spec["initContainers"] = [copier, *(pod_spec.get("initContainers") or [])]
    pod_spec.setdefault("volumes", []).append({"name": VOLUME, "emptyDir": {"sizeLimit": "64Mi"}})
    mount = {"name": VOLUME, "mountPath": DIR, "readOnly": True}
    trainer.setdefault("volumeMounts", []).append(mount)
