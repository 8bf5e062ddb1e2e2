"""``ckpt.state``: the script's own values, checkpointed like the model.

    ckpt.state.lr = 20.0            # defaults, set before ckpt.restore()
    ckpt.state.best_val = None
    ckpt.restore()                  # now they hold the restored values
    ckpt.state.lr /= 4              # read and written like plain attributes

A value is None, bool, int, float, str, bytes, a tensor, a numpy array, a list/tuple/dict of
these, or (at the top level) an object with ``state_dict()``/``load_state_dict()``, which
restore loads in place. Anything else would need pickle and is refused when it is assigned
(and again at each ``ckpt.step()``, for a list or dict changed after it was assigned).

``freeze`` is the walk both use: a copy of a value whose containers later changes cannot
reach, with tensors kept by reference and listed for the caller (who watches their version
counters: an in-place change after the copy is seen, not silently saved).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any, Protocol, TypeGuard, runtime_checkable

import numpy as np
import torch

from .codec import UnsupportedStateError


@runtime_checkable
class Stateful(Protocol):
    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any, /) -> Any: ...


_SCALARS = (bool, int, float, str, bytes, type(None))
_EXACT_SCALARS = frozenset(_SCALARS)
_KEYS = (bool, int, float, str, type(None))


def freeze(value: Any, where: str, tensors: list[tuple[str, torch.Tensor]]) -> Any:
    """A structural copy of ``value``; tensors are appended to ``tensors`` with their path.

    Raises UnsupportedStateError naming ``where`` for a value a checkpoint cannot hold.
    (Exact-type checks first: this runs at every step, over every scheduler and script value.)
    """
    kind = type(value)
    if kind in _EXACT_SCALARS:
        return value
    if kind is dict or (kind not in (list, tuple) and isinstance(value, Mapping)):
        frozen = {}
        for k, v in value.items():
            if type(k) is not str:
                _key(k, where)
            scalar = type(v) in _EXACT_SCALARS
            frozen[k] = v if scalar else freeze(v, f"{where}[{k!r}]", tensors)
        return frozen
    if kind is list or kind is tuple:
        items = [
            v if type(v) in _EXACT_SCALARS else freeze(v, f"{where}[{i}]", tensors)
            for i, v in enumerate(value)
        ]
        return items if kind is list else tuple(items)
    if isinstance(value, torch.Tensor):
        tensors.append((where, value))
        return value
    if isinstance(value, _SCALARS):  # subclasses: an IntEnum, a str subclass
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind in "biufc":
        return value.copy()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):  # a namedtuple or list subclass: kept as plain
        return freeze(list(value) if isinstance(value, list) else tuple(value), where, tensors)
    raise _refused(where, value)


def _key(key: Any, where: str) -> None:
    if isinstance(key, _KEYS):
        return
    raise UnsupportedStateError(
        f"{where} has a key of type {type(key).__name__}: a checkpoint holds dicts keyed by "
        "str, int, float, bool or None; convert the keys"
    )


def freeze_entry(value: Any, where: str, tensors: list[tuple[str, torch.Tensor]]) -> Any:
    """One named value (of ``ckpt.state`` or extras): an object with ``state_dict()`` gives its
    state, anything else is frozen as it is."""
    if is_stateful(value):
        return freeze(value.state_dict(), f"{where}.state_dict()", tensors)
    return freeze(value, where, tensors)


def is_stateful(value: Any) -> TypeGuard[Stateful]:
    """``isinstance(value, Stateful)`` in 0.1 us instead of 50 (it runs at every step)."""
    return callable(getattr(value, "state_dict", None)) and callable(
        getattr(value, "load_state_dict", None)
    )


def _refused(where: str, value: Any) -> UnsupportedStateError:
    kind = type(value).__name__
    return UnsupportedStateError(
        f"{where}: a {kind} cannot be checkpointed (spotrun never pickles, so nothing can run "
        "code on load). Keep None, bool, int, float, str, bytes, tensors, numeric numpy arrays "
        f"and lists/tuples/dicts of them, or give {kind} state_dict()/load_state_dict() "
        "returning such values"
    )


class ScriptState(MutableMapping[str, Any]):
    """A namespace of checkpointed values: ``state.x`` and ``state["x"]`` are the same entry."""

    __slots__ = ("_values",)

    def __init__(self) -> None:
        object.__setattr__(self, "_values", {})

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(
                f"ckpt.state has no {name!r}: give it a default before ckpt.restore() "
                f"(ckpt.state.{name} = ...)"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(f"ckpt.state has no {name!r}") from None

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"ckpt.state keys are strings, got {type(key).__name__} {key!r}")
        freeze_entry(value, f"ckpt.state.{key}", [])  # refuse at assignment, naming the key
        self._values[key] = value

    def __delitem__(self, key: str) -> None:
        del self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"ckpt.state({', '.join(f'{k}={v!r}' for k, v in self._values.items())})"


def load_values(target: MutableMapping[str, Any], saved: Mapping[str, Any]) -> list[str]:
    """Put saved entries back into ``target``: objects with ``load_state_dict`` in place, any
    other value replaced. Returns the keys whose ``load_state_dict`` raised (with the error)."""
    failed = []
    for key, value in saved.items():
        current = target.get(key)
        if is_stateful(current):
            try:
                current.load_state_dict(value)
            except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as e:
                failed.append(f"{key} ({e})")
        else:
            target[key] = value
    return failed
