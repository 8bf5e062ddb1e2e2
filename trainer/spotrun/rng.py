"""Capture and restore every random number generator a training loop draws from."""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import torch

log = logging.getLogger("spotrun")


def capture() -> dict[str, Any]:
    """python, numpy (legacy global), torch CPU and each CUDA device's generator state."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(legacy=False),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore(state: dict[str, Any]) -> None:
    """Put every generator back; CUDA states are skipped (with a warning) without CUDA."""
    random.setstate(_as_python_state(state["python"]))
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu().clone())
    cuda = state.get("cuda")
    if cuda:
        devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if devices == len(cuda):
            torch.cuda.set_rng_state_all([t.cpu().clone() for t in cuda])
        else:
            log.warning(
                "checkpoint holds RNG state for %d CUDA device(s) but %d are present: CUDA "
                "random streams restart, so dropout/sampling on GPU will not replay bit for bit",
                len(cuda),
                devices,
            )


def _as_python_state(value: Any) -> tuple[Any, ...]:
    version, internal, gauss = value
    return (version, tuple(internal), gauss)
