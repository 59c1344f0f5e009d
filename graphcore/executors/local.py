"""The local executor: tasks run in this process, inline (`jobs=1`) or on `jobs` threads.

Outputs computed in this run stay in memory (RunMemo) until every reader is done, so local
dependents never read back from the cache what they could get for free.
"""
from __future__ import annotations

import queue
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..events import Event
from ..execute import BoundFactory, ExecEnv, NodeResult, RunMemo, execute_node
from ..plan import RunPlan, TaskNode
from ..workflow import BoundGraph
from . import Executor


class LocalExecutor(Executor):
    def __init__(self, jobs: int = 1) -> None:
        self.jobs = max(1, int(jobs))
        self._pool: ThreadPoolExecutor | None = None
        self._done: queue.SimpleQueue[tuple[str, NodeResult | BaseException]] = queue.SimpleQueue()

    def start(self, graph: BoundGraph, plan: RunPlan, cache: Any, deliver: Callable[[Event], None]) -> None:
        run_id = plan.run_id

        def emit(kind: str, task: TaskNode, data: dict) -> None:
            deliver(Event(kind, run_id, task.id, task.type, data=data))

        self.memo = RunMemo()
        self.env = ExecEnv(plan, cache, BoundFactory(graph), emit, self.memo, cancelled=self.cancelled)
        if self.jobs > 1:
            self._pool = ThreadPoolExecutor(self.jobs, thread_name_prefix="graphrun")

    def _call(self, node_id: str) -> None:
        try:
            outcome: NodeResult | BaseException = execute_node(self.env, node_id)
        except Exception as exc:
            outcome = exc
        self._done.put((node_id, outcome))

    def submit(self, node_id: str) -> None:
        if self._pool is None:
            self._call(node_id)  # inline: no thread hand-off for a serial run
        else:
            self._pool.submit(self._call, node_id)

    def next_completed(self) -> tuple[str, NodeResult | BaseException]:
        return self._done.get()

    def release(self, node_id: str) -> None:
        self.memo.release(node_id)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
