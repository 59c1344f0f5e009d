"""The dask executor: each persisted node is one task on a distributed worker.

Tasks carry a slice of the run plan (type names, keys, parameters), never node classes or
values: a worker builds its own registry (once per process), loads its inputs from the shared
cache by key, commits its outputs there and returns a small NodeResult. Live events (started,
progress, log) go through distributed's event log: the worker calls `log_event` on a topic of
the run and the client, subscribed to it, forwards them to the run's listeners.

Workers need not share the client's disk (graphcore/staging.py): input files are checked on
the worker against the client's content hashes (and fetched from the cache, where the client
staged them, when they differ); output files are written to the worker's scratch, stored in
the entry and written by the client where the user asked. A worker that dies mid-task is
reported (`retrying` event) and distributed runs the task again on another worker; the cache
entry it was writing is never committed, and its leftovers are swept later.
"""
from __future__ import annotations

import dataclasses
import queue
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..events import Event
from ..execute import ExecEnv, NodeFailure, NodeResult, RegistryFactory, execute_node
from ..liveness import writer_tag
from ..plan import RunPlan, TaskNode
from ..staging import StagingError, stage_inputs, stage_outputs, upload_inputs
from ..workflow import BoundGraph
from . import Executor, ExecutorError

CONNECT_TIMEOUT_S = 20
TASK_PREFIX = "graphrun-"


def run_task(plan: RunPlan, node_id: str, cache: Any, topic: str) -> NodeResult:
    """The function a worker runs for one node."""
    from distributed import get_worker

    worker = get_worker()

    def emit(kind: str, task: TaskNode, data: dict) -> None:
        worker.log_event(topic, {"kind": kind, "node_id": task.id, "node_type": task.type, "time": time.time(),
                                 "data": {**data, "worker": worker.address}})

    try:
        plan = stage_inputs(plan, cache)
    except StagingError as exc:
        raise NodeFailure(node_id, plan.nodes[node_id].type, str(exc)) from None
    task = plan.nodes[node_id]
    scratch = Path(tempfile.mkdtemp(prefix=f"graphrun-out-{writer_tag()}-")) if task.output_files or task.output_folders else None
    try:
        staged: dict[str, str] | None = None
        if scratch is not None:
            task, staged = stage_outputs(task, scratch)
            plan = dataclasses.replace(plan, nodes={**plan.nodes, node_id: task})
        env = ExecEnv(plan, cache, RegistryFactory(plan.plugin_paths), emit, staged_outputs=staged)
        return execute_node(env, node_id)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


class DaskExecutor(Executor):
    def __init__(self, address: str | None, n_workers: int = 2) -> None:
        self.address, self.n_workers = address, n_workers
        self.client: Any = None
        self.cluster: Any = None
        self._done: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()

    def start(self, graph: BoundGraph, plan: RunPlan, cache: Any, deliver: Callable[[Event], None]) -> None:
        from distributed import Client, LocalCluster

        self.plan, self.cache = plan, cache
        try:
            if self.address is None:
                self.cluster = LocalCluster(n_workers=self.n_workers, threads_per_worker=1, processes=True,
                                            dashboard_address=None)
                self.client = Client(self.cluster)
            else:
                self.client = Client(self.address, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            self.close()
            where = self.address or "a local cluster"
            raise ExecutorError(f"cannot connect to the dask scheduler at {where}: {exc}") from None
        self.topic = f"{TASK_PREFIX}{plan.run_id}"
        run_id = plan.run_id
        self._staged: set[str] = set()  # content hashes of input files known to be in the cache

        def on_event(item: tuple[float, dict]) -> None:
            msg = item[1]
            deliver(Event(msg["kind"], run_id, msg["node_id"], msg["node_type"], msg["time"], msg["data"]))

        def on_cluster_event(item: tuple[float, dict]) -> None:
            """A worker left with our tasks on it: distributed runs them again elsewhere."""
            msg = item[1]
            if not isinstance(msg, dict) or msg.get("action") != "remove-worker":
                return
            for key in sorted(map(str, msg.get("processing-tasks") or ())):
                node_id = key[len(self.topic) + 1:] if key.startswith(self.topic + "-") else None
                if node_id in plan.nodes:
                    deliver(Event("retrying", run_id, node_id, plan.nodes[node_id].type,
                                  data={"worker": msg.get("worker"), "reason": "its worker was lost"}))

        self.client.subscribe_topic(self.topic, on_event)
        self.client.subscribe_topic("all", on_cluster_event)

    def submit(self, node_id: str) -> None:
        task_plan = self.plan.slice(node_id)
        self._stage(task_plan)
        future = self.client.submit(
            run_task, task_plan, node_id, self.cache, self.topic, key=f"{self.topic}-{node_id}", pure=False,
        )
        future.add_done_callback(lambda f, node_id=node_id: self._done.put((node_id, f)))

    def _stage(self, task_plan: RunPlan) -> None:
        """Upload the input files this task reads (once per content) for workers without them."""
        todo = {r["sha256"] for t in task_plan.nodes.values() for r in t.input_files.values()} - self._staged
        if todo:
            upload_inputs(task_plan, self.cache)
            self._staged |= todo

    def next_completed(self) -> tuple[str, NodeResult | BaseException]:
        node_id, future = self._done.get()
        if future.status == "finished":
            return node_id, future.result()
        try:
            exc = future.exception()
        except BaseException as err:  # cancelled
            exc = err
        return node_id, exc if isinstance(exc, BaseException) else RuntimeError(f"task ended as {future.status}")

    def close(self) -> None:
        if self.client is not None:
            for topic in (self.topic, "all"):
                try:
                    self.client.unsubscribe_topic(topic)
                except Exception:
                    pass
            self.client.close()
            self.client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None
