"""The node API: what a node declares and what it receives when it runs.

A node is a class with a stable type name, a version, typed input and output ports, a
pydantic parameter model and one `run` method::

    class Scale(Node):
        '''Multiply an array by a factor.'''
        category = "math"
        inputs = {"x": In("Array")}
        outputs = {"y": Out("Array")}

        class Params(BaseModel):
            factor: float = Field(2.0, ge=0, le=100, description="multiplier")

        def run(self, ctx: RunContext, x):
            return {"y": x * self.params.factor}
"""
from __future__ import annotations

import dataclasses
import enum
import os
import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, create_model

from .types import PortType, resolve_type


class CachePolicy(str, enum.Enum):
    DEFAULT = "default"  # deterministic: cached by key
    RECOMPUTE = "recompute"  # non-deterministic: runs every time unless given a `seed` parameter
    TRANSIENT = "transient"  # in-memory results (model handles): never persisted, recomputed where needed


@dataclasses.dataclass(frozen=True)
class FileSource:
    """Where an input comes from when no edge or literal feeds it: the file its parameter names,
    else (the parameter left empty) `fallback`, a file shipped with the node library such as a
    bundled checkpoint. Declared on the port (`In(..., file=FileSource(...))`), it gives the node
    class the parameter, the fallback as an implicit file (its content keys the cache) and
    `Node.input_source`."""

    param: str = ""  # the InputFile parameter; default: the port's name
    fallback: str | os.PathLike | None = None  # absolute, or relative to the workflow's folder
    description: str = ""  # the parameter's description
    extensions: tuple[str, ...] = ()
    label: str = ""  # names the fallback in cache keys and messages; default "bundled <param>"


@dataclasses.dataclass(frozen=True)
class Port:
    type: PortType | str
    doc: str = ""
    optional: bool = False  # inputs only: may be left unconnected (the node gets None)
    file: FileSource | None = None  # inputs only: the file parameter (and fallback) used when unconnected
    # Chunk by chunk along time (graphcore/stream.py): an input arrives as a lazy `Chunks`
    # view, an output is yielded a chunk at a time by a generator `run`.
    stream: bool = False

    @property
    def port_type(self) -> PortType:
        return resolve_type(self.type)

    def schema(self) -> dict[str, Any]:
        out = {"type": self.port_type.name, "doc": self.doc, "optional": self.optional}
        if self.file is not None:
            out["param"] = self.file.param
        if self.stream:
            out["stream"] = True
        return out

    def facts(self) -> dict[str, Any]:
        """Facts this port adds to its node's schema (a subclass may say, e.g., which model a
        checkpoint port carries); merged over every port, one level deep."""
        return {}


def In(type: PortType | str, doc: str = "", *, optional: bool = False, file: FileSource | None = None,
       stream: bool = False) -> Port:
    """An input port. With `file`, the port is optional: unconnected, the node reads the file
    its parameter names, or the fallback (see FileSource). With `stream`, the node gets a lazy
    `graphcore.stream.Chunks` view instead of the whole array."""
    return Port(type, doc, optional or file is not None, file, stream)


def Out(type: PortType | str, doc: str = "", *, stream: bool = False) -> Port:
    """An output port. With `stream`, `run` is a generator yielding it chunk by chunk along
    time (see graphcore/stream.py)."""
    return Port(type, doc, stream=stream)


# --- parameter helpers: file parameters are checked before running and keyed by content ---

FILE_KEY = "x-file"


def InputFile(default: Any = ..., *, description: str = "", extensions: tuple[str, ...] = (),
              fallback: str | os.PathLike | None = None, label: str = "", port: str | None = None, **kw: Any) -> Any:
    """A parameter naming a file the node reads: must exist; its content is part of the key.

    `fallback`: the file the node reads when the parameter is left empty (and, with `port`, when
    that input is not connected either); it is declared as an implicit file under `label`."""
    spec: dict[str, Any] = {"mode": "read", "extensions": list(extensions)}
    if fallback is not None:
        spec["fallback"] = {"path": os.fspath(fallback), "label": label or "bundled file", "port": port}
    return Field(default, description=description, json_schema_extra={FILE_KEY: spec}, **kw)


def OutputFile(default: Any = ..., *, description: str = "", extensions: tuple[str, ...] = (), **kw: Any) -> Any:
    """A parameter naming a file the node writes: on a cache hit the engine re-runs the node
    if the file is missing or was changed since it was written."""
    return Field(default, description=description, json_schema_extra={FILE_KEY: {"mode": "write", "extensions": list(extensions)}}, **kw)


