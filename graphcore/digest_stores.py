"""Zarr stores that digest what a cache attempt writes and verify what a reader reads.

Kept apart from digests.py so that the cache imports zarr only when an entry has Zarr data.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterable
from typing import Any

from zarr.abc.store import ByteRequest, OffsetByteRequest, RangeByteRequest, SuffixByteRequest
from zarr.storage import WrapperStore

from .digests import DamagedData, digest


def _buffer_bytes(value: Any) -> Any:
    """The raw bytes of a zarr Buffer, without a copy where possible."""
    return value.as_buffer_like() if hasattr(value, "as_buffer_like") else value.to_bytes()


class RecordingStore(WrapperStore):
    """Wraps a writer's zarr store: records the digest of every file it stores, and lets the
    writer close it, so that no write still in flight can land after an abort deleted the
    attempt (`close`: later writes fail, earlier ones are waited for)."""

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self.digests: dict[str, str] = {}
        self.sizes: dict[str, int] = {}
        self._in_flight = 0
        self._closed = False
        self._cond = threading.Condition()

    def _begin(self, key: str) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError(f"write of {key!r} after the cache attempt was closed")
            self._in_flight += 1

    def _end(self, _task: Any = None) -> None:
        with self._cond:
            self._in_flight -= 1
            self._cond.notify_all()

    def close_writes(self, timeout: float = 300.0) -> bool:
        """Refuse new writes and wait until none is in flight; False if some still were at
        the timeout."""
        with self._cond:
            self._closed = True
            return self._cond.wait_for(lambda: self._in_flight == 0, timeout)

    async def _store_one(self, key: str, value: Any, exclusive: bool) -> None:
        self._begin(key)
        inner = self._store.set_if_not_exists(key, value) if exclusive else self._store.set(key, value)
        # A task of its own, counted until it ends: cancelling our caller does not stop a
        # file write that has started (it runs in a thread), so the count must outlive it.
        task = asyncio.ensure_future(inner)
        task.add_done_callback(self._end)
        data = _buffer_bytes(value)
        await asyncio.shield(task)
        self.digests[key], self.sizes[key] = digest(data), memoryview(data).nbytes

    async def set(self, key: str, value: Any) -> None:
        await self._store_one(key, value, exclusive=False)

    async def set_if_not_exists(self, key: str, value: Any) -> None:
        if key in self.digests:
            return
        await self._store_one(key, value, exclusive=True)

    async def _set_many(self, values: Iterable[tuple[str, Any]]) -> None:
        await asyncio.gather(*(self.set(k, v) for k, v in values))

    async def delete(self, key: str) -> None:
        self.digests.pop(key, None)
        self.sizes.pop(key, None)
        await self._store.delete(key)

    async def delete_dir(self, prefix: str) -> None:
        self.forget(prefix)
        await self._store.delete_dir(prefix)

    def forget(self, prefix: str) -> None:
        """Drop the records of every file under `prefix` (a port that failed to save)."""
        prefix = prefix.rstrip("/") + "/"
        for key in [k for k in self.digests if k.startswith(prefix)]:
            del self.digests[key]
            self.sizes.pop(key, None)


def _slice(data: bytes, byte_range: ByteRequest | None) -> bytes:
    if byte_range is None:
        return data
    if isinstance(byte_range, RangeByteRequest):
        return data[byte_range.start:byte_range.end]
    if isinstance(byte_range, OffsetByteRequest):
        return data[byte_range.offset:]
    if isinstance(byte_range, SuffixByteRequest):
        return data[-byte_range.suffix:] if byte_range.suffix else b""
    raise TypeError(f"unexpected byte range {byte_range!r}")


class VerifyingStore(WrapperStore):
    """Wraps a reader's zarr store: presents exactly the files a committed entry lists, each
    checked against its recorded digest as it is read. A listed file that is missing, or
    differs, raises DamagedData; a file the entry does not list does not exist.

    `local` says whether an OSError other than "not found" means damage (a local disk: an
    unreadable file) or an outage to report as such (an object store that cannot be reached).
    """

    def __init__(self, store: Any, digests: dict[str, str], *, local: bool) -> None:
        super().__init__(store)
        self.digests = digests
        self.local = local

    def expected(self, key: str) -> str | None:
        return self.digests.get(key)

    async def get(self, key: str, prototype: Any, byte_range: ByteRequest | None = None) -> Any:
        expected = self.digests.get(key)
        if expected is None:
            return None
        try:
            buf = await self._store.get(key, prototype, None)  # whole files only: that is what a digest covers
        except (FileNotFoundError, NotADirectoryError):
            buf = None
        except OSError as exc:
            if not self.local:
                raise
            raise DamagedData(key, f"unreadable ({exc})") from None
        if buf is None:
            raise DamagedData(key, "missing")
        data = _buffer_bytes(buf)
        if digest(data) != expected:
            raise DamagedData(key, f"content changed ({memoryview(data).nbytes} bytes, not what was written)")
        if byte_range is None:
            return buf
        return prototype.buffer.from_bytes(_slice(bytes(memoryview(data).cast("B")), byte_range))

    async def get_partial_values(self, prototype: Any, key_ranges: Iterable[tuple[str, ByteRequest | None]]) -> list[Any]:
        return list(await asyncio.gather(*(self.get(k, prototype, r) for k, r in key_ranges)))

    async def exists(self, key: str) -> bool:
        return key in self.digests

    async def _listed(self, prefix: str) -> AsyncIterator[str]:
        for key in sorted(self.digests):
            if key.startswith(prefix):
                yield key

    def list(self) -> AsyncIterator[str]:
        return self._listed("")

    def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        return self._listed(prefix)

    async def _list_dir(self, prefix: str) -> AsyncIterator[str]:
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        seen: set[str] = set()
        for key in sorted(self.digests):
            if key.startswith(prefix):
                child = key[len(prefix):].split("/", 1)[0]
                if child not in seen:
                    seen.add(child)
                    yield child

    def list_dir(self, prefix: str) -> AsyncIterator[str]:
        return self._list_dir(prefix)
