"""A compact JSON encoding of small values, stored inside a cache entry's ref document.

A tiny output (a number, a short string, a 4-element array, a small dict of those) costs
one small file write this way, where a Zarr group costs several metadata files and a folder.
The encoding mirrors the Zarr value codec (`types.save_value`), so a value comes back the
same whichever way it was stored:

    None, bool, int, str, finite float     as themselves
    non-finite float                      {"f": "nan" | "inf" | "-inf"}
    numpy scalar                          as its Python value (`.item()`)
    ndarray (bool, int, uint, float, complex)
                                          {"a": [dtype.str, shape, base64 of C-order bytes]}
    bytes                                 {"b": base64}
    mapping                               {"d": [[str(key), value], ...]}  (order kept)
    list, tuple                           [value, ...]  (a list when read back)

`encode` gives up (returns None) on anything else and on values over its byte budget; the
caller then stores the value through Zarr, which is also where unsupported values get their
usual error message.
"""
from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

_ARRAY_KINDS = frozenset("biufc")
_SCALAR_BYTES = 8  # what a number, bool or None counts against the budget


class _OverBudget(Exception):
    pass


def encode(value: Any, max_bytes: int) -> tuple[Any, int] | None:
    """(document, payload bytes) for `value`, or None if it is unsupported or holds more than
    `max_bytes` of data (array and bytes contents, UTF-8 text, 8 per number)."""
    budget = [max_bytes]
    try:
        doc = _encode(value, budget)
    except _OverBudget:
        return None
    return doc, max_bytes - budget[0]


def encode_array(value: Any, max_bytes: int) -> tuple[Any, int] | None:
    """Like `encode`, for a value that must be an ndarray (an Array port)."""
    if not isinstance(value, np.ndarray):
        return None
    return encode(value, max_bytes)


def _spend(budget: list[int], n: int) -> None:
    budget[0] -= n
    if budget[0] < 0:
        raise _OverBudget


def _encode(value: Any, budget: list[int]) -> Any:
    if isinstance(value, str):
        _spend(budget, len(value) if value.isascii() else len(value.encode("utf-8")))
        return value
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in _ARRAY_KINDS:
            raise _OverBudget  # object, string, structured, datetime: Zarr decides
        _spend(budget, value.nbytes)
        return {"a": [value.dtype.str, list(value.shape), base64.b64encode(value.tobytes()).decode("ascii")]}
    if isinstance(value, np.generic):
        value = value.item()
        if isinstance(value, (complex, bytes)):
            raise _OverBudget
        return _encode(value, budget)
    if value is None or isinstance(value, (bool, int)):
        _spend(budget, _SCALAR_BYTES)
        return value
    if isinstance(value, float):
        _spend(budget, _SCALAR_BYTES)
        return value if math.isfinite(value) else {"f": repr(value)}
    if isinstance(value, bytes):
        _spend(budget, len(value))
        return {"b": base64.b64encode(value).decode("ascii")}
    if isinstance(value, Mapping):
        pairs = []
        for k, v in value.items():
            k = str(k)
            _spend(budget, len(k))
            pairs.append([k, _encode(v, budget)])
        return {"d": pairs}
    if isinstance(value, (list, tuple)):
        return [_encode(v, budget) for v in value]
    raise _OverBudget


def decode(doc: Any) -> Any:
    """The value an `encode` document holds. ValueError if the document is malformed."""
    try:
        return _decode(doc)
    except (KeyError, IndexError, TypeError, binascii.Error) as exc:
        raise ValueError(f"malformed inline value: {type(exc).__name__}: {exc}") from None


def _decode(doc: Any) -> Any:
    if isinstance(doc, list):
        return [_decode(v) for v in doc]
    if not isinstance(doc, dict):
        return doc
    (tag, body), = doc.items()
    if tag == "a":
        dtype, shape, data = body
        return np.frombuffer(bytearray(base64.b64decode(data)), dtype=np.dtype(dtype)).reshape(shape)
    if tag == "d":
        return {k: _decode(v) for k, v in body}
    if tag == "b":
        return base64.b64decode(body)
    if tag == "f":
        return float(body)
    raise ValueError(f"malformed inline value: unknown tag {tag!r}")


def describe(doc: Any, name: str = "value") -> list[str]:
    """One line per array or bytes value (path, shape, dtype, size) and per other leaf (path =
    JSON), as `graphrun cache info` shows a Zarr group's arrays and attributes."""
    import json

    lines: list[str] = []

    def walk(d: Any, path: str) -> None:
        tag: Any
        body: Any
        tag, body = next(iter(d.items())) if isinstance(d, dict) and d else (None, None)
        if tag == "a":
            dtype = np.dtype(body[0])
            shape = "x".join(map(str, body[1])) or "0-d"
            lines.append(f"{path}: {shape} {dtype.name} (inline, {math.prod(body[1]) * dtype.itemsize} B)")
        elif tag == "b":
            lines.append(f"{path}: bytes (inline, {len(base64.b64decode(body))} B)")
        elif tag == "d":
            for k, v in body:
                walk(v, f"{path}/{k}")
        elif isinstance(d, list) and any(isinstance(v, list) or (isinstance(v, dict) and "f" not in v) for v in d):
            for i, v in enumerate(d):
                walk(v, f"{path}/{i}")
        else:
            text = json.dumps(_decode(d), default=str)
            lines.append(f"{path} = {text if len(text) <= 60 else text[:57] + '...'}")

    walk(doc, name)
    return lines
