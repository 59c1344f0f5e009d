"""Thread settings of node runs: the same everywhere, so that a key gives the same bytes on
every executor.

torch, and the BLAS and OpenMP pools under numpy and torch, split reductions and matrix
products by their thread count, so results depend on it in the last bits. Measured on
hdtf.yaml: between a local run (one thread per core) and a dask worker (distributed starts
workers with OMP_NUM_THREADS=1), 27 values of the frames differ by one grey level and the flow
by up to 1e-3, under identical keys. The engine therefore runs every node with the same
settings, whatever the executor, the machine or `--jobs`: `NODE_THREADS` (1) threads in
torch's intra-op pool and in every BLAS/OpenMP pool (threadpoolctl, when installed), and the
same count in OMP_NUM_THREADS / MKL_NUM_THREADS / OPENBLAS_NUM_THREADS for libraries a node
loads itself. One thread per node costs little here (measured on hdtf.yaml on 2 cores: the
flow video node ran faster with 1 thread than with 2 under load), and parallelism comes from
running independent nodes at once (`--jobs N`, dask workers).

A node must not change these settings for the rest of the process: with `--jobs N` other
nodes run in the same process at the same time. A node whose results do not depend on the
thread count (or that declares the count as a parameter, so that it is part of its key) may
raise it inside its own run and restore it before returning, as trainers/loop.py does.
"""
from __future__ import annotations

import os
import sys
import threading

NODE_THREADS = 1
ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

_lock = threading.Lock()
_modules_seen = 0  # len(sys.modules) when the native pools were last limited


def pin_threads() -> None:
    """Before each node run: every thread pool the node may use to NODE_THREADS."""
    global _modules_seen
    value = str(NODE_THREADS)
    for var in ENV_VARS:
        if os.environ.get(var) != value:
            os.environ[var] = value
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != NODE_THREADS:
        torch.set_num_threads(NODE_THREADS)
    if len(sys.modules) != _modules_seen:  # a library loaded since may have brought its own pool
        with _lock:
            _modules_seen = len(sys.modules)
            _limit_native_pools()


def _limit_native_pools() -> None:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # the engine alone: numpy's BLAS set by the environment at start only
        return
    threadpool_limits(limits=NODE_THREADS)


def thread_settings() -> dict[str, object]:
    """What a node running now would see (for tests and `graphrun` diagnostics)."""
    torch = sys.modules.get("torch")
    info: dict[str, object] = {var: os.environ.get(var) for var in ENV_VARS}
    info["torch"] = torch.get_num_threads() if torch is not None else None
    try:
        from threadpoolctl import threadpool_info

        info["pools"] = sorted({(p["internal_api"], p["num_threads"]) for p in threadpool_info()})
    except ImportError:
        info["pools"] = None
    return info
