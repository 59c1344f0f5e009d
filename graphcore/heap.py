"""Keep a long run's heap from creeping: fewer glibc malloc arenas, freed pages given back.

A streamed run allocates and frees a storage chunk's worth of buffers (up to 32 MiB) per
chunk, from the node's thread and from the cache's I/O threads. glibc gives each thread that
meets contention an arena of its own (up to 8 per core) and keeps freed memory in them for
reuse, so the resident set grows with the fragments left in each arena, a little more the
longer the clip. Measured (bench/stream_memory.py, audio2head.yaml, 30 s vs 120 s of speech,
load ~3.5 on 2 cores): peak RSS 834 / 896 MiB as glibc comes; 747 / 755 MiB with
MALLOC_ARENA_MAX=2. So a run limits the arenas to two (unless the user set MALLOC_ARENA_MAX)
and returns free heap pages to the system after each node (`malloc_trim`). Elsewhere than
glibc (macOS, musl) both are no-ops.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import Any

ARENAS = 2
_M_ARENA_MAX = -8  # mallopt parameter (malloc.h)
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


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas for this process and the processes it starts (dask workers),
    unless MALLOC_ARENA_MAX is set already. Arenas made before stay; no new ones beyond the
    cap are made. Returns whether the cap was set here."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    os.environ["MALLOC_ARENA_MAX"] = str(arenas)  # (read by glibc when a child process starts)
    lib = _glibc()
    return bool(lib is not None and lib.mallopt(_M_ARENA_MAX, arenas) == 1)


def trim() -> bool:
    """Give free heap pages back to the system (glibc malloc_trim); whether any were."""
    lib = _glibc()
    return bool(lib is not None and lib.malloc_trim(0) == 1)
