"""Port types: what flows along an edge.

A port type validates a value, stores it in / loads it from a Zarr group, fingerprints
literal values and says which other types it may connect to. The engine ships generic
types (arrays with dtype/shape constraints, scalars, strings, paths, dicts, records,
checkpoints); domain libraries build their own from these factories and register them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from . import inline
from .arrayio import ArrayAppender, read_array, read_rows, write_array
from .canonical import canonical_json


class TypeValidationError(ValueError):
    """A value does not satisfy its port type. The message says what is wrong."""


class PortType:
    """Base class of every port type.

    `parents` lists the names of more general types this one is also an instance of
    (a `Frames` value *is* an `Array`), which is what makes an edge compatible.
    """

    name: str = "PortType"
    doc: str = ""
    color: str = "#888888"
    parents: tuple[str, ...] = ()
    # Whether a YAML literal (a number, a string, a list) can stand in for an edge.
    literal_ok: bool = False
    # Whether values are written to the cache (False only for in-memory objects).
    persistent: bool = True

    def validate(self, value: Any) -> Any:
        return value

    def save(self, group: Any, value: Any) -> None:
        save_value(group, value)

    def load(self, group: Any) -> Any:
        return load_value(group)

    def to_inline(self, value: Any, max_bytes: int) -> tuple[Any, int] | None:
        """A small value as a JSON document for the cache's ref file, and the bytes it holds
        (see graphcore/inline.py); None to store it through `save` instead. A type that
        overrides `save`/`load` is stored inline only if it overrides these two as well."""
        return inline.encode(value, max_bytes)

    def from_inline(self, doc: Any) -> Any:
        return inline.decode(doc)

    def from_literal(self, raw: Any) -> Any:
        if not self.literal_ok:
            raise TypeValidationError(f"type {self.name} cannot be given as a literal; connect an output")
        return self.validate(raw)

    def fingerprint(self, value: Any) -> str:
        """Content hash of a value (used for literals; upstream outputs are keyed by their keys)."""
        return fingerprint_value(value)

    # Streaming (graphcore/stream.py): types whose values are sequences along axis 0 may be
    # written chunk by chunk and read lazily. Only array types do, in the layout `save` uses.

    def stream_writer(self, group: Any) -> Any:
        """An appender (`append(chunk)`, `close()`) writing a value into `group` chunk by chunk."""
        raise TypeValidationError(f"type {self.name} cannot be streamed")

    def open_chunks(self, group: Any) -> Any:
        """A lazy `stream.Chunks` view of the value stored in `group`."""
        raise TypeValidationError(f"type {self.name} cannot be streamed")

    def schema(self) -> dict[str, Any]:
        return {"name": self.name, "doc": self.doc, "color": self.color, "parents": list(self.parents)}

    def __repr__(self) -> str:
        return f"<PortType {self.name}>"


_codec_ok: dict[tuple[type, tuple[str, ...]], bool] = {}


def _follows_zarr_codec(port_type: PortType, codecs: tuple[str, ...]) -> bool:
    """Whether the methods `codecs` are defined at or below the class that defines the type's
    Zarr codec (`save`/`load`): a subclass that changes only how values are saved must not
    keep an inline or streaming codec written for the old layout."""
    cls = type(port_type)
    ok = _codec_ok.get((cls, codecs))
    if ok is None:
        def owner(name: str) -> type:
            return next(k for k in cls.__mro__ if name in vars(k))

        ok = _codec_ok[(cls, codecs)] = all(
            issubclass(owner(codec), owner(zarr_codec)) for codec in codecs for zarr_codec in ("save", "load")
        )
    return ok


def stores_inline(port_type: PortType) -> bool:
    """Whether the cache may store this type's small values inline (see _follows_zarr_codec)."""
    return _follows_zarr_codec(port_type, ("to_inline", "from_inline"))


