"""Runs started from the editor: the engine's run_graph in a worker thread, its events
folded into one status per node that the page shows while the run goes on.

The Gradio run handler is a generator: it starts a `Run`, then yields `Run.snapshot()` a few
times a second until the run ends. Gradio streams each yield to the browser, where the canvas
repaints the node badges (queued, cached, running i/n, done, failed, skipped).
"""
from __future__ import annotations

import dataclasses
import threading
import time
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


class Run:
    """One run in a background thread. Thread-safe: the engine's listener writes, the page reads."""

    def __init__(self, graph: BoundGraph, *, cache: Any, plugin_paths: list[str], device: str = "cpu",
                 start: bool = True) -> None:
        self.graph = graph
        self.nodes: dict[str, NodeState] = {n: NodeState() for n in graph.order}
        self.log: list[str] = []
        self.report: RunReport | None = None
        self.error: str = ""  # a failure of the run itself (not of a node)
        self.started = time.time()
        self._lock = threading.Lock()
        self._version = 0
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._work, args=(cache, list(plugin_paths), device), name="talkgraph-ui-run", daemon=True,
        )
        if start:  # (tests feed events themselves)
            self._thread.start()

    # --- the engine side ---

    def _work(self, cache: Any, plugin_paths: list[str], device: str) -> None:
        try:
            self.report = run_graph(self.graph, cache=cache, listeners=[self.on_event], plugin_paths=plugin_paths,
                                    device=device)
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
            elif event.kind in ("failed", "skipped"):
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
    def version(self) -> int:
        return self._version

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "running": not self.done,
                "ok": bool(self.report and self.report.ok and not self.error),
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
