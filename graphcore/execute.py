"""Running one node, anywhere: a thread of the local executor or a dask worker process.

`execute_node` gets the node's inputs (from the run's in-memory memo when the producer ran in
this process, otherwise from the cache), builds its RunContext, calls `run`, checks every
output against its port type, writes the persisted outputs through the cache's atomic writer
and returns small metadata. In-process (transient) upstream nodes are computed right here,
once per process and key: a model loaded for one task is reused by the next one on the same
worker. Node classes are resolved by type name; on workers from a registry the worker builds
itself (memoised per process), never from pickles.
"""
from __future__ import annotations

import atexit
import collections
import dataclasses
import inspect
import shutil
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .cache import CacheMiss
from .keys import node_code
from .node import Node, NodeError, RunCancelled, RunContext
from .outputs import MissingOutput, record_outputs
from .plan import RunPlan, TaskNode
from .registry import NodeRegistry, build_registry
from .stream import Chunks, materialise
from .threads import pin_threads
from .types import PortType, TypeValidationError, streamable
from .workflow import BoundGraph, Edge, Literal

# emit(kind, task, data): how a running node's events leave the process.
Emit = Callable[[str, TaskNode, dict], None]

PROGRESS_INTERVAL_S = 0.1  # at most this often per node; the last step is always sent


class NodeFailure(Exception):
    """A node failed. `user_error` is True for NodeError and bad outputs: the message alone
    explains it; otherwise `detail` carries a short traceback tail."""

    def __init__(self, node_id: str, node_type: str, message: str, detail: str = "", user_error: bool = True,
                 cancelled: bool = False) -> None:
        super().__init__(node_id, node_type, message, detail, user_error, cancelled)
        self.node_id, self.node_type, self.message = node_id, node_type, message
        self.detail, self.user_error, self.cancelled = detail, user_error, cancelled

    def __str__(self) -> str:
        return f"node '{self.node_id}' ({self.node_type}): {self.message}"


class InputLost(NodeFailure):
    """An input's cache entry could not be served after all: it failed verification (and was
    moved to quarantine, `moved_to`) or vanished while being read. Not the node's fault: the
    scheduler runs the producer `upstream` again, then this node."""

    def __init__(self, node_id: str, node_type: str, message: str, upstream: str, reason: str,
                 moved_to: str | None = None) -> None:
        super().__init__(node_id, node_type, message)
        self.upstream, self.reason, self.moved_to = upstream, reason, moved_to
        self.args = (node_id, node_type, message, upstream, reason, moved_to)  # for pickling (dask)


@dataclasses.dataclass
class NodeResult:
    """What a task sends back: never values, only where they are and what ran."""

    node_id: str
    key: str
    seconds: float
    ran: list[tuple[str, str, float]]  # (node id, type, seconds) of every node run, in-process ones included
    files: dict[str, dict]  # OutputFile/OutputFolder parameter -> its record (graphcore/outputs.py)


# --- resolving node classes ---------------------------------------------------------------


class NodeFactory(Protocol):
    def node_class(self, task: TaskNode) -> type[Node]: ...
    def make(self, task: TaskNode) -> Node: ...


class BoundFactory:
    """In the client process: the classes and validated parameters of the bound graph."""

    def __init__(self, graph: BoundGraph) -> None:
        self._nodes = graph.nodes

    def node_class(self, task: TaskNode) -> type[Node]:
        return self._nodes[task.id].cls

    def make(self, task: TaskNode) -> Node:
        bound = self._nodes[task.id]
        return bound.cls(bound.params)


_registries: dict[tuple[str, ...], NodeRegistry] = {}
_registries_lock = threading.Lock()


def process_registry(plugin_paths: tuple[str, ...]) -> NodeRegistry:
    """Built-ins + entry points + the run's plugin paths, built once per process."""
    with _registries_lock:
        registry = _registries.get(plugin_paths)
        if registry is None:
            registry = _registries[plugin_paths] = build_registry(plugin_paths, env=False)
        return registry


class RegistryFactory:
    """On a worker: classes by type name from this process's own registry."""

    def __init__(self, plugin_paths: tuple[str, ...]) -> None:
        self.registry = process_registry(plugin_paths)

    def node_class(self, task: TaskNode) -> type[Node]:
        if task.type not in self.registry:
            errors = "".join(f"\n  {e}" for e in self.registry.errors)
            raise NodeFailure(task.id, task.type, f"node type {task.type!r} is not installed on this worker "
                              f"(install its package there or pass its --plugins path){errors}")
        cls = self.registry.get(task.type)
        if node_code(cls) != task.code:
            raise NodeFailure(task.id, task.type, f"the code of node type {task.type!r} on this worker differs from "
                              "the client's: install the same version everywhere")
        return cls

    def make(self, task: TaskNode) -> Node:
        cls = self.node_class(task)
        return cls(cls.Params.model_validate(task.params))


