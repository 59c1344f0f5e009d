"""Content digests of cache files: recorded as each file is written, checked as it is read.

A committed entry lists the digest of every file of its Zarr data (metadata and chunks, by
path relative to the attempt folder); its ref carries that list and a digest of itself.
Writers record a file's digest in the same call that stores it (`RecordingStore` in
digest_stores.py), so data written chunk by chunk, as it is produced, is covered chunk by
chunk. Readers check each file as it arrives (`VerifyingStore`, and arrayio's direct chunk
reads), so reading a clip touches only its own chunks and never re-reads the rest of the
entry.

The digest is XXH3-128: about 30 GB/s on one core here, against 1 GB/s for SHA-256 (which
would cost more than the read itself); `bench/cache_verify.py` measures the overhead. It
detects damage (a lost, truncated or changed file), not forgery: whoever can rewrite a chunk
can rewrite the ref that lists its digest.
"""
from __future__ import annotations

import re
from typing import Any

import xxhash

ALGORITHM = "xxh3-128"


def digest(data: Any) -> str:
    """The hex digest of a bytes-like object (any buffer: bytes, memoryview, ndarray)."""
    return xxhash.xxh3_128_hexdigest(data)


def new_hasher() -> Any:
    """An incremental hasher (`update(buffer)`, `hexdigest()`) giving the same digest."""
    return xxhash.xxh3_128()


_SEAL = re.compile(rb',"check":"([0-9a-f]{32})"\}\s*$')


def seal(document: bytes) -> bytes:
    """A JSON object's bytes with its own digest appended as a last member, `"check"`."""
    if not document.endswith(b"}") or document == b"{}":
        raise ValueError("seal() takes the bytes of a non-empty JSON object")
    return document[:-1] + b',"check":"' + digest(document).encode() + b'"}'


def unseal(data: bytes) -> bytes:
    """The sealed document without its check; ValueError if the check is absent or wrong."""
    m = _SEAL.search(data)
    if m is None:
        raise ValueError("it carries no digest (written by an older version, or cut short)")
    document = data[:m.start()] + b"}"
    if digest(document) != m.group(1).decode():
        raise ValueError("its content does not match its digest (changed after it was written)")
    return document


class DamagedData(Exception):
    """A file of a committed entry is missing, unreadable or not what was written."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path, reason)
        self.path, self.reason = path, reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"
