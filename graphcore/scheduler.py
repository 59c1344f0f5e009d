"""The scheduler: decide what to run, run it in dependency order, account for every node.

    keys = compute_keys(graph)             content addresses
    cached = committed keys (+ intact output files)     -> 'cached'
    the rest run as soon as their upstream is done      -> 'ran' | 'failed' | 'skipped'

Persisted nodes are tasks handed to an executor (threads here, or dask workers); in-process
(transient) nodes are not tasks of their own: each task computes the ones it reads (see
execute.py), so their readiness is that of the persisted nodes they read. A failure marks
every descendant 'skipped' and lets independent branches finish; what completed stays
committed, so a re-run resumes from the cache.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from . import heap
from .cache import CacheError, DamagedEntry
from .events import Event, EventBus, Listener
from .execute import InputLost, NodeFailure, NodeResult, traceback_tail
from .executors import Executor, make_executor
from .keys import compute_keys
from .outputs import stale_output, sweep_part_files
from .plan import RunPlan, build_plan
from .registry import PLUGINS_ENV
from .types import streamable
from .workflow import BoundGraph, Edge

log = logging.getLogger(__name__)

STATUSES = ("cached", "ran", "failed", "skipped", "cancelled")
MAX_TRIES = 3  # times a task is sent back because an input's cache entry was lost
REMOTE_LOOKUPS = 16  # concurrent cache lookups on remote stores
_LIVE_KINDS = frozenset({"started", "progress", "log", "finished", "retrying"})
_TERMINAL_KINDS = frozenset({"cached", "finished", "failed", "skipped", "cancelled"})


@dataclasses.dataclass
class NodeErrorInfo:
    node_id: str
    node_type: str
    message: str
    detail: str = ""  # a short traceback tail for unexpected exceptions; empty for NodeError
    user_error: bool = True

    def __str__(self) -> str:
        return f"node '{self.node_id}' ({self.node_type}): {self.message}"


@dataclasses.dataclass
class RunReport:
    run_id: str
    status: dict[str, str]  # node id -> cached | ran | failed | skipped | cancelled
    keys: dict[str, str]
    seconds: dict[str, float]  # compute time of the nodes that ran
    errors: list[NodeErrorInfo]
    files: dict[str, dict[str, str]]  # node id -> OutputFile parameter -> absolute path
    elapsed: float
    graph: BoundGraph = dataclasses.field(repr=False)
    cache: Any = dataclasses.field(repr=False)

    @property
    def ok(self) -> bool:
        return not self.errors and all(s in ("cached", "ran") for s in self.status.values())

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for v in self.status.values() if v == s) for s in STATUSES}

    def ran(self) -> set[str]:
        return {n for n, s in self.status.items() if s == "ran"}

    @property
    def cancelled(self) -> bool:
        """The run was cancelled before every node was done (what finished stays cached)."""
        return any(s == "cancelled" for s in self.status.values())

    def load_output(self, node_id: str, port: str) -> Any:
        """An output value, read from the cache."""
        bound = self.graph.nodes[node_id]
        if port not in bound.cls.outputs:
            raise KeyError(f"node '{node_id}' ({bound.cls.type_name}) has no output {port!r}")
        port_type = bound.cls.outputs[port].port_type
        from .plan import is_in_process

        if is_in_process(bound.cls) or not port_type.persistent:
            raise ValueError(f"output '{node_id}.{port}' is an in-memory value and is never stored in the cache")
        return self.cache.load(self.keys[node_id], port, port_type)

    def open_output(self, node_id: str, port: str) -> Any:
        """Like `load_output`, but a streamable array comes as a lazy `stream.Chunks` view of
        its entry: a preview of a long clip reads only the frames it shows."""
        value_type = self.graph.nodes[node_id].cls.outputs.get(port) if node_id in self.graph.nodes else None
        if value_type is None or not streamable(value_type.port_type):
            return self.load_output(node_id, port)  # (also its checks and errors)
        from .plan import is_in_process

        if is_in_process(self.graph.nodes[node_id].cls) or not value_type.port_type.persistent:
            return self.load_output(node_id, port)
        return self.cache.open_chunks(self.keys[node_id], port, value_type.port_type)


def run_graph(
    graph: BoundGraph,
    *,
    cache: Any,
    executor: str | Executor = "local",
    jobs: int = 1,
    listeners: Iterable[Listener] = (),
    device: str = "cpu",
    plugin_paths: Iterable[str] = (),
    stream: bool = True,
    cancel: threading.Event | None = None,
    keep_streamed: bool = True,
) -> RunReport:
    """Run a validated graph: cached nodes skipped, the rest in dependency order.

    Setting `cancel` stops the run: no further node starts, and a node running in this process
    stops at its next progress point (RunContext.progress raises RunCancelled). Those nodes are
    'cancelled'; what finished before stays committed, so running again resumes from there.
    `stream` False holds every value whole in memory (a baseline: the same keys and values).

    `keep_streamed` False bounds the disk a long clip takes: the entry of a node with streamed
    outputs (frames, flow, masks: megabytes a frame) that only feeds this run's nodes is
    deleted once they have all committed, and its streamed outputs that nothing reads are never
    written. A later run whose readers are all cached does not run it again ("not needed");
    one that needs it again runs it again."""
    heap.configure_malloc()  # a long streamed run's resident set stays flat (graphcore/heap.py)
    run_id = uuid.uuid4().hex[:12]
    keys = compute_keys(graph, run_salt=uuid.uuid4().hex)
    plan = build_plan(graph, keys, run_id=run_id, device=device, plugin_paths=worker_plugin_paths(plugin_paths),
                      stream=stream, keep_streamed=keep_streamed)
    ex = make_executor(executor, jobs) if isinstance(executor, str) else executor
    if cancel is not None:
        ex.cancelled = cancel.is_set
    return Scheduler(graph, plan, cache, EventBus(listeners), cancel).run(ex)


def worker_plugin_paths(plugin_paths: Iterable[str]) -> tuple[str, ...]:
    """--plugins and $GRAPHRUN_PLUGINS as absolute paths, for workers that build their own registry."""
    env = [p for p in os.environ.get(PLUGINS_ENV, "").split(os.pathsep) if p.strip()]
    out: list[str] = []
    for p in [*env, *plugin_paths]:
        path = os.path.abspath(os.path.expanduser(str(p)))
        if path not in out:
            out.append(path)
    return tuple(out)


_bookkeeping: list[threading.Thread] = []


def touch_in_background(cache: Any, keys: list[str]) -> None:
    """Record the cache hits' last use (for gc) off the critical path: a re-run that finds
    everything cached should not wait for a thousand small writes. The thread is not a
    daemon, so the interpreter finishes it before exiting."""
    if not keys:
        return

    def touch_all() -> None:
        for key in keys:
            cache.touch(key)

    thread = threading.Thread(target=touch_all, name="graphrun-touch")
    thread.start()
    _bookkeeping.append(thread)
    _bookkeeping[:] = [t for t in _bookkeeping if t.is_alive()]


def wait_for_bookkeeping(timeout: float | None = None) -> None:
    """Wait for background cache bookkeeping (e.g. before deleting a cache folder)."""
    for thread in list(_bookkeeping):
        thread.join(timeout)


class Scheduler:
    def __init__(self, graph: BoundGraph, plan: RunPlan, cache: Any, bus: EventBus, cancel: threading.Event | None = None) -> None:
        self.graph, self.plan, self.cache, self.bus = graph, plan, cache, bus
        self.cancel = cancel
        self.order = graph.order
        self.status: dict[str, str] = {}
        self.seconds: dict[str, float] = {}
        self.errors: list[NodeErrorInfo] = []
        self.children: dict[str, list[str]] = {n: [] for n in self.order}
        for n in self.order:
            for up in plan.nodes[n].upstream():
                self.children[up].append(n)
        self._terminal: set[str] = set()
        self._gate = threading.Lock()
        self.stale: dict[str, str] = {}  # node id -> why its cache hit was refused
        self.damaged: dict[str, tuple[str, str | None]] = {}  # node id -> (why, quarantine folder)
        self.restored: dict[str, str] = {}  # node id -> why its output files were written from the cache
        self.tries: dict[str, int] = {}  # node id -> times its task was sent back for a lost input
        self.unneeded: set[str] = set()  # not cached, but nothing of this run reads them (not_needed)

    # --- events ---

    def emit(self, kind: str, node_id: str | None = None, **data: Any) -> None:
        node_type = self.plan.nodes[node_id].type if node_id is not None else None
        self.deliver(Event(kind, self.plan.run_id, node_id, node_type, data=data))

    def deliver(self, event: Event) -> None:
        """Every event passes here, from any thread or from dask workers. Live events of a
        node already finished are dropped (a transient node computed again on a second
        worker, or a late message from a worker), so each node ends exactly once."""
        with self._gate:
            if event.node_id is not None:
                if event.kind in _LIVE_KINDS and event.node_id in self._terminal:
                    return
                if event.kind in _TERMINAL_KINDS:
                    self._terminal.add(event.node_id)
        self.bus.emit(event)

    # --- planning ---

    def effective_upstream(self, node_id: str) -> set[str]:
        """The persisted nodes a task for `node_id` reads, looking through in-process nodes."""
        out: set[str] = set()
        stack = [node_id]
        seen = set()
        while stack:
            nid = stack.pop()
            for source in self.plan.nodes[nid].inputs.values():
                if not isinstance(source, Edge) or (source.node, source.port) in seen:
                    continue
                seen.add((source.node, source.port))
                if self.plan.reads_in_process(source):
                    stack.append(source.node)
                    out.update(u for u in [source.node] if not self.plan.nodes[u].in_process)
                else:
                    out.add(source.node)
        return out

    def in_process_closure(self, node_id: str) -> set[str]:
        """The in-process nodes a task for `node_id` may have to compute."""
        out: set[str] = set()
        stack = [node_id]
        while stack:
            for source in self.plan.nodes[stack.pop()].inputs.values():
                if isinstance(source, Edge) and self.plan.reads_in_process(source) and source.node not in out:
                    out.add(source.node)
                    stack.append(source.node)
        return out

    def is_cached(self, node_id: str) -> bool:
        """Committed, its ref verified, and every file or folder it wrote still as it left it
        (otherwise the reason is kept, and reported when the node is queued to run again)."""
        task = self.plan.nodes[node_id]
        found = self.cache.lookup(task.key)
        if found.ref is None:
            if found.damage:
                self.damaged[node_id] = (found.damage, found.moved_to)
            return False
        lacking = sorted(set(task.persistent_ports) - set(found.ref.get("outputs") or ()))
        if lacking:  # a run that did not keep streamed values committed it, then stopped before deleting it
            self.cache.delete(task.key)  # (the ref goes first: nothing half-deleted is served)
            self.stale[node_id] = f"its cache entry lacks output(s) {lacking} (written by a run that kept only what it read)"
            return False
        if task.output_files or task.output_folders:
            records = found.ref.get("files") or {}
            reason = stale_output(records, task.output_files, task.output_folders)
            if reason is not None and records and all(r.get("stored") for r in records.values()):
                reason = self.restore_outputs(node_id, records, reason)
            if reason is not None:
                self.stale[node_id] = reason
                return False
        return True

    def restore_outputs(self, node_id: str, records: dict[str, dict], why: str) -> str | None:
        """Write the output files an entry holds (a dask worker made them) where they belong;
        None when done, else why the node must run again."""
        task = self.plan.nodes[node_id]
        try:
            for param, record in records.items():
                self.cache.restore_files(task.key, param, record["path"])
        except (CacheError, OSError) as exc:
            if isinstance(exc, DamagedEntry):
                self.damaged[node_id] = (exc.reason, exc.moved_to)
            return f"{why}, and it cannot be restored from the cache ({exc})"
        self.restored[node_id] = why
        return None

    def cached_nodes(self, node_ids: list[str]) -> set[str]:
        """Which nodes are committed. On a remote cache (s3://, ...) each lookup is a round
        trip, so they are made concurrently; on a local disk a plain loop is fastest."""
        url = str(getattr(self.cache, "url", ""))
        if "://" not in url or url.startswith("file://") or len(node_ids) < 2:
            return {n for n in node_ids if self.is_cached(n)}
        with ThreadPoolExecutor(REMOTE_LOOKUPS, thread_name_prefix="graphrun-lookup") as pool:
            return {n for n, hit in zip(node_ids, pool.map(self.is_cached, node_ids)) if hit}

    # --- running ---

    def sweep(self) -> None:
        """What earlier runs on this host left when they were killed: unfinished cache
        attempts, temp files, `.part` files next to this run's output files."""
        try:
            report = self.cache.sweep_dead_writers()
            files = [p for t in self.plan.nodes.values() for p in t.output_files.values()]
            count, size = sweep_part_files(files)
            report.part_files += count
            report.bytes += size
        except Exception as exc:  # housekeeping never fails a run: a read-only cache still serves
            log.debug("could not sweep the cache %s: %s", self.cache.url, exc)
            return
        if report.total:
            self.emit("log", None, message=f"removed what interrupted runs left: {report.describe()} "
                                           f"({report.bytes / 2**20:.1f} MiB)")

    def run(self, executor: Executor) -> RunReport:
        start = time.perf_counter()
        executor.start(self.graph, self.plan, self.cache, self.deliver)  # fail early: e.g. no dask scheduler
        try:
            self.sweep()
            to_run, closures = self.announce()
            self.drive(executor, to_run)
        finally:
            executor.close()
        self.settle_in_process(to_run, closures)
        elapsed = time.perf_counter() - start
        plan = self.plan
        report = RunReport(
            run_id=plan.run_id, status={n: self.status[n] for n in self.order},
            keys={n: t.key for n, t in plan.nodes.items()}, seconds=self.seconds, errors=self.errors,
            files={n: {**t.output_files, **t.output_folders} for n, t in plan.nodes.items()
                   if t.output_files or t.output_folders},
            elapsed=elapsed, graph=self.graph, cache=self.cache,
        )
        self.emit("run_finished", ok=report.ok, seconds=elapsed, counts=report.counts())
        return report

    def announce(self) -> tuple[list[str], dict[str, set[str]]]:
        """Decide what runs; emit run_started and each node's queued/cached event. Returns the
        persisted nodes to run and, for each, the in-process nodes its task may compute."""
        plan = self.plan
        persisted = [n for n in self.order if not plan.nodes[n].in_process]
        cached = self.cached_nodes(persisted)
        cached |= self.not_needed(cached)
        to_run = [n for n in persisted if n not in cached]
        closures = {n: self.in_process_closure(n) for n in to_run}
        needed = set().union(*closures.values()) if to_run else set()
        self.emit("run_started", nodes=list(self.order), keys={n: t.key for n, t in plan.nodes.items()},
                  to_run=[n for n in self.order if n in needed or n in closures])
        hits = []
        for n in self.order:
            if n in closures or n in needed:
                if n in self.damaged:
                    reason, moved_to = self.damaged[n]
                    self.emit("quarantined", n, reason=reason, moved_to=moved_to, key=plan.nodes[n].key)
                self.emit("queued", n)
                if n in self.stale:
                    self.emit("log", n, message=f"running again: {self.stale[n]}")
            else:
                if n in self.restored:  # (before `cached`, after which live events are dropped)
                    self.emit("log", n, message=f"{self.restored[n]}: written again from its cache entry")
                if n in self.unneeded:  # (before `cached`, after which live events are dropped)
                    self.emit("log", n, message="not needed: every node that reads it is cached (its streamed "
                                                "values were not kept)")
                self.status[n] = "cached"
                self.emit("cached", n)
                if not plan.nodes[n].in_process and n not in self.unneeded:
                    hits.append(plan.nodes[n].key)
        touch_in_background(self.cache, hits)
        return to_run, closures

    def not_needed(self, cached: set[str]) -> set[str]:
        """Nodes whose entries are dropped after use (TaskNode.drop_after_use), not cached,
        whose readers are all cached or not needed themselves: nothing of this run reads them."""
        out: set[str] = set()
        for n in reversed(self.order):
            task = self.plan.nodes[n]
            if task.drop_after_use and n not in cached and self.children[n] and all(
                    c in cached or c in out for c in self.children[n]):
                out.add(n)
        self.unneeded = out
        return out

    def drop_if_used(self, node_id: str) -> None:
        """Delete the entry of a node that ran here and is not kept, once each node that reads
        it has committed (one that failed keeps it: running again resumes from there)."""
        task = self.plan.nodes[node_id]
        if not task.drop_after_use or self.status.get(node_id) != "ran":
            return
        if all(self.status.get(c) in ("ran", "cached") for c in self.children[node_id]):
            self.cache.delete(task.key)

    def drive(self, executor: Executor, to_run: list[str]) -> None:
        """Submit each node once its upstream is done; settle every outcome."""
        pending = set(to_run)
        deps = {n: self.effective_upstream(n) for n in to_run}
        waiting = {n: deps[n] & pending for n in to_run}
        readers: dict[str, int] = {}  # for each node, the tasks still to read its outputs
        for n in to_run:
            for u in deps[n]:
                readers[u] = readers.get(u, 0) + 1

        def done_with(node_id: str) -> None:
            """Release in-memory outputs nobody still needs."""
            pending.discard(node_id)
            if readers.get(node_id, 0) == 0:
                executor.release(node_id)
            for u in deps.get(node_id, ()):
                readers[u] -= 1
                if readers[u] == 0 and u not in pending:
                    executor.release(u)
                    self.drop_if_used(u)

        ready = [n for n in to_run if not waiting[n]]
        in_flight: set[str] = set()
        while ready or in_flight:
            if self.cancel is not None and self.cancel.is_set():
                ready = []  # nothing new starts; what runs stops at its next progress point
                if not in_flight:
                    break
            for n in ready:
                in_flight.add(n)
                executor.submit(n)
            ready = []
            node_id, outcome = executor.next_completed()
            in_flight.discard(node_id)
            if isinstance(outcome, InputLost) and self.tries.get(node_id, 0) < MAX_TRIES:
                # An input's entry turned out damaged (now in quarantine) or vanished: run
                # its producer again, then this node; nothing is marked failed.
                self.tries[node_id] = self.tries.get(node_id, 0) + 1
                up = outcome.upstream
                if self.status.get(up) == "cached" and up not in pending:
                    self.revive(up, outcome)
                    pending.add(up)
                    deps[up] = self.effective_upstream(up)
                    waiting[up] = deps[up] & pending
                    for u in deps[up]:
                        readers[u] = readers.get(u, 0) + 1
                    readers.setdefault(up, 0)
                    for child in self.dependents_in(up, pending):
                        if child not in in_flight and child != node_id:
                            waiting[child].add(up)
                    if not waiting[up]:
                        ready.append(up)
                if up in pending:
                    waiting[node_id] = {up}
                else:  # recomputed in the meantime: read it again
                    ready.append(node_id)
                continue
            if isinstance(outcome, NodeResult):
                try:
                    self.record_success(outcome)
                except (CacheError, OSError) as exc:  # its output files could not be written here
                    outcome = NodeFailure(node_id, self.plan.nodes[node_id].type,
                                          f"cannot write its output files from the cache: {exc}")
            if isinstance(outcome, NodeResult):
                done_with(node_id)
                heap.trim()  # what the node freed goes back to the system before the next starts
                for child in self.dependents_in(node_id, pending):
                    waiting[child].discard(node_id)
                    if not waiting[child] and child not in in_flight:
                        ready.append(child)
            elif isinstance(outcome, NodeFailure) and outcome.cancelled:
                self.record_cancelled(outcome.node_id, outcome.message)
                if node_id != outcome.node_id:
                    self.record_cancelled(node_id, outcome.message)
                done_with(node_id)
            else:
                for n in self.record_failure(node_id, outcome):
                    if n in pending and n not in in_flight:
                        done_with(n)  # skipped: it will never be submitted
                if node_id in pending:
                    done_with(node_id)
        for n in [n for n in to_run if n in pending]:  # left unstarted by a cancel
            self.record_cancelled(n, "the run was cancelled before it started")

    def settle_in_process(self, to_run: list[str], closures: dict[str, set[str]]) -> None:
        """In-process nodes that were needed but did not run here: their value was already in
        this process's memory ('cached'), or every task that reads them was skipped."""
        needed = set().union(*closures.values()) if closures else set()
        for n in sorted(needed - set(self.status), key=self.order.index):
            if any(self.status.get(r) == "ran" for r in to_run if n in closures[r]):
                self.status[n] = "cached"
                self.emit("cached", n)
            elif self.cancel is not None and self.cancel.is_set():
                self.record_cancelled(n, "the run was cancelled before it started")
            else:
                self.status[n] = "skipped"
                self.emit("skipped", n, error="nothing that reads it ran")

    def dependents_in(self, node_id: str, pending: set[str]) -> list[str]:
        """Pending tasks that read `node_id`, directly or through in-process nodes."""
        out, stack, seen = [], [node_id], set()
        while stack:
            for child in self.children[stack.pop()]:
                if child in seen:
                    continue
                seen.add(child)
                if self.plan.nodes[child].in_process:
                    stack.append(child)
                elif child in pending:
                    out.append(child)
        return out

    def revive(self, node_id: str, lost: InputLost) -> None:
        """A node reported `cached` whose entry could not be read after all: it runs again."""
        with self._gate:
            self._terminal.discard(node_id)
        self.status.pop(node_id, None)
        if lost.moved_to:
            self.emit("quarantined", node_id, reason=lost.reason, moved_to=lost.moved_to, key=self.plan.nodes[node_id].key)
        else:
            self.emit("log", node_id, message=f"running again: {lost.reason}")
        self.emit("queued", node_id)

    def record_success(self, result: NodeResult) -> None:
        task = self.plan.nodes[result.node_id]
        for param, record in result.files.items():  # written on a worker: put where the user asked
            if record.get("stored"):
                self.cache.restore_files(task.key, param, record["path"])
        for node_id, _, seconds in result.ran:
            self.status[node_id] = "ran"
            self.seconds[node_id] = self.seconds.get(node_id, 0.0) + seconds
            self.emit("finished", node_id, seconds=seconds)  # dropped if the live one arrived

    def record_cancelled(self, node_id: str, message: str) -> None:
        if self.status.get(node_id) in ("ran", "failed", "cancelled"):
            return
        self.status[node_id] = "cancelled"
        self.emit("cancelled", node_id, error=message)

    def record_failure(self, task_id: str, exc: BaseException) -> list[str]:
        """Mark the failed node and skip its descendants; returns the nodes now settled."""
        if isinstance(exc, NodeFailure):
            culprit = exc.node_id
            info = NodeErrorInfo(exc.node_id, exc.node_type, exc.message, exc.detail, exc.user_error)
        else:  # the executor itself failed (a worker died, a value could not be sent)
            culprit = task_id
            info = NodeErrorInfo(task_id, self.plan.nodes[task_id].type, f"{type(exc).__name__}: {exc}",
                                 traceback_tail(exc), user_error=False)
        settled = []
        if self.status.get(culprit) != "failed":
            self.status[culprit] = "failed"
            self.errors.append(info)
            self.emit("failed", culprit, error=info.message, detail=info.detail)
            settled.append(culprit)
        stack = [culprit]
        while stack:
            for child in self.children[stack.pop()]:
                if self.status.get(child) in ("failed", "skipped"):
                    continue
                self.status[child] = "skipped"
                self.emit("skipped", child, error=f"upstream node '{culprit}' failed")
                settled.append(child)
                stack.append(child)
        if task_id != culprit and task_id not in settled and self.status.get(task_id) != "failed":
            self.status[task_id] = "skipped"
            self.emit("skipped", task_id, error=f"upstream node '{culprit}' failed")
            settled.append(task_id)
        return settled