def OutputFolder(default: Any = ..., *, description: str = "", **kw: Any) -> Any:
    """A parameter naming a folder the node writes (e.g. a Zarr dataset): at commit the engine
    records a manifest of the tree (relative paths, sizes, mtimes); on a cache hit it re-runs the
    node if the folder is gone or its manifest changed. fsspec URLs (`s3://...`) are not tracked."""
    return Field(default, description=description, json_schema_extra={FILE_KEY: {"mode": "write-folder", "extensions": []}}, **kw)


def InputPath(default: Any = ..., *, description: str = "", folder: bool = False, extensions: tuple[str, ...] = (),
              **kw: Any) -> Any:
    """A parameter naming a file (`folder=True`: a folder) the node reads by location only: the
    path must exist, but its content does not key the cache (the node fingerprints what it
    reads itself, or the location is the point, e.g. a dataset URL). Relative to the workflow."""
    return Field(default, description=description,
                 json_schema_extra={FILE_KEY: {"mode": "read-path", "folder": folder, "extensions": list(extensions)}}, **kw)


def OutputPath(default: Any = ..., *, description: str = "", folder: bool = False, extensions: tuple[str, ...] = (),
               **kw: Any) -> Any:
    """A parameter naming a file (`folder=True`: a folder) the node writes as a side effect the
    cache does not track (e.g. training state kept for a resume, extra figures). Unlike
    OutputFile/OutputFolder, a cache hit does not check it."""
    return Field(default, description=description,
                 json_schema_extra={FILE_KEY: {"mode": "write-path", "folder": folder, "extensions": list(extensions)}}, **kw)


# Every mode a path parameter can have, and whether the node reads or writes there.
PATH_MODES = {"read": "read", "read-path": "read", "write": "write", "write-folder": "write", "write-path": "write"}


def file_params(params_model: type[BaseModel]) -> dict[str, str]:
    """Parameter name -> mode for the parameters that name a file or folder: "read" (InputFile:
    content keys the cache), "read-path" (InputPath), "write" (OutputFile), "write-folder"
    (OutputFolder), "write-path" (OutputPath). Every one of them is a path: validation can keep
    them inside allowed roots (`validate(..., roots=...)`)."""
    return {name: spec["mode"] for name, spec in _file_specs(params_model).items()}


def file_fallbacks(params_model: type[BaseModel]) -> dict[str, dict[str, Any]]:
    """Parameter name -> {"path", "label", "port"} for the InputFile parameters with a fallback."""
    return {name: spec["fallback"] for name, spec in _file_specs(params_model).items() if spec.get("fallback")}


def _file_specs(params_model: type[BaseModel]) -> dict[str, dict[str, Any]]:
    out = {}
    for name, field in params_model.model_fields.items():
        extra = field.json_schema_extra
        spec = extra.get(FILE_KEY) if isinstance(extra, dict) else None
        if isinstance(spec, dict):
            out[name] = spec
    return out


def _add_file_params(cls: type[Node]) -> None:
    """Complete the inputs declared with a FileSource: name their parameter after the port when
    unnamed, and add the parameters the Params model lacks (first, in port order)."""
    sources: dict[str, FileSource] = {}
    for name, port in cls.inputs.items():
        if port.file is not None:
            sources[name] = port.file if port.file.param else dataclasses.replace(port.file, param=name)
    if not sources:
        return
    if any(cls.inputs[name].file is not source for name, source in sources.items()):
        cls.inputs = {name: dataclasses.replace(port, file=sources[name]) if name in sources else port
                      for name, port in cls.inputs.items()}
    fields: dict[str, Any] = {}
    for name, source in sources.items():
        if source.param in cls.Params.model_fields:
            declared = file_fallbacks(cls.Params).get(source.param)
            if source.fallback is not None and (declared is None or declared["port"] != name):
                raise TypeError(f"node type {cls.type_name}: parameter {source.param!r} is declared both in Params and by "
                                f"the FileSource of input {name!r}; declare it once (on the port)")
            continue  # inherited from a node this one extends
        label = source.label or "bundled " + source.param.replace("_", " ")
        fields[source.param] = (str, InputFile("", description=source.description, extensions=source.extensions,
                                               fallback=source.fallback, label=label, port=name))
    if fields:
        added: type[BaseModel] = create_model(f"{cls.__name__}FileParams", **fields)
        # (Params, added): pydantic lists the fields of the last base first
        params: type[BaseModel] = create_model(cls.Params.__name__, __base__=(cls.Params, added), __module__=cls.__module__)
        params.__qualname__ = f"{cls.__qualname__}.Params"
        cls.Params = params


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- what a running node sees ---