# --- memos --------------------------------------------------------------------------------


class RunMemo:
    """Outputs computed in this run and process, by node id, so that local dependents do not
    read back from the cache what is already in memory. The scheduler releases an entry once
    every node that reads it is done."""

    def __init__(self) -> None:
        self._values: dict[str, Mapping[str, Any]] = {}

    def put(self, node_id: str, outputs: Mapping[str, Any]) -> None:
        self._values[node_id] = outputs

    def get(self, node_id: str) -> Mapping[str, Any] | None:
        return self._values.get(node_id)

    def release(self, node_id: str) -> None:
        self._values.pop(node_id, None)


class InProcessMemo:
    """Outputs of in-process (transient) nodes by (key, device): computed once per process
    even when several threads need them at once; the least recently used are dropped."""

    def __init__(self, capacity: int = 8) -> None:
        self.capacity = capacity
        self._values: collections.OrderedDict[tuple[str, str], Mapping[str, Any]] = collections.OrderedDict()
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._lock = threading.Lock()

    def get_or_compute(self, key: tuple[str, str], compute: Callable[[], Mapping[str, Any]]) -> Mapping[str, Any]:
        with self._lock:
            key_lock = self._locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._values:
                    self._values.move_to_end(key)
                    return self._values[key]
            value = compute()
            with self._lock:
                self._values[key] = value
                while len(self._values) > self.capacity:
                    old, _ = self._values.popitem(last=False)
                    self._locks.pop(old, None)
            return value


IN_PROCESS = InProcessMemo()


# --- running ------------------------------------------------------------------------------


@dataclasses.dataclass
class ExecEnv:
    plan: RunPlan
    cache: Any  # graphcore.cache.CacheStore
    factory: NodeFactory
    emit: Emit
    run_memo: RunMemo | None = None  # local executor only
    cancelled: Callable[[], bool] = lambda: False  # the run's cancel flag (local executor only)
    # On a worker that may not share the client's disk: the node's output files were redirected
    # to scratch (graphcore/staging.py); parameter -> the path the user asked for. They are
    # stored in the entry, and the client writes them there.
    staged_outputs: dict[str, str] | None = None
    workflow_dir: Path = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.workflow_dir = Path(self.plan.workflow_dir)  # once, not per node


def execute_node(env: ExecEnv, node_id: str) -> NodeResult:
    """Run one persisted node: inputs in, outputs validated and committed to the cache."""
    task = env.plan.nodes[node_id]
    ran: list[tuple[str, str, float]] = []
    cls = env.factory.node_class(task)
    inputs = gather_inputs(env, task, ran)
    with env.cache.writer(task.key) as writer:  # aborted (its data deleted) unless committed
        if task.output_files:  # `.part` files a kill would leave: swept by a later run
            writer.claim_files(list(task.output_files.values()))
        # streamed outputs go to the entry chunk by chunk and are not in `outputs`
        outputs, seconds = run_node(env, task, inputs, writer if env.plan.stream else None)
        try:
            files = record_outputs(task.output_files, task.output_folders)
        except MissingOutput as exc:
            raise NodeFailure(task.id, task.type, str(exc)) from None
        if env.staged_outputs:
            files = store_output_files(task, writer, files, env.staged_outputs)
            outputs = unstage_paths(task, outputs, env.staged_outputs)
        persist(env, task, cls, writer, outputs, seconds, files)
    if env.run_memo is not None:
        env.run_memo.put(task.id, outputs)
    ran.append((task.id, task.type, seconds))
    env.emit("finished", task, {"seconds": seconds})
    return NodeResult(task.id, task.key, seconds, ran, files)


def store_output_files(task: TaskNode, writer: Any, files: dict[str, dict], asked: Mapping[str, str]) -> dict[str, dict]:
    """Output files written to scratch go into the entry; their records name where the user
    asked for them (the client writes them there)."""
    out = {}
    for param, record in files.items():
        try:
            writer.save_files(param, record["path"])
        except OSError as exc:
            raise NodeFailure(task.id, task.type, f"cannot store its output '{param}' in the cache: {exc}") from None
        out[param] = {**record, "path": asked[param], "stored": True}
    return out