def streamable(port_type: PortType) -> bool:
    """Whether values of this type may be written chunk by chunk and read lazily."""
    return type(port_type).stream_writer is not PortType.stream_writer and \
        _follows_zarr_codec(port_type, ("stream_writer", "open_chunks"))


# ---------------------------------------------------------------------------------------
# Generic value codec: ndarrays -> zarr arrays, JSON-able leaves -> attributes, dicts ->
# subgroups. `Any`, `Dict` and records all store through it.

_JSON_LEAVES = (str, int, float, bool, type(None))


def save_array(group: Any, name: str, arr: np.ndarray) -> None:
    """Chunked along time, compressed losslessly where that pays (see graphcore/arrayio.py)."""
    if np.asarray(arr).dtype == object:
        raise TypeValidationError(f"array {name!r} has dtype object; only numeric arrays can be cached")
    write_array(group, name, arr)


def load_array(group: Any, name: str) -> np.ndarray:
    return read_array(group[name])


def save_value(group: Any, value: Any, name: str = "value") -> None:
    """Store an arbitrary nested value (arrays, JSON leaves, dicts, lists of those)."""
    if isinstance(value, np.ndarray):
        save_array(group, name, value)
        group.attrs[f"kind:{name}"] = "array"
    elif isinstance(value, (np.generic, *_JSON_LEAVES)):  # one attribute write, not two
        leaf = value.item() if isinstance(value, np.generic) else value
        group.update_attributes({f"kind:{name}": "json", f"val:{name}": _json_safe(leaf)})
    elif isinstance(value, Mapping):
        sub = group.create_group(name, overwrite=True)
        group.attrs[f"kind:{name}"] = "dict"
        keys = [str(k) for k in value]
        sub.attrs["keys"] = keys
        for k in keys:
            save_value(sub, value[k], k)
    elif isinstance(value, (list, tuple)):
        if all(isinstance(v, _JSON_LEAVES) for v in value):
            group.update_attributes({f"kind:{name}": "json", f"val:{name}": [_json_safe(v) for v in value]})
        else:
            sub = group.create_group(name, overwrite=True)
            group.attrs[f"kind:{name}"] = "list"
            sub.attrs["length"] = len(value)
            for i, v in enumerate(value):
                save_value(sub, v, str(i))
    elif isinstance(value, bytes):
        save_array(group, name, np.frombuffer(value, dtype=np.uint8))
        group.attrs[f"kind:{name}"] = "bytes"
    else:
        raise TypeValidationError(
            f"cannot cache a value of Python type {type(value).__name__}; "
            "use arrays, numbers, strings, dicts or lists of those"
        )


def load_value(group: Any, name: str = "value") -> Any:
    kind = group.attrs.get(f"kind:{name}")
    if kind == "array":
        return load_array(group, name)
    if kind == "bytes":
        return load_array(group, name).tobytes()
    if kind == "json":
        return _json_restore(group.attrs[f"val:{name}"])
    if kind == "dict":
        sub = group[name]
        return {k: load_value(sub, k) for k in sub.attrs["keys"]}
    if kind == "list":
        sub = group[name]
        return [load_value(sub, str(i)) for i in range(sub.attrs["length"])]
    raise KeyError(f"no stored value named {name!r} in cache group")


def _json_safe(v: Any) -> Any:
    # JSON has no NaN/inf; keep them representable and round-trippable.
    if isinstance(v, float) and not math.isfinite(v):
        return {"__float__": repr(v)}
    return v


def _json_restore(v: Any) -> Any:
    if isinstance(v, dict) and set(v) == {"__float__"}:
        return float(v["__float__"])
    if isinstance(v, list):
        return [_json_restore(x) for x in v]
    return v


def fingerprint_value(value: Any) -> str:
    """sha256 of a value's content, stable across processes and machines."""
    h = hashlib.sha256()
    _feed(h, value)
    return h.hexdigest()


