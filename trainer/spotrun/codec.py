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
MAX_DEPTH = 64  # levels of nesting ``decode`` accepts (training state nests a few levels)
_NDARRAY_KINDS = "biufc"  # numpy dtype kinds a state may hold: bool, int, uint, float, complex


class UnsupportedStateError(TypeError):
    """A value in the training state that a checkpoint cannot hold safely."""


class StateDecodeError(ValueError):
    """A structure that ``encode`` cannot have written (the message says where and why)."""


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
    """The inverse of ``encode``; StateDecodeError for any structure it cannot have written
    (a reference to a tensor not in ``tensors``, a malformed tag, nesting past MAX_DEPTH).

    Tensors saved from an accelerator go to ``device`` (default: CUDA when present, else CPU),
    so a GPU checkpoint resumes on a CPU-only machine.
    """
    target = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def tensor(key: Json, saved_on: Json, path: str) -> torch.Tensor:
        if not isinstance(key, str) or not isinstance(saved_on, str):
            raise StateDecodeError(f"at {path or '/'}: a malformed tensor reference")
        if key not in tensors:
            raise StateDecodeError(
                f"at {path or '/'}: refers to tensor {key!r}, which the tensor file does not hold"
            )
        t = tensors[key]
        return t if saved_on == "cpu" else t.to(target)

    return _Decoder(tensor).value(structure, "", 0)


def _ndarray(carrier: np.ndarray, dtype: np.dtype[Any], path: str) -> np.ndarray:
    """The numpy array ``encode`` wrote as ``carrier``: its tensor must have the dtype encode
    gives that array (a same-size dtype in its place would be reinterpreted silently), and a
    widened one must hold only values the array's dtype can (nothing wraps around)."""
    expected = _np_carrier(np.empty(0, dtype=dtype))
    if carrier.dtype != expected:
        raise StateDecodeError(
            f"at {path or '/'}: a numpy {dtype} array is saved as {expected}, not {carrier.dtype}"
        )
    if expected != dtype and carrier.size:
        info = np.iinfo(dtype)
        if carrier.min() < info.min or carrier.max() > info.max:
            raise StateDecodeError(f"at {path or '/'}: values out of range for numpy {dtype}")
    return carrier.astype(dtype)


class _Decoder:
    def __init__(self, tensor: Callable[[Json, Json, str], torch.Tensor]) -> None:
        self.tensor = tensor

    def value(self, value: Json, path: str, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise StateDecodeError(f"at {path}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, list):
            return [self.value(v, f"{path}/{i}", depth + 1) for i, v in enumerate(value)]
        if not isinstance(value, dict):
            return value
        tag = next((t for t in _TAGS if t in value), None)
        if tag is None:
            return {k: self.value(v, _join(path, k), depth + 1) for k, v in value.items()}
        try:
            return self.tagged(tag, value, path, depth)
        except StateDecodeError:
            raise
        except (TypeError, ValueError) as e:  # binascii.Error is a ValueError
            raise StateDecodeError(f"at {path or '/'}: malformed {tag} ({e})") from None

    def tagged(self, tag: str, value: dict[str, Json], path: str, depth: int) -> Any:
        body = value[tag]
        if tag == "__tensor__":
            return self.tensor(body, value.get("device", "cpu"), path)
        if tag == "__ndarray__":
            dtype = np.dtype(_text(value.get("dtype")))
            if dtype.kind not in _NDARRAY_KINDS:
                raise StateDecodeError(f"at {path or '/'}: numpy dtype {dtype} is not numeric")
            return _ndarray(self.tensor(body, "cpu", path).numpy(), dtype, path)
        if tag == "__bytes__":
            return base64.b64decode(_text(body), validate=True)
        if tag == "__float__":
            return float(_text(body))
        items = [self.value(v, f"{path}/{i}", depth + 1) for i, v in enumerate(_items(body))]
        if tag == "__tuple__":
            return tuple(items)
        pairs = [_pair(item) for item in items]
        return dict(pairs)  # a key that cannot be hashed raises TypeError, reported above


def _text(value: Json) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _items(value: Json) -> list[Json]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return value


def _pair(item: Any) -> tuple[Any, Any]:
    if not isinstance(item, list) or len(item) != 2:
        raise TypeError("expected [key, value] pairs")
    return item[0], item[1]
