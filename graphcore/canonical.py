"""Canonical JSON: one byte string per value, the same on every process and machine."""
from __future__ import annotations

import json
import math
from typing import Any


def _normalise(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            # Refuse rather than invent an encoding: a NaN parameter is a bug upstream.
            raise ValueError(f"non-finite number {value!r} cannot be part of a cache key")
        # Integral floats and ints are different parameter values; keep the type visible.
        return {"__f__": repr(value)}
    if isinstance(value, dict):
        return {str(k): _normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return _normalise(item())
    if hasattr(value, "__fspath__"):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable for a cache key")


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, floats by repr (shortest round-trip form)."""
    return json.dumps(_normalise(value), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
