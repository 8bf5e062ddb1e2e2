"""Capture and restore every random number generator a training loop draws from."""

from __future__ import annotations

import hashlib
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


def derive(state: dict[str, Any], rank: int) -> None:
    """Seed every generator for a rank the checkpoint has no part of (a larger world size
    than the one that wrote it): from the saved torch CPU state and the rank, so the same
    checkpoint and rank always give the same streams, distinct per rank. Not bit-exact with
    any run: only a resume at the same world size is."""
    digest = hashlib.sha256(bytes(state["torch"].cpu().numpy().tobytes()))
    digest.update(rank.to_bytes(8, "little"))
    seed = int.from_bytes(digest.digest()[:8], "little")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # CPU and every CUDA device


class RngStateError(ValueError):
    """An RNG state that the generators would refuse (or accept and then misbehave on)."""


def check(state: Any) -> None:
    """RngStateError unless ``restore(state)`` will succeed: each state is tried on a scratch
    generator, so nothing global changes."""
    if not isinstance(state, dict):
        raise RngStateError("the RNG state is not a mapping")
    for key, probe in (("python", _probe_python), ("numpy", _probe_numpy), ("torch", _probe_torch)):
        if key not in state:
            raise RngStateError(f"the RNG state has no {key!r} generator")
        try:
            probe(state[key])
        except (TypeError, ValueError, KeyError, IndexError, OverflowError, RuntimeError) as e:
            raise RngStateError(f"the {key} RNG state is malformed: {e!s:.200}") from None
    cuda = state.get("cuda")
    if cuda is not None and not (isinstance(cuda, list) and all(_is_byte_vector(t) for t in cuda)):
        raise RngStateError("the cuda RNG state is not a list of byte tensors")


def _probe_python(value: Any) -> None:
    version, internal, gauss = _as_python_state(value)
    if gauss is not None and not isinstance(gauss, float):
        raise TypeError(f"gauss_next is a {type(gauss).__name__}")
    random.Random().setstate((version, internal, gauss))


def _probe_numpy(value: Any) -> None:
    """numpy trusts ``pos`` (an index into ``key``) and casts ``key``: check both first."""
    inner = value.get("state") if isinstance(value, dict) else None
    if not isinstance(inner, dict):
        raise TypeError("not a mapping with a 'state' mapping")
    key, pos = inner.get("key"), inner.get("pos")
    if not (isinstance(key, np.ndarray) and key.shape == (624,) and key.dtype.kind in "iu"):
        raise ValueError("'key' is not 624 integers")
    if type(pos) is not int or not 0 <= pos <= 624:
        raise ValueError(f"'pos' {pos!r:.40} is not an index from 0 to 624")
    np.random.RandomState().set_state(value)


def _probe_torch(value: Any) -> None:
    if not _is_byte_vector(value):
        raise TypeError("not a byte tensor")
    torch.Generator().set_state(value.cpu().clone())


def _is_byte_vector(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.dtype == torch.uint8 and value.dim() == 1


def _as_python_state(value: Any) -> tuple[Any, ...]:
    version, internal, gauss = value
    return (version, tuple(internal), gauss)
