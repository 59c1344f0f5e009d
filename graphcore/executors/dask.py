"""The dask executor: each persisted node is one task on a distributed worker.

Tasks carry a slice of the run plan (type names, keys, parameters), never node classes or
values: a worker builds its own registry (once per process), loads its inputs from the shared
cache by key, commits its outputs there and returns a small NodeResult. Live events (started,
progress, log) go through distributed's event log: the worker calls `log_event` on a topic of
the run and the client, subscribed to it, forwards them to the run's listeners.
"""
from __future__ import annotations

import queue
import time
from collections.abc import Callable
from typing import Any

from ..events import Event
from ..execute import ExecEnv, NodeResult, RegistryFactory, execute_node
from ..plan import RunPlan, TaskNode
from ..workflow import BoundGraph
from . import Executor, ExecutorError

CONNECT_TIMEOUT_S = 20


def run_task(plan: RunPlan, node_id: str, cache: Any, topic: str) -> NodeResult:
    """The function a worker runs for one node."""
    from distributed import get_worker

    worker = get_worker()

    def emit(kind: str, task: TaskNode, data: dict) -> None:
        worker.log_event(topic, {"kind": kind, "node_id": task.id, "node_type": task.type, "time": time.time(),
                                 "data": {**data, "worker": worker.address}})

    env = ExecEnv(plan, cache, RegistryFactory(plan.plugin_paths), emit)
    return execute_node(env, node_id)


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
        self.topic = f"graphrun-{plan.run_id}"
        run_id = plan.run_id

        def on_event(item: tuple[float, dict]) -> None:
            msg = item[1]
            deliver(Event(msg["kind"], run_id, msg["node_id"], msg["node_type"], msg["time"], msg["data"]))

        self.client.subscribe_topic(self.topic, on_event)

    def submit(self, node_id: str) -> None:
        future = self.client.submit(
            run_task, self.plan.slice(node_id), node_id, self.cache, self.topic,
            key=f"graphrun-{self.plan.run_id}-{node_id}", pure=False,
        )
        future.add_done_callback(lambda f, node_id=node_id: self._done.put((node_id, f)))

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
            try:
                self.client.unsubscribe_topic(self.topic)
            except Exception:
                pass
            self.client.close()
            self.client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None
