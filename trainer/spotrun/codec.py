"""Split nested training state into a JSON structure and a flat dict of tensors.

State dicts nest dicts (with int keys, as optimizers use), lists, tuples, scalars, strings,
tensors and numpy arrays. ``encode`` returns a JSON-safe structure where every tensor is
replaced by a reference ``{"__tensor__": key}``, plus the tensors by key. ``decode`` puts
them back. Nothing here can run code on load: JSON and raw tensor bytes only.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

Json = Any  # a value json.dumps accepts

_TAGS = ("__tensor__", "__ndarray__", "__tuple__", "__dict__", "__bytes__", "__float__")


class UnsupportedStateError(TypeError):
    """A value in the training state that a checkpoint cannot hold safely."""


def encode(state: Mapping[str, Any]) -> tuple[Json, dict[str, torch.Tensor]]:
    """(structure, tensors): the structure is plain JSON, tensors are keyed by their path."""
    tensors: dict[str, torch.Tensor] = {}
    return _encode(dict(state), "", tensors), tensors


def _encode(value: Any, path: str, tensors: dict[str, torch.Tensor]) -> Json:
    if isinstance(value, torch.Tensor):
        tensors[path] = value
        return {"__tensor__": path, "device": value.device.type}
    if isinstance(value, np.ndarray):
        tensors[path] = torch.from_numpy(np.ascontiguousarray(value).astype(_np_carrier(value)))
        return {"__ndarray__": path, "dtype": value.dtype.str}
    if isinstance(value, np.generic):
        return _encode(value.item(), path, tensors)
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, bytes):
        return {"__bytes__": base64.b64encode(value).decode()}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, f"{path}/{i}", tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{path}/{i}", tensors) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        if all(isinstance(k, str) and k not in _TAGS for k in value):
            return {k: _encode(v, _join(path, k), tensors) for k, v in value.items()}
        return {
            "__dict__": [
                [_encode(k, f"{path}/#k{i}", tensors), _encode(v, _join(path, str(k)), tensors)]
                for i, (k, v) in enumerate(value.items())
            ]
        }
    raise UnsupportedStateError(
        f"cannot checkpoint {type(value).__name__} at {path or '/'}: a checkpoint holds tensors, "
        "numpy arrays, numbers, strings, bytes, None and dicts/lists/tuples of them; convert it "
        "(e.g. give the object state_dict()/load_state_dict()) or leave it out"
    )


def _join(path: str, key: str) -> str:
    return f"{path}/{key}" if path else key


def _np_carrier(array: np.ndarray) -> np.dtype[Any]:
    """numpy dtypes torch cannot hold natively travel in a wider one (uint32 -> int64)."""
    if array.dtype in (np.uint16, np.uint32):
        return np.dtype(np.int64)
    return array.dtype


def decode(
    structure: Json,
    tensors: Mapping[str, torch.Tensor],
    device: torch.device | None = None,
) -> Any:
    """The inverse of ``encode``; ``tensors`` must hold every referenced key.

    Tensors saved from an accelerator go to ``device`` (default: CUDA when present, else CPU),
    so a GPU checkpoint resumes on a CPU-only machine.
    """
    target = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def place(ref: dict[str, str]) -> torch.Tensor:
        t = tensors[ref["__tensor__"]]
        return t if ref.get("device", "cpu") == "cpu" else t.to(target)

    return _decode(structure, place)


def _decode(value: Json, tensor: Callable[[dict[str, str]], torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensor) for v in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        return tensor(value)
    if "__ndarray__" in value:
        return tensor({"__tensor__": value["__ndarray__"]}).numpy().astype(np.dtype(value["dtype"]))
    if "__tuple__" in value:
        return tuple(_decode(v, tensor) for v in value["__tuple__"])
    if "__dict__" in value:
        return {_decode(k, tensor): _decode(v, tensor) for k, v in value["__dict__"]}
    if "__bytes__" in value:
        return base64.b64decode(value["__bytes__"])
    if "__float__" in value:
        return float(value["__float__"])
    return {k: _decode(v, tensor) for k, v in value.items()}
