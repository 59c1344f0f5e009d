"""Executors: where the scheduler's tasks run, behind one small interface.

The scheduler decides *what* runs and *when*; an executor only runs one persisted node per
task (through `execute.execute_node`) and hands back each outcome as it completes:

    executor.start(graph, plan, cache, deliver)   # deliver(Event) forwards live events
    executor.submit(node_id)                       # as soon as its upstream is done
    node_id, outcome = executor.next_completed()   # a NodeResult or the exception raised
    executor.release(node_id)                      # nobody reads its in-memory outputs any more
    executor.close()

`local` runs tasks in this process (inline, or on `jobs` threads); `dask` runs them on the
workers of a distributed cluster, values travelling through the shared cache.
"""
from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

from ..events import Event
from ..execute import NodeResult
from ..plan import RunPlan
from ..workflow import BoundGraph


class ExecutorError(RuntimeError):
    """The executor could not start (e.g. no dask scheduler at the given address)."""


class Executor(abc.ABC):
    # Set by the scheduler before `start`: whether the run was cancelled. Executors that run
    # nodes in this process hand it to the nodes' RunContext (they stop at their next progress
    # point); the others only stop being given new tasks.
    cancelled: Callable[[], bool] = staticmethod(lambda: False)

    @abc.abstractmethod
    def start(self, graph: BoundGraph, plan: RunPlan, cache: Any, deliver: Callable[[Event], None]) -> None: ...

    @abc.abstractmethod
    def submit(self, node_id: str) -> None: ...

    @abc.abstractmethod
    def next_completed(self) -> tuple[str, NodeResult | BaseException]: ...

    def release(self, node_id: str) -> None:
        """Outputs of `node_id` held in memory are no longer needed."""

    def close(self) -> None:
        """Stop whatever `start` started."""


def make_executor(spec: str, jobs: int = 1) -> Executor:
    """`local`, `dask` (a LocalCluster of `jobs` worker processes), `dask://HOST:PORT` or a
    distributed address (`tcp://HOST:PORT`)."""
    if spec == "local":
        from .local import LocalExecutor

        return LocalExecutor(jobs)
    if spec == "dask":
        from .dask import DaskExecutor

        return DaskExecutor(None, n_workers=max(1, jobs))
    if spec.startswith("dask://") or spec.startswith("tcp://"):
        from .dask import DaskExecutor

        address = "tcp://" + spec[len("dask://"):] if spec.startswith("dask://") else spec
        return DaskExecutor(address)
    raise ExecutorError(f"unknown executor {spec!r}: use local, dask or dask://HOST:PORT")
