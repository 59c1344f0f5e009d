"""Who left a file behind, and whether that process is gone.

Leftovers of interrupted writers (cache attempts, temp files, `.part` output files, scratch
folders) carry a writer tag: `<host tag>-<pid>`, where the host tag is a short hash of the
host name and its boot id (a reboot makes every earlier process dead). A leftover of this
host whose process no longer runs, or runs a newer program under a reused pid, can be swept
at once; one from another host only by age (its process cannot be asked from here).
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import socket

_TAG = re.compile(r"(?<![0-9a-f])([0-9a-f]{8})-(\d+)(?!\d)")


@functools.lru_cache(maxsize=1)
def host_tag() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            boot = f.read().strip()
    except OSError:
        boot = ""
    return hashlib.sha1(f"{socket.gethostname()}\0{boot}".encode()).hexdigest()[:8]


def writer_tag(pid: int | None = None) -> str:
    """`<host tag>-<pid>` of this process (or of `pid` on this host)."""
    return f"{host_tag()}-{os.getpid() if pid is None else pid}"


def parse_tag(name: str) -> tuple[str, int] | None:
    """(host tag, pid) of the first writer tag inside a file name, if any."""
    m = _TAG.search(name)
    return (m.group(1), int(m.group(2))) if m else None


def process_gone(pid: int, since: float | None = None) -> bool:
    """Whether no process `pid` that started before `since` (unix time) runs on this host."""
    import psutil

    try:
        started = psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return True
    except psutil.AccessDenied:
        return False
    return since is not None and started > since + 1.0  # a reused pid: the writer is gone


def writer_gone(tag: tuple[str, int] | None, since: float | None = None) -> bool | None:
    """True if the tagged writer is known to be gone, False if it runs, None if it is
    another host's (or untagged): then only age can tell."""
    if tag is None or tag[0] != host_tag():
        return None
    return process_gone(tag[1], since)