@dataclasses.dataclass
class RunContext:
    """Handed to `Node.run`: progress reporting, device, scratch space, seed, logging."""

    node_id: str
    node_type: str
    key: str
    device: str = "cpu"
    tmp_dir: Path = dataclasses.field(default_factory=lambda: Path(os.environ.get("TMPDIR", "/tmp")))
    seed: int = 0
    emit: Callable[[str, Mapping[str, Any]], None] = lambda kind, data: None
    workflow_dir: Path | None = None
    # Whether the run was asked to stop (graphcore.scheduler.run_graph(cancel=...)).
    cancel_requested: Callable[[], bool] = lambda: False

    def progress(self, done: int, total: int, message: str = "") -> None:
        """Report `done` of `total` units of work (frames, steps); the CLI and editor show it.
        This is also where a cancelled run stops the node (RunCancelled is raised)."""
        self.check_cancelled()
        self.emit("progress", {"i": int(done), "n": int(total), "message": message})

    def check_cancelled(self) -> None:
        """Raise RunCancelled if the run was cancelled: a node with a long loop that reports no
        progress may call this to stay cancellable. Nothing of the node is committed."""
        if self.cancel_requested():
            raise RunCancelled(f"node '{self.node_id}' stopped: the run was cancelled")

    def log(self, message: str) -> None:
        """A line for the run log (e.g. 'no VGG weights given: using the fallback perceptual loss')."""
        self.emit("log", {"message": message})

    def rng(self) -> random.Random:
        return random.Random(self.seed)

    def resolve_path(self, path: str | os.PathLike) -> Path:
        """Relative paths in a workflow are relative to the workflow file's folder."""
        p = Path(path).expanduser()
        if not p.is_absolute() and self.workflow_dir is not None:
            p = self.workflow_dir / p
        return p


class NodeError(RuntimeError):
    """An error a node raises on purpose: its message is shown to the user without a traceback."""


class RunCancelled(BaseException):
    """Raised inside a node at its next progress point once its run is cancelled. A
    BaseException, like KeyboardInterrupt, so that a node's own `except Exception` does not
    swallow it; the engine records the node as 'cancelled' and commits nothing of it."""


