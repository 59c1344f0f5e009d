"""Runs started from the editor: a queue that runs them one at a time, each run the engine's
run_graph in a worker thread, its events folded into one status per node that the page shows
while the run goes on.

The Gradio run handler is a generator: it puts a `Run` in the `RunQueue`, yields its place in
the queue while it waits, then `Run.snapshot()` a few times a second until the run ends.
Gradio streams each yield to the browser, where the canvas repaints the node badges (queued,
cached, running i/n, done, failed, skipped, cancelled). Cancel sets the run's cancel event:
the engine stops the running node at its next progress point and starts nothing more; what
finished stays in the cache.
"""
from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

from graphcore.events import Event
from graphcore.plan import is_in_process
from graphcore.scheduler import RunReport, run_graph
from graphcore.workflow import BoundGraph

# Event kind -> the node state the editor shows.
STATE_OF_EVENT = {
    "queued": "queued",
    "cached": "cached",
    "started": "running",
    "progress": "running",
    "finished": "done",
    "failed": "failed",
    "skipped": "skipped",
    "cancelled": "cancelled",
}
LOG_LIMIT = 500


@dataclasses.dataclass
class NodeState:
    state: str = "pending"
    i: int | None = None
    n: int | None = None
    message: str = ""
    seconds: float | None = None
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, "")}


_run_ids = itertools.count(1)


class Run:
    """One run in a background thread. Thread-safe: the engine's listener writes, the page reads."""

    def __init__(self, graph: BoundGraph, *, cache: Any, plugin_paths: list[str], device: str = "cpu",
                 start: bool = True, label: str = "", owner: str = "") -> None:
        self.graph = graph
        self.id = next(_run_ids)
        self.label = label or "untitled"
        self.owner = owner  # the session that asked for it: only it may cancel it
        self.nodes: dict[str, NodeState] = {n: NodeState() for n in graph.order}
        self.keys: dict[str, str] = {}  # node id -> cache key, from the run_started event
        self.log: list[str] = []
        self.report: RunReport | None = None
        self.error: str = ""  # a failure of the run itself (not of a node)
        self.queued_at = self.started = time.time()
        self.cancel_event = threading.Event()
        self.was_started = False  # False for a run cancelled before its turn came
        self._lock = threading.Lock()
        self._version = 0
        self._began = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._work, args=(cache, list(plugin_paths), device), name="talkgraph-ui-run", daemon=True,
        )
        if start:  # (a RunQueue starts it when its turn comes; tests feed events themselves)
            self.start()

    def start(self) -> None:
        with self._lock:
            if self._began.is_set():  # cancelled while it waited: it never runs
                return
            self.was_started = True  # before _began: a page waiting on _began reads it next
            self._began.set()
        self.started = time.time()
        self._thread.start()

    def cancel(self) -> None:
        """Stop the run: if it has not started it never will; if it runs, the engine stops its
        running node at the next progress point and starts nothing more."""
        self.cancel_event.set()
        with self._lock:
            if self._began.is_set():
                return
            for state in self.nodes.values():
                state.state = "cancelled"
            self._append_log("cancelled before it started")
            self._version += 1
            self._began.set()
        self._done.set()

    # --- the engine side ---

    def _work(self, cache: Any, plugin_paths: list[str], device: str) -> None:
        try:
            self.report = run_graph(self.graph, cache=cache, listeners=[self.on_event], plugin_paths=plugin_paths,
                                    device=device, cancel=self.cancel_event)
        except Exception as exc:  # e.g. an input file vanished between validation and keys
            self.error = str(exc) or type(exc).__name__
            with self._lock:
                self.log.append(f"run failed: {self.error}")
                self._version += 1
        finally:
            self._done.set()

    def on_event(self, event: Event) -> None:
        with self._lock:
            self._version += 1
            if event.kind == "run_started":
                self.keys = dict(event.data.get("keys") or {})
                return
            if event.kind == "log":
                self._append_log(f"[{event.node_id}] {event.data.get('message', '')}")
                return
            state = STATE_OF_EVENT.get(event.kind)
            if state is None or event.node_id not in self.nodes:
                if event.kind == "run_finished":
                    self._append_log(f"run finished in {event.data.get('seconds', 0):.2f}s: {event.data.get('counts', {})}")
                return
            node = self.nodes[event.node_id]
            node.state = state
            data = event.data or {}
            if event.kind == "progress":
                node.i, node.n, node.message = data.get("i"), data.get("n"), data.get("message") or ""
            elif event.kind == "finished":
                node.seconds = data.get("seconds")
                node.i = node.n = None
            elif event.kind in ("failed", "skipped", "cancelled"):
                node.error = str(data.get("error") or "")
                self._append_log(f"[{event.node_id}] {event.kind}: {node.error}")

    def _append_log(self, line: str) -> None:
        self.log.append(line)
        del self.log[:-LOG_LIMIT]

    # --- the page side ---

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def waiting(self) -> bool:
        """In the queue, not started yet."""
        return not self._began.is_set()

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    @property
    def version(self) -> int:
        return self._version

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def wait_started(self, timeout: float | None = None) -> bool:
        return self._began.wait(timeout)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "running": not self.done,
                "ok": bool(self.report and self.report.ok and not self.error),
                "cancelled": self.cancelled,
                "nodes": {n: s.to_json() for n, s in self.nodes.items()},
                "elapsed": round(time.time() - self.started, 2),
                "error": self.error,
            }

    def table(self) -> list[list[Any]]:
        """Rows for the status table: node, type, state, detail."""
        with self._lock:
            rows = []
            for node_id, s in self.nodes.items():
                if s.state == "running" and s.n:
                    detail = f"{s.i}/{s.n} {s.message}".strip()
                elif s.state == "done" and s.seconds is not None:
                    detail = f"{s.seconds * 1000:.0f} ms" if s.seconds < 1 else f"{s.seconds:.2f} s"
                else:
                    detail = s.error
                rows.append([node_id, self.graph.nodes[node_id].cls.type_name, s.state, detail])
            return rows

    def log_text(self) -> str:
        with self._lock:
            return "\n".join(self.log)

    def outputs(self) -> list[str]:
        """`node.port` for every output that can be previewed (stored in the cache)."""
        if self.report is None:
            return []
        out = []
        for node_id in self.graph.order:
            if self.report.status.get(node_id) not in ("cached", "ran"):
                continue
            cls = self.graph.nodes[node_id].cls
            if is_in_process(cls):
                continue
            for port, spec in cls.outputs.items():
                if spec.port_type.persistent:
                    out.append(f"{node_id}.{port}")
        return out