def _feed(h: hashlib._Hash, value: Any) -> None:
    if isinstance(value, np.ndarray):
        arr = np.ascontiguousarray(value)
        h.update(b"nd" + str(arr.dtype.str).encode() + str(arr.shape).encode())
        h.update(arr.tobytes())
    elif isinstance(value, Mapping):
        h.update(b"{")
        for k in sorted(value, key=str):
            h.update(str(k).encode() + b":")
            _feed(h, value[k])
        h.update(b"}")
    elif isinstance(value, (list, tuple)):
        h.update(b"[")
        for v in value:
            _feed(h, v)
            h.update(b",")
        h.update(b"]")
    elif isinstance(value, bytes):
        h.update(b"b" + value)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        h.update(type(value).__name__.encode())
        _feed(h, {f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    else:
        h.update(canonical_json(value).encode())


# ---------------------------------------------------------------------------------------
# Generic types


class AnyType(PortType):
    name = "Any"
    doc = "Any cacheable value: arrays, numbers, strings, and dicts/lists of those."
    color = "#aaaaaa"
    literal_ok = True


class ScalarType(PortType):
    name = "Scalar"
    doc = "A number (int or float) or a bool."
    color = "#e0c050"
    literal_ok = True

    def validate(self, value: Any) -> Any:
        if isinstance(value, np.generic):
            value = value.item()
        if not isinstance(value, (int, float, bool)):
            raise TypeValidationError(f"expected a number, got {type(value).__name__}")
        return value


class StringType(PortType):
    name = "String"
    doc = "A text string."
    color = "#70c070"
    literal_ok = True

    def validate(self, value: Any) -> Any:
        if not isinstance(value, str):
            raise TypeValidationError(f"expected a string, got {type(value).__name__}")
        return value


class PathType(PortType):
    """A path to a file on the machine running the node.

    As a literal it is keyed by the file's content, so editing the file invalidates the cache.
    """

    name = "Path"
    doc = "A filesystem path; literal paths are keyed by the file's content hash."
    color = "#50a0a0"
    literal_ok = True
    parents = ("String",)  # a path is a string: it may feed any String input

    def validate(self, value: Any) -> Any:
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str):
            raise TypeValidationError(f"expected a path string, got {type(value).__name__}")
        return value

    def fingerprint(self, value: Any) -> str:
        from .fingerprint import file_content_hash

        return file_content_hash(value)


class MetricsType(PortType):
    name = "Metrics"
    doc = "A flat mapping of metric name to number."
    color = "#c080e0"

    def validate(self, value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise TypeValidationError(f"expected a mapping of metric name to number, got {type(value).__name__}")
        out = {}
        for k, v in value.items():
            if isinstance(v, np.generic):
                v = v.item()
            if not isinstance(v, (int, float)):
                raise TypeValidationError(f"metric {k!r} is {type(v).__name__}, not a number")
            out[str(k)] = v
        return out


class DictType(PortType):
    name = "Dict"
    doc = "A mapping of names to arrays, numbers, strings or nested mappings."
    color = "#9090d0"

    def validate(self, value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise TypeValidationError(f"expected a mapping, got {type(value).__name__}")
        return dict(value)


class ArrayType(PortType):
    """An ndarray with optional dtype, rank, shape and value-range constraints.

    `shape` uses None for free axes, e.g. (None, 478, 3) for per-frame landmarks.
    Arrays are chunked along their first axis (time) when stored.
    """

    def __init__(
        self,
        name: str = "Array",
        *,
        dtype: str | Sequence[str] | None = None,
        shape: Sequence[int | None] | None = None,
        ndim: int | None = None,
        value_range: tuple[float, float] | None = None,
        doc: str = "",
        color: str = "#6080d0",
        parents: Sequence[str] = ("Array",),
        cast: bool = True,
    ) -> None:
        self.name = name
        self.dtypes = (dtype,) if isinstance(dtype, str) else tuple(dtype or ())
        self.shape = tuple(shape) if shape is not None else None
        self.ndim = len(self.shape) if self.shape is not None else ndim
        self.value_range = value_range
        self.doc = doc or self._describe()
        self.color = color
        self.parents = tuple(p for p in parents if p != name)
        self.cast = cast
        self.literal_ok = True

    def _describe(self) -> str:
        parts = ["ndarray"]
        if self.dtypes:
            parts.append("dtype " + "|".join(self.dtypes))
        if self.shape is not None:
            parts.append("shape (" + ", ".join("*" if s is None else str(s) for s in self.shape) + ")")
        elif self.ndim is not None:
            parts.append(f"{self.ndim}-D")
        if self.value_range is not None:
            parts.append(f"values in [{self.value_range[0]}, {self.value_range[1]}]")
        return ", ".join(parts)

    def validate(self, value: Any) -> Any:
        if not isinstance(value, np.ndarray):
            if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, without importing torch
                value = value.detach().cpu().numpy()
            else:
                raise TypeValidationError(f"expected an ndarray ({self._describe()}), got {type(value).__name__}")
        if self.dtypes and value.dtype.name not in self.dtypes:
            if self.cast and np.can_cast(value.dtype, self.dtypes[0], casting="same_kind"):
                value = value.astype(self.dtypes[0])
            else:
                raise TypeValidationError(f"dtype {value.dtype.name}, expected {'|'.join(self.dtypes)}")
        if self.ndim is not None and value.ndim != self.ndim:
            raise TypeValidationError(f"shape {value.shape} has {value.ndim} axes, expected {self.ndim} ({self._describe()})")
        if self.shape is not None:
            for axis, (got, want) in enumerate(zip(value.shape, self.shape)):
                if want is not None and got != want:
                    raise TypeValidationError(f"shape {value.shape}: axis {axis} is {got}, expected {want}")
        if self.value_range is not None and value.size and value.dtype.kind in "fiub":
            lo, hi = self.value_range
            vmin, vmax = value.min(), value.max()
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise TypeValidationError("array contains NaN or infinite values")
            if vmin < lo or vmax > hi:
                raise TypeValidationError(f"values span [{vmin}, {vmax}], expected within [{lo}, {hi}]")
        return value

    def save(self, group: Any, value: Any) -> None:
        save_array(group, "value", value)

    def load(self, group: Any) -> Any:
        return load_array(group, "value")

    def stream_writer(self, group: Any) -> Any:
        return ArrayAppender(group, "value")

    def open_chunks(self, group: Any) -> Any:
        from .stream import Chunks

        zarray = group["value"]
        if zarray.ndim == 0:
            raise TypeValidationError(f"a stored {self.name} without a time axis cannot be read in chunks")
        return Chunks(zarray.shape, zarray.dtype, zarray.chunks[0], lambda a, b: read_rows(zarray, a, b))

    def to_inline(self, value: Any, max_bytes: int) -> tuple[Any, int] | None:
        return inline.encode_array(value, max_bytes)

    def from_inline(self, doc: Any) -> Any:
        value = inline.decode(doc)
        if not isinstance(value, np.ndarray):
            raise ValueError(f"inline value of {self.name} is a {type(value).__name__}, not an array")
        return value

    def from_literal(self, raw: Any) -> Any:
        arr = np.asarray(raw, dtype=self.dtypes[0] if self.dtypes else None)
        if arr.dtype.kind not in "biuf":
            raise TypeValidationError(f"a {self.name} literal must be a number or a (nested) list of numbers, got {raw!r}")
        return self.validate(arr)

    def schema(self) -> dict[str, Any]:
        return {
            **super().schema(),
            "dtype": list(self.dtypes),
            "shape": list(self.shape) if self.shape is not None else None,
            "ndim": self.ndim,
            "value_range": list(self.value_range) if self.value_range else None,
        }


class RecordType(PortType):
    """A dataclass whose fields are arrays, numbers or strings, stored field by field.

    Example: an audio clip `Audio(samples: ndarray, sample_rate: int)`.
    """

    def __init__(
        self,
        name: str,
        cls: type,
        *,
        doc: str = "",
        color: str = "#d08050",
        parents: Sequence[str] = (),
        check: Callable[[Any], None] | None = None,
    ) -> None:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"RecordType {name}: {cls!r} is not a dataclass")
        self.name, self.cls, self.color, self.parents = name, cls, color, tuple(parents)
        self.doc = doc or ((cls.__doc__ or "").strip().splitlines() or [name])[0]
        self.check = check

    def validate(self, value: Any) -> Any:
        if not isinstance(value, self.cls):
            raise TypeValidationError(f"expected {self.cls.__name__}, got {type(value).__name__}")
        if self.check is not None:
            self.check(value)
        return value

    def save(self, group: Any, value: Any) -> None:
        save_value(group, self._fields_of(value))

    def load(self, group: Any) -> Any:
        return self._from_fields(load_value(group))

    def to_inline(self, value: Any, max_bytes: int) -> tuple[Any, int] | None:
        return inline.encode(self._fields_of(value), max_bytes)

    def from_inline(self, doc: Any) -> Any:
        return self._from_fields(inline.decode(doc))

    @staticmethod
    def _fields_of(value: Any) -> dict[str, Any]:
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}

    def _from_fields(self, fields: dict[str, Any]) -> Any:
        for f in dataclasses.fields(self.cls):
            # JSON has no tuples: give tuple-typed fields (e.g. image sizes) their type back.
            is_tuple = f.type is tuple or str(f.type).startswith(("tuple", "Tuple"))
            if is_tuple and isinstance(fields.get(f.name), list):
                fields[f.name] = tuple(fields[f.name])
        return self.cls(**fields)

    def schema(self) -> dict[str, Any]:
        return {**super().schema(), "fields": [f.name for f in dataclasses.fields(self.cls)]}


@dataclasses.dataclass
class CheckpointBlob:
    """A trained model's weights as bytes plus JSON metadata (config, steps, losses).

    Stored inside the cache entry, so it travels with the cache to other machines.
    """

    data: bytes
    meta: dict

    @classmethod
    def from_file(cls, path: str | os.PathLike, meta: dict | None = None) -> CheckpointBlob:
        with open(path, "rb") as f:
            return cls(f.read(), dict(meta or {}))

    def open(self) -> io.BytesIO:
        return io.BytesIO(self.data)

    def write(self, path: str | os.PathLike) -> None:
        with open(path, "wb") as f:
            f.write(self.data)


class CheckpointType(PortType):
    name = "Checkpoint"
    doc = "Trained weights (bytes) with metadata: config, data, steps, losses."
    color = "#d05050"

    def validate(self, value: Any) -> Any:
        if not isinstance(value, CheckpointBlob):
            raise TypeValidationError(f"expected a CheckpointBlob, got {type(value).__name__}")
        return value

    def save(self, group: Any, value: Any) -> None:
        save_value(group, {"data": value.data, "meta": value.meta})

    def load(self, group: Any) -> Any:
        d = load_value(group)
        return CheckpointBlob(d["data"], d["meta"])

    def to_inline(self, value: Any, max_bytes: int) -> tuple[Any, int] | None:
        return inline.encode({"data": value.data, "meta": value.meta}, max_bytes)

    def from_inline(self, doc: Any) -> Any:
        d = inline.decode(doc)
        return CheckpointBlob(d["data"], d["meta"])

    def fingerprint(self, value: Any) -> str:
        return hashlib.sha256(value.data).hexdigest()


class ObjectType(PortType):
    """An in-memory Python object (a loaded model, a device handle).

    Only transient nodes may output it: it is never written to the cache.
    """

    persistent = False

    def __init__(self, name: str = "Object", *, doc: str = "", color: str = "#606060", parents: Sequence[str] = ()) -> None:
        self.name, self.color, self.parents = name, color, tuple(parents)
        self.doc = doc or "An in-memory object; produced by transient nodes and never cached."

    def save(self, group: Any, value: Any) -> None:
        raise TypeValidationError(f"type {self.name} holds in-memory objects and cannot be cached")

    def load(self, group: Any) -> Any:
        raise TypeValidationError(f"type {self.name} holds in-memory objects and cannot be cached")


# ---------------------------------------------------------------------------------------
# Registry


class TypeRegistry:
    """Names -> port types, plus the one compatibility rule everybody uses."""

    def __init__(self) -> None:
        self._types: dict[str, PortType] = {}
        self._origin: dict[str, str] = {}

    def register(self, port_type: PortType, origin: str = "graphcore") -> PortType:
        try:  # the editor and `graphrun nodes --json` export it: refuse a type that cannot be
            json.dumps(port_type.schema())
        except Exception as exc:
            raise ValueError(f"port type {getattr(port_type, 'name', port_type)!r} from {origin}: its schema cannot be "
                             f"exported as JSON ({type(exc).__name__}: {exc})") from None
        existing = self._types.get(port_type.name)
        if existing is not None and existing is not port_type:
            if type(existing) is type(port_type) and existing.schema() == port_type.schema():
                return existing  # the same type declared twice (e.g. a module imported twice)
            raise ValueError(
                f"port type {port_type.name!r} from {origin} clashes with the one from {self._origin[port_type.name]}"
            )
        self._types[port_type.name] = port_type
        self._origin[port_type.name] = origin
        return port_type

    def get(self, name: str) -> PortType:
        try:
            return self._types[name]
        except KeyError:
            raise KeyError(f"unknown port type {name!r}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._types

    def names(self) -> list[str]:
        return sorted(self._types)

    def ancestors(self, name: str) -> set[str]:
        """The type itself and every type it is (transitively) an instance of."""
        seen, stack = set(), [name]
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            if n in self._types:
                stack.extend(self._types[n].parents)
        return seen

    def can_connect(self, source: str, target: str) -> bool:
        """An output of type `source` may feed an input of type `target`."""
        return target == "Any" or target in self.ancestors(source)

    def schema(self) -> dict[str, Any]:
        """All types with the list of input types each may connect to (for the editor)."""
        names = self.names()
        return {
            n: {**self._types[n].schema(), "origin": self._origin[n], "connects_to": [t for t in names if self.can_connect(n, t)]}
            for n in names
        }


TYPES = TypeRegistry()

ANY = TYPES.register(AnyType())
SCALAR = TYPES.register(ScalarType())
STRING = TYPES.register(StringType())
PATH = TYPES.register(PathType())
METRICS = TYPES.register(MetricsType())
DICT = TYPES.register(DictType())
ARRAY = TYPES.register(ArrayType("Array", parents=(), doc="Any ndarray."))
CHECKPOINT = TYPES.register(CheckpointType())
OBJECT = TYPES.register(ObjectType())


def register_type(port_type: PortType, origin: str = "plugin") -> PortType:
    """Add a port type (from a node library or plugin). Returns the registered instance."""
    return TYPES.register(port_type, origin)


def resolve_type(t: PortType | str) -> PortType:
    return TYPES.get(t) if isinstance(t, str) else t


__all__ = [
    "PortType", "TypeValidationError", "TypeRegistry", "TYPES", "register_type", "resolve_type",
    "AnyType", "ScalarType", "StringType", "PathType", "MetricsType", "DictType", "ArrayType",
    "RecordType", "CheckpointType", "CheckpointBlob", "ObjectType",
    "ANY", "SCALAR", "STRING", "PATH", "METRICS", "DICT", "ARRAY", "CHECKPOINT", "OBJECT",
    "save_value", "load_value", "save_array", "load_array", "fingerprint_value", "stores_inline", "streamable",
]