class Node:
    """Base class of every node. Subclasses declare ports and parameters and implement `run`."""

    type_name: ClassVar[str] = ""  # defaults to the class name
    category: ClassVar[str] = "misc"
    version: ClassVar[int | str] = 1
    code_version: ClassVar[str | None] = None  # pins the code fingerprint when set
    # The engine finds the modules of its own project that a node imports (graphcore/imports.py);
    # this is an override for code it cannot see that way (e.g. a module chosen by a computed
    # name): dotted module names (a package: all of its modules) whose source also keys the cache.
    code_dependencies: ClassVar[tuple[str, ...]] = ()
    cache: ClassVar[CachePolicy] = CachePolicy.DEFAULT
    inputs: ClassVar[dict[str, Port]] = {}
    outputs: ClassVar[dict[str, Port]] = {}
    Params: ClassVar[type[BaseModel]] = NoParams
    # Groups of optional inputs of which exactly one must be connected (or given as a literal),
    # e.g. (("image", "frames"),): validation reports a group with none or several.
    exactly_one_of: ClassVar[tuple[tuple[str, ...], ...]] = ()
    # An adapter converts one value into another type with no choice to make (one input, one
    # output, no required parameter): the editor offers it when an edge between those types is refused.
    adapter: ClassVar[bool] = False
    # Set by the registry: where the class came from ("graphcore", "talkgraph", "plugin:<path>").
    origin: ClassVar[str] = ""
    # Set by the registry: where the node's own code lives (graphcore.imports.CodeScope), i.e.
    # which imported modules count as its code in the fingerprint; None: its module's folder.
    code_scope: ClassVar[Any] = None

    # `run(self, ctx, **inputs) -> {output port: value}`: each node declares it with one keyword
    # argument per input port, so its signature is the node's own (a Callable, not a method, to
    # the type checker). The registry refuses a class without it.
    run: Callable[..., dict[str, Any]]
    params: Any  # an instance of the node's own Params model

    def __init__(self, params: BaseModel | Mapping[str, Any] | None = None) -> None:
        if params is None:
            params = {}
        self.params = params if isinstance(params, BaseModel) else self.Params(**dict(params))

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if not cls.__dict__.get("type_name"):
            cls.type_name = cls.__name__
        if isinstance(cls.cache, str):
            cls.cache = CachePolicy(cls.cache)
        for group in cls.exactly_one_of:
            bad = [n for n in group if n not in cls.inputs or not cls.inputs[n].optional]
            if len(group) < 2 or bad:
                raise TypeError(f"{cls.__name__}.exactly_one_of: {tuple(group)} must name two or more optional inputs"
                                + (f" (not: {', '.join(bad)})" if bad else ""))
        if cls.adapter and (len(cls.inputs) != 1 or len(cls.outputs) != 1):
            raise TypeError(f"{cls.__name__}: an adapter has exactly one input and one output")
        _add_file_params(cls)

    # --- introspection used by validation, the CLI and the editor ---

    def implicit_files(self, connected: frozenset[str]) -> Mapping[str, str | os.PathLike]:
        """Files the node will read that no InputFile parameter names, given its parameters and
        the input ports fed in the workflow (`connected`): e.g. a bundled checkpoint used when the
        checkpoint parameter is empty and no checkpoint is connected. Name -> path (relative
        paths are relative to the workflow's folder). Their content keys the cache, exactly as
        InputFile parameters do, and validation reports one that is missing.

        By default: the fallbacks of InputFile parameters left empty whose port (if any) is not
        connected. Override (extending super()'s) for files read without any parameter."""
        return {fb["label"]: Path(fb["path"]) for name, fb in file_fallbacks(type(self.params)).items()
                if not getattr(self.params, name) and fb["port"] not in connected}

    def input_source(self, ctx: RunContext, port: str, value: Any = None) -> Any:
        """What an input declared with a FileSource stands for: the value connected to `port`,
        else the file its parameter names (resolved against the workflow's folder), else the
        fallback file (None when there is none)."""
        if value is not None:
            return value
        source = self.inputs[port].file
        if source is None:
            raise TypeError(f"input {port!r} of {self.type_name} is not declared with a FileSource")
        named = getattr(self.params, source.param)
        if named:
            return ctx.resolve_path(named)
        return ctx.resolve_path(source.fallback) if source.fallback is not None else None

    # --- the up-front resource check (graphcore/resources.py), before anything runs ---

    def size_hints(self, inputs: Mapping[str, Mapping[str, Any]], resolve: Callable[[str], Path]) -> dict[str, dict[str, Any]]:
        """Facts about this node's outputs known without running it, from its parameters,
        its input files (`resolve` makes a workflow path absolute) and `inputs`, the facts of
        its connected inputs by port: e.g. {"image": {"shape": (H, W, 3)}}. Default: none."""
        return {}

    def memory_estimate(self, inputs: Mapping[str, Mapping[str, Any]]) -> tuple[int, str] | None:
        """(bytes this node needs at its peak, what to do if that is too much), from the facts
        of its inputs; None when unknown. Validation refuses a workflow whose estimate exceeds
        the memory available, naming the node (nodes that stream rarely need one)."""
        return None

    @classmethod
    def description(cls) -> str:
        return (cls.__doc__ or "").strip()

    @classmethod
    def streams(cls) -> dict[str, list[str]]:
        """The ports that stream: {"inputs": [...], "outputs": [...]} (empty lists: whole arrays)."""
        return {"inputs": [k for k, p in cls.inputs.items() if p.stream],
                "outputs": [k for k, p in cls.outputs.items() if p.stream]}

    @classmethod
    def is_seeded(cls, params: BaseModel) -> bool:
        return getattr(params, "seed", None) is not None

    @classmethod
    def schema(cls) -> dict[str, Any]:
        """The node's full schema as JSON-able data (the editor and `nodes describe` use it)."""
        return {
            "type": cls.type_name,
            "category": cls.category,
            "version": cls.version,
            "cache": cls.cache.value,
            "origin": cls.origin,
            "description": cls.description(),
            "inputs": {k: p.schema() for k, p in cls.inputs.items()},
            "outputs": {k: p.schema() for k, p in cls.outputs.items()},
            "params": cls.Params.model_json_schema(),
            "files": file_params(cls.Params),
            "exactly_one_of": [list(g) for g in cls.exactly_one_of],
            "adapter": cls.adapter,
            "code_dependencies": list(cls.code_dependencies),
            "streams": cls.streams(),
            **_port_facts(cls),
            **cls.extra_schema(),
        }

    @classmethod
    def extra_schema(cls) -> dict[str, Any]:
        """Hook for nodes to add facts to their schema (e.g. a model's parameter count)."""
        return {}

    @classmethod
    def missing_file_hint(cls, param: str, path: str) -> str:
        """Hook: advice appended when the file parameter `param` names a missing `path` (e.g.
        the command that makes that file)."""
        return ""


def _port_facts(cls: type[Node]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for port in (*cls.inputs.values(), *cls.outputs.values()):
        for key, value in port.facts().items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = {**out[key], **value}
            else:
                out[key] = value
    return out