def unstage_paths(task: TaskNode, outputs: dict[str, Any], asked: Mapping[str, str]) -> dict[str, Any]:
    """Outputs that name a redirected output file (or a path inside a redirected folder) name
    it where the user asked: the same key gives the same value on every executor."""
    local = {**task.output_files, **task.output_folders}
    moves = sorted(((local[p], asked[p]) for p in asked), key=lambda m: -len(m[0]))

    def unstage(value: Any) -> Any:
        if isinstance(value, str):
            for here, there in moves:
                if value == here or value.startswith(here + "/"):
                    return there + value[len(here):]
        return value

    return {port: unstage(value) for port, value in outputs.items()}


def gather_inputs(env: ExecEnv, task: TaskNode, ran: list) -> dict[str, Any]:
    """The node's input values; those of ports declared `stream=True` as lazy `Chunks` views
    (read from the cache entry chunk by chunk), the others whole."""
    declared = env.factory.node_class(task).inputs
    values: dict[str, Any] = {}
    for port, source in task.inputs.items():
        stream = port in declared and declared[port].stream
        if isinstance(source, Literal):
            values[port] = as_input(source.value, stream)
        elif isinstance(source, Edge):
            values[port] = as_input(input_value(env, task, port, source, ran, stream), stream)
    return values


def as_input(value: Any, stream: bool) -> Any:
    """A streamed port gets a Chunks view (over an array in memory if need be); any other
    port gets a streamed value read whole."""
    if value is None:
        return None
    if stream:
        return Chunks.of(value)
    return materialise(value)


def input_value(env: ExecEnv, task: TaskNode, port: str, source: Edge, ran: list, stream: bool = False) -> Any:
    up = env.plan.nodes[source.node]
    if env.run_memo is not None:
        outputs = env.run_memo.get(up.id)
        if outputs is not None and source.port in outputs:  # (a streamed output is in the cache only)
            return outputs[source.port]
    if env.plan.reads_in_process(source):
        outputs = IN_PROCESS.get_or_compute((up.key, env.plan.device), lambda: compute_in_process(env, up, ran))
        return outputs[source.port]
    port_type = env.factory.node_class(up).outputs[source.port].port_type
    try:
        if stream and env.plan.stream and streamable(port_type):
            return env.cache.open_chunks(up.key, source.port, port_type)
        return env.cache.load(up.key, source.port, port_type)
    except CacheMiss as exc:
        raise InputLost(task.id, task.type, f"input '{port}' ({source}): {exc}", up.id, getattr(exc, "reason", str(exc)),
                        getattr(exc, "moved_to", None)) from None
    except Exception as exc:
        raise NodeFailure(task.id, task.type, f"cannot load input '{port}' ({source}, cache entry {up.key[:12]}) "
                          f"from {env.cache.url}: {type(exc).__name__}: {exc}") from None


def compute_in_process(env: ExecEnv, task: TaskNode, ran: list) -> Mapping[str, Any]:
    outputs, seconds = run_node(env, task, gather_inputs(env, task, ran))
    ran.append((task.id, task.type, seconds))
    env.emit("finished", task, {"seconds": seconds})
    return outputs


def run_node(env: ExecEnv, task: TaskNode, inputs: dict[str, Any], writer: Any = None) -> tuple[dict[str, Any], float]:
    """Call the node's run() with a fresh context and scratch folder; validate its outputs.

    A streaming run (a generator) is drained here: with `writer`, its streamed outputs go to
    the cache entry chunk by chunk and are left out of the result; without, they are
    collected into whole arrays."""
    try:
        node = env.factory.make(task)
    except NodeFailure:
        raise
    except Exception as exc:  # a Params model or __init__ that rejects what the client accepted
        raise NodeFailure(task.id, task.type, f"cannot create the node: {type(exc).__name__}: {exc}",
                          traceback_tail(exc), user_error=False) from None
    cls = type(node)
    for port, decl in cls.inputs.items():
        if decl.optional and port not in inputs:
            inputs[port] = None
    if env.cancelled():
        raise NodeFailure(task.id, task.type, "the run was cancelled before it started", cancelled=True)
    env.emit("started", task, {})
    pin_threads()  # the same thread pools on every executor: the same bytes under one key
    ctx = NodeContext(
        node_id=task.id, node_type=task.type, key=task.key, device=env.plan.device,
        seed=task.seed, emit=_context_emitter(env, task), workflow_dir=env.workflow_dir,
        cancel_requested=env.cancelled,
    )
    try:
        start = time.perf_counter()
        streamed: set[str] = set()
        try:
            result = node.run(ctx, **inputs)
            if inspect.isgenerator(result):
                result, streamed = drain_stream(task, cls, result, writer, ctx.check_cancelled)
        except NodeFailure:
            raise
        except RunCancelled as exc:  # (a streaming node stops between chunks)
            raise NodeFailure(task.id, task.type, str(exc) or "cancelled", cancelled=True) from None
        except NodeError as exc:
            raise NodeFailure(task.id, task.type, str(exc)) from None
        except CacheMiss as exc:  # a streamed input's entry failed verification while being read
            raise lost_input(env, task, exc) from None
        except Exception as exc:
            raise NodeFailure(task.id, task.type, f"{type(exc).__name__}: {exc}", traceback_tail(exc), user_error=False) from None
        seconds = time.perf_counter() - start
    finally:
        ctx.remove_scratch()
    return check_outputs(task, cls, result, streamed), seconds


