"""The library's view of the pod environment (``podenv.PodEnv``), the same on a laptop and in a
pod. Torch-free at import: ``device()`` imports torch when it is called."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .podenv import PodEnv, Upload

if TYPE_CHECKING:
    import torch

DEFAULT_DIR = "spotrun-checkpoints"
DEFAULT_GRACE_SECONDS = 30.0
DEFAULT_FINAL_UPLOAD_TIMEOUT = 300.0


@dataclass(frozen=True)
class Settings:
    checkpoint_dir: str
    storage_uri: str | None
    grace_seconds: float
    job: str | None
    namespace: str | None
    attempt: int | None
    device: str | None
    progress_file: str | None
    # spec.checkpoint.intervalSteps / intervalSeconds (the operator sets them on the trainer)
    interval_steps: int | None = None
    interval_seconds: int | None = None
    upload: Upload = "library"  # "sidecar": the operator's sidecar uploads, the library not
    final_upload_timeout: float = DEFAULT_FINAL_UPLOAD_TIMEOUT

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        return cls.from_pod_env(PodEnv.from_env(environ))

    @classmethod
    def from_pod_env(cls, env: PodEnv) -> Settings:
        return cls(
            checkpoint_dir=env.checkpoint_dir or DEFAULT_DIR,
            storage_uri=env.storage_uri,
            grace_seconds=_default(env.grace_seconds, DEFAULT_GRACE_SECONDS),
            job=env.job,
            namespace=env.namespace,
            attempt=env.attempt,
            device=env.device,
            progress_file=env.progress_file,
            interval_steps=env.interval_steps,
            interval_seconds=env.interval_seconds,
            upload=env.upload or "library",
            final_upload_timeout=_default(env.final_upload_timeout, DEFAULT_FINAL_UPLOAD_TIMEOUT),
        )


def _default(value: float | None, default: float) -> float:
    return default if value is None else value


def device(environ: Mapping[str, str] | None = None) -> torch.device:
    """``SPOTRUN_DEVICE`` if set (cuda|cpu), else CUDA when present, else CPU."""
    import torch

    wanted = Settings.from_env(environ).device
    if wanted:
        return torch.device(wanted)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