class RunQueue:
    """Runs asked for from the editor, one at a time in the order they were asked for (the
    engine uses the machine's cores; two runs at once would only slow both). A waiting run
    can be cancelled before it starts; the running one stops at its node's next progress point."""

    def __init__(self, on_finished: Callable[[Run], None] | None = None) -> None:
        self._runs: list[Run] = []
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._on_finished = on_finished
        self._worker = threading.Thread(target=self._serve, name="talkgraph-ui-queue", daemon=True)
        self._worker.start()

    def submit(self, run: Run) -> Run:
        with self._wake:
            self._runs.append(run)
            self._wake.notify()
        return run

    def _serve(self) -> None:
        while True:
            with self._wake:
                while not any(r.waiting for r in self._runs):
                    self._wake.wait()
                run = next(r for r in self._runs if r.waiting)
            run.start()
            run.wait()
            if self._on_finished is not None:
                self._on_finished(run)
            with self._lock:  # keep the queue to what is still of interest
                self._runs = [r for r in self._runs if not r.done]

    def ahead_of(self, run: Run) -> int:
        """How many runs start before this one (0: it runs now or is next)."""
        with self._lock:
            if run not in self._runs or not run.waiting:
                return 0
            return sum(1 for r in self._runs[: self._runs.index(run)] if not r.done)

    def entries(self) -> list[Run]:
        with self._lock:
            return [r for r in self._runs if not r.done]

    def cancel(self, owner: str, *, waiting_only: bool = False) -> list[Run]:
        """Cancel `owner`'s running run (unless `waiting_only`) and its waiting runs."""
        with self._lock:
            mine = [r for r in self._runs if r.owner == owner and not r.done and (r.waiting or not waiting_only)]
        for run in mine:
            run.cancel()
        return mine

    def describe(self) -> str:
        """One line per run in the queue, for the page."""
        lines = []
        for r in self.entries():
            if r.waiting:
                lines.append(f"- waiting: run {r.id} of `{r.label}`")
            else:
                lines.append(f"- running: run {r.id} of `{r.label}` ({time.time() - r.started:.0f} s)"
                             + (" — cancelling…" if r.cancelled else ""))
        return "\n".join(lines)
