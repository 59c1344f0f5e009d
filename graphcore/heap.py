"""Keep a long run's heap from creeping: fewer glibc malloc arenas, big blocks mapped.

A streamed run allocates and frees a storage chunk's worth of buffers (up to 32 MiB) per
chunk, from the node's thread and from the cache's I/O threads, and the models allocate
large activations per frame. glibc gives each thread that allocates alongside others an
arena of its own (up to 8 per core) and keeps freed memory in them for reuse; it also raises
its mmap threshold to the largest block freed so far (up to 32 MiB), after which big blocks
come from the arenas too. The resident set then grows with what the arenas hold, a little
more the longer the clip. Measured (bench/stream_memory.py, audio2head.yaml, load ~3.5-4.4
on 2 cores), peak RSS at 30 s / 120 s of speech: 834 / 896 MiB as glibc comes; 747 / 755
with MALLOC_ARENA_MAX=2; 585 at 30 s with MALLOC_MMAP_THRESHOLD_=1048576 (a fixed threshold:
blocks of 1 MiB and more are mapped and go back to the system when freed).

So a run caps the arenas at two and fixes the mmap threshold at 1 MiB (each unless the
user set it in the environment), and returns free heap pages after each node
(`malloc_trim`). Elsewhere than glibc (macOS, musl) these are no-ops.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import Any

ARENAS = 2
MMAP_THRESHOLD = 1 << 20
_M_ARENA_MAX, _M_MMAP_THRESHOLD = -8, -3  # mallopt parameters (malloc.h)
_libc: Any = None
_looked = False


def _glibc() -> Any:
    global _libc, _looked
    if not _looked:
        _looked = True
        if sys.platform.startswith("linux"):
            try:
                lib = ctypes.CDLL("libc.so.6")
                lib.mallopt.argtypes, lib.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
                lib.malloc_trim.argtypes, lib.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
                _libc = lib
            except (OSError, AttributeError):  # not glibc
                _libc = None
    return _libc


def _set(env: str, param: int, value: int) -> bool:
    if env in os.environ:  # the user's choice stands
        return False
    os.environ[env] = str(value)  # (read by glibc when a child process starts: dask workers)
    lib = _glibc()
    return bool(lib is not None and lib.mallopt(param, value) == 1)


def configure_malloc() -> dict[str, bool]:
    """Cap glibc's malloc arenas (MALLOC_ARENA_MAX) and fix its mmap threshold
    (MALLOC_MMAP_THRESHOLD_) for this process and the processes it starts, each unless set
    in the environment already. Arenas made before stay; no new ones beyond the cap are made.
    Returns which were set here."""
    return {"arenas": _set("MALLOC_ARENA_MAX", _M_ARENA_MAX, ARENAS),
            "mmap_threshold": _set("MALLOC_MMAP_THRESHOLD_", _M_MMAP_THRESHOLD, MMAP_THRESHOLD)}


def trim() -> bool:
    """Give free heap pages back to the system (glibc malloc_trim); whether any were."""
    lib = _glibc()
    return bool(lib is not None and lib.malloc_trim(0) == 1)