def drain_stream(task: TaskNode, cls: type[Node], steps: Iterator[Any], writer: Any,
                 check_cancelled: Callable[[], None] = lambda: None) -> tuple[dict[str, Any], set[str]]:
    """Run a streaming node's generator to its end. Each yield is a dict: the next chunk of
    streamed outputs (checked against the port type, then appended to the entry through
    `writer`, or collected when it is None) and, once, whole values of the other outputs.
    Returns the whole outputs and the streamed ports (written to the entry, or not kept:
    `task.persistent_ports` leaves them out). A cancelled run stops
    between chunks (`check_cancelled` raises RunCancelled)."""
    declared = cls.outputs
    whole: dict[str, Any] = {}
    sinks: dict[str, Any] = {}  # port -> the entry's OutputStream, or a list of chunks
    for n, step in enumerate(steps):
        check_cancelled()
        if not isinstance(step, Mapping):
            raise NodeFailure(task.id, task.type, f"run() yielded {type(step).__name__} (step {n}), expected a dict "
                              f"of output chunks")
        for port, value in step.items():
            if port not in declared:
                raise NodeFailure(task.id, task.type, f"run() yielded undeclared output {port!r}; declared outputs "
                                  f"are {sorted(declared)}")
            port_type = declared[port].port_type
            if not declared[port].stream:
                if port in whole:
                    raise NodeFailure(task.id, task.type, f"run() yielded output {port!r} twice; only outputs "
                                      "declared stream=True come in chunks")
                whole[port] = value
                continue
            try:
                chunk = port_type.validate(value)
            except TypeValidationError as exc:
                raise NodeFailure(task.id, task.type, f"chunk {n} of output '{port}' is not a valid "
                                  f"{port_type.name}: {exc}") from None
            if port not in sinks:
                if writer is None:
                    sinks[port] = []
                elif port in task.persistent_ports:
                    sinks[port] = writer.stream(port, port_type)
                else:  # nothing reads it and the entry is dropped after use (TaskNode.drop_after_use)
                    sinks[port] = _Discard()
            try:  # (the node may reuse its buffer once resumed: a collected chunk is a copy)
                sinks[port].append(np.array(chunk) if writer is None else chunk)
            except ValueError as exc:
                raise NodeFailure(task.id, task.type, f"chunk {n} of output '{port}': {exc}") from None
    missing = [p for p, port in declared.items() if port.stream and p not in sinks and p not in whole]
    if missing:
        raise NodeFailure(task.id, task.type, f"run() yielded no chunk of streamed output(s) {missing}")
    for port, sink in sinks.items():
        if isinstance(sink, list):
            whole[port] = np.concatenate(sink)
        else:
            sink.close()
    return whole, {p for p, sink in sinks.items() if not isinstance(sink, list)}


class _Discard:
    """Where chunks of a streamed output that is not kept go (checked, then forgotten)."""

    def append(self, chunk: Any) -> None:
        pass

    def close(self) -> None:
        pass


def lost_input(env: ExecEnv, task: TaskNode, exc: CacheMiss) -> NodeFailure:
    """A cache miss while the node ran: the entry of a streamed input failed verification or
    vanished (InputLost: its producer runs again), or something else went wrong."""
    key = getattr(exc, "key", None)
    for port, source in task.inputs.items():
        if isinstance(source, Edge) and env.plan.nodes[source.node].key == key:
            return InputLost(task.id, task.type, f"input '{port}' ({source}): {exc}", source.node,
                             getattr(exc, "reason", str(exc)), getattr(exc, "moved_to", None))
    return NodeFailure(task.id, task.type, f"{type(exc).__name__}: {exc}", traceback_tail(exc), user_error=False)


