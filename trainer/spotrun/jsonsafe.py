"""JSON from a file anyone with write access to the storage may have crafted.

``json.loads`` raises RecursionError on deep nesting, keeps the last of duplicate keys and
takes invalid UTF-8 as a different error; here every such input is one ``JsonError`` (a
ValueError) with a readable cause, and nesting is bounded well below the interpreter's limit.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64  # a checkpoint's manifest, tensor header and state nest under 20 levels


class JsonError(ValueError):
    """Bytes that are not the bounded, well-formed JSON a checkpoint holds."""


def loads(blob: bytes | bytearray | memoryview, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value in ``blob``; JsonError for anything malformed, duplicate keys included."""
    try:
        text = bytes(blob).decode("utf-8")
    except UnicodeDecodeError as e:
        raise JsonError(f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        value = json.loads(text, object_pairs_hook=_unique)
    except json.JSONDecodeError as e:
        raise JsonError(f"not JSON ({e})") from None
    except RecursionError:
        raise JsonError(f"nested deeper than {max_depth} levels") from None
    if _depth(value) > max_depth:
        raise JsonError(f"nested deeper than {max_depth} levels")
    return value


def _depth(value: Any) -> int:
    """How deep lists and objects nest in a parsed value (iterative: no recursion limit)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return deepest


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise JsonError(f"not valid: the key {key!r} appears twice in one object")
        out[key] = value
    return out
