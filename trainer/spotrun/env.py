"""The environment contract (operator -> pod), read the same way on a laptop and in a pod."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch

DEFAULT_DIR = "spotrun-checkpoints"
DEFAULT_GRACE_SECONDS = 30.0


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

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        grace = env.get("SPOTRUN_GRACE_SECONDS", "")
        attempt = env.get("SPOTRUN_ATTEMPT", "")
        try:
            grace_seconds = float(grace) if grace else DEFAULT_GRACE_SECONDS
        except ValueError:
            grace_seconds = math.nan
        if not (math.isfinite(grace_seconds) and grace_seconds >= 0):
            raise ValueError(
                f"SPOTRUN_GRACE_SECONDS={grace!r} is not a number of seconds (finite, >= 0); "
                f"unset it for the default {DEFAULT_GRACE_SECONDS:g}"
            )
        return cls(
            checkpoint_dir=env.get("SPOTRUN_CHECKPOINT_DIR") or DEFAULT_DIR,
            storage_uri=env.get("SPOTRUN_STORAGE_URI") or None,
            grace_seconds=grace_seconds,
            job=env.get("SPOTRUN_JOB") or None,
            namespace=env.get("SPOTRUN_NAMESPACE") or None,
            attempt=int(attempt) if attempt.isascii() and attempt.isdigit() else None,
            device=env.get("SPOTRUN_DEVICE") or None,
            progress_file=env.get("SPOTRUN_PROGRESS_FILE") or None,
            interval_steps=_positive(env, "SPOTRUN_INTERVAL_STEPS"),
            interval_seconds=_positive(env, "SPOTRUN_INTERVAL_SECONDS"),
        )


def _positive(env: Mapping[str, str], name: str) -> int | None:
    """A whole number >= 1 from ``name``, None when unset; anything else refused by name."""
    value = env.get(name, "")
    if not value:
        return None
    if not (value.isascii() and value.isdigit() and int(value) >= 1):
        raise ValueError(f"{name}={value!r} is not a whole number >= 1; fix it or unset it")
    return int(value)


def device(environ: Mapping[str, str] | None = None) -> torch.device:
    """``SPOTRUN_DEVICE`` if set (cuda|cpu), else CUDA when present, else CPU."""
    wanted = Settings.from_env(environ).device
    if wanted:
        return torch.device(wanted)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