class NodeContext(RunContext):
    """The RunContext the engine hands to nodes: its scratch folder is created on first use
    (most nodes never touch it) and removed when the node returns."""

    _scratch: Path | None = None

    @property
    def tmp_dir(self) -> Path:
        if self._scratch is None:
            self._scratch = scratch_dir(self.node_id)
        return self._scratch

    @tmp_dir.setter
    def tmp_dir(self, value: Path) -> None:
        pass  # the dataclass __init__ assigns the default; the folder is made lazily instead

    def remove_scratch(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


_scratch_root: Path | None = None
_scratch_lock = threading.Lock()


def scratch_dir(node_id: str) -> Path:
    """A fresh empty folder for one node run, under one per-process folder removed at exit."""
    global _scratch_root
    with _scratch_lock:
        if _scratch_root is None:
            _scratch_root = Path(tempfile.mkdtemp(prefix="graphrun-"))
            atexit.register(shutil.rmtree, _scratch_root, True)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in node_id)[:40]
    path = _scratch_root / f"{safe}-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    return path


def check_outputs(task: TaskNode, cls: type[Node], result: Any, streamed: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    """Every declared output present and valid (those in `streamed` were checked chunk by chunk)."""
    declared = {p: d for p, d in cls.outputs.items() if p not in streamed}
    if not isinstance(result, Mapping):
        raise NodeFailure(task.id, task.type, f"run() returned {type(result).__name__}, expected a dict with the "
                          f"outputs {sorted(declared)}")
    missing = [p for p in declared if p not in result]
    unknown = [p for p in result if p not in declared]
    if missing or unknown:
        parts = ([f"missing output(s) {missing}"] if missing else []) + ([f"undeclared output(s) {unknown}"] if unknown else [])
        raise NodeFailure(task.id, task.type, f"run() returned {'; '.join(parts)}; declared outputs are {sorted(declared)}")
    checked = {}
    for port, decl in declared.items():
        port_type: PortType = decl.port_type
        try:
            checked[port] = port_type.validate(result[port])
        except TypeValidationError as exc:
            raise NodeFailure(task.id, task.type, f"output '{port}' is not a valid {port_type.name}: {exc}") from None
    return checked


def persist(env: ExecEnv, task: TaskNode, cls: type[Node], writer: Any, outputs: Mapping[str, Any], seconds: float,
            files: dict[str, dict]) -> None:
    if (task.output_files or task.output_folders) and env.cache.has(task.key):
        # Re-run because an output file or folder went missing or was edited: the committed
        # entry records the old one's hash, so replace it rather than keep it.
        env.cache.delete(task.key)
    try:
        for port in task.persistent_ports:
            if port in outputs:  # (streamed ones are written already)
                writer.save(port, cls.outputs[port].port_type, outputs[port])
        writer.commit({
            "node_id": task.id, "node_type": task.type, "params": task.params, "seconds": seconds,
            "outputs": {p: cls.outputs[p].port_type.name for p in task.persistent_ports}, "files": files,
        })
    except TypeValidationError as exc:
        raise NodeFailure(task.id, task.type, f"cannot store its outputs: {exc}") from None
    except Exception as exc:
        raise NodeFailure(task.id, task.type, f"cannot write its outputs to the cache {env.cache.url}: "
                          f"{type(exc).__name__}: {exc}", traceback_tail(exc), user_error=False) from None


def _context_emitter(env: ExecEnv, task: TaskNode) -> Callable[[str, Mapping[str, Any]], None]:
    last = [0.0]

    def emit(kind: str, data: Mapping[str, Any]) -> None:
        if kind == "progress":
            now = time.monotonic()
            if now - last[0] < PROGRESS_INTERVAL_S and data.get("i") != data.get("n"):
                return
            last[0] = now
        env.emit(kind, task, dict(data))

    return emit


def traceback_tail(exc: BaseException, frames: int = 3) -> str:
    """The last few frames of the node's own code: enough to find the line, short enough to read."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next  # the engine's own frames say nothing about the node's bug
    return "".join(traceback.format_exception(type(exc), exc, tb, limit=-frames)).rstrip()
