"""Fast, lossless ndarray <-> zarr array I/O for the cache.

Three choices make a 100 MB frames value cost about what `np.save`/`np.load` cost:

* chunks run along axis 0 (time) and hold up to 32 MB: a second of 512x512 video per chunk,
  few enough chunks that zarr's per-chunk overhead (about a millisecond each) stays small
  next to the data, small enough that a clip can be read without touching the rest;
* each chunk is written and read by its own call on chunk-aligned slices, in parallel. A
  chunk-aligned slice goes to the codec as-is, where writing the whole array at once makes
  zarr allocate, fill and copy every chunk first. Uncompressed chunks on a local disk are
  read with `readinto` straight into the output array (one copy, as np.load does);
* Blosc/LZ4 compression is used only when a sample of the data shows it pays (saves at
  least `MIN_SAVING` of the bytes). Photographic uint8 frames shrink by only 10-25 % under
  LZ4 (measured on the astronaut photo, with and without sensor noise) and are stored raw;
  masks, renders, sketches and most small arrays compress well and are compressed. Either
  way the bytes read back are exactly the bytes written.

`write_empty_chunks` is on: checking every chunk for "all fill value" costs a full scan of
the data, and cache values are rarely empty.
"""
from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any, Literal, cast

import numpy as np

TARGET_CHUNK_BYTES = 32 * 1024 * 1024
MIN_SAVING = 0.25  # compress only if the sample shrinks to <= 75 % of its size
_ALWAYS_COMPRESS_BELOW = 1024 * 1024  # small arrays: compression costs nothing worth measuring
_SAMPLE_WINDOWS, _SAMPLE_BYTES = 4, 256 * 1024
_HASH_STEP = 1 << 20  # verified raw reads hash each MiB right after reading it, while it is cached

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _io_pool() -> ThreadPoolExecutor:
    """One shared pool for chunk I/O (tasks never submit to it themselves: no deadlock)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=min(8, max(2, os.cpu_count() or 2)), thread_name_prefix="cache-io")
        return _pool


def chunks_for(arr: np.ndarray) -> tuple[int, ...]:
    """Chunk along the first (time) axis, at most TARGET_CHUNK_BYTES a chunk; () for 0-d.

    Zarr stores a partial last chunk at full size, so when a chunk length between half and
    all of the largest that fits divides the length exactly, that one is taken (125 frames
    of 512x512x3: 5 chunks of 25 frames rather than 3 of 42, the last one padded)."""
    if arr.ndim == 0:
        return ()
    n = arr.shape[0]
    per_row = max(1, arr[:1].nbytes if n else arr.itemsize)
    rows = max(1, min(n or 1, TARGET_CHUNK_BYTES // per_row))
    exact = [r for r in range(rows, (rows + 1) // 2 - 1, -1) if n % r == 0]
    return (exact[0] if exact else rows, *[max(1, s) for s in arr.shape[1:]])


def _shuffle(itemsize: int) -> Literal["bitshuffle", "shuffle"]:
    return "bitshuffle" if itemsize == 1 else "shuffle"


def compression_pays(arr: np.ndarray) -> bool:
    """Whether Blosc/LZ4 saves at least MIN_SAVING on evenly spaced samples of `arr`."""
    if arr.nbytes < _ALWAYS_COMPRESS_BELOW:
        return True
    import numcodecs

    shuffle = numcodecs.Blosc.BITSHUFFLE if arr.itemsize == 1 else numcodecs.Blosc.SHUFFLE
    codec = numcodecs.Blosc(cname="lz4", clevel=1, shuffle=shuffle)
    flat = arr.reshape(-1).view(np.uint8)
    window = _SAMPLE_BYTES - _SAMPLE_BYTES % arr.itemsize
    starts = np.linspace(0, flat.size - window, _SAMPLE_WINDOWS).astype(np.int64)
    starts -= starts % arr.itemsize
    raw = packed = 0
    for s in starts:
        sample = np.ascontiguousarray(flat[s : s + window]).view(arr.dtype)
        raw += sample.nbytes
        packed += len(codec.encode(sample))
    return packed <= (1 - MIN_SAVING) * raw


def _row_blocks(n_rows: int, rows_per_chunk: int) -> list[slice]:
    return [slice(i, min(i + rows_per_chunk, n_rows)) for i in range(0, n_rows, rows_per_chunk)]


def _run_parallel(fn: Any, blocks: list[slice]) -> None:
    """fn(block) for every block on the I/O pool. On a failure, blocks not started are
    cancelled and those running are waited for before the first error is raised: a caller
    that then deletes what was being written must not find writes still in flight."""
    if len(blocks) == 1:
        fn(blocks[0])
        return
    futures = [_io_pool().submit(fn, b) for b in blocks]
    wait(futures, return_when=FIRST_EXCEPTION)
    failed = next((f for f in futures if f.done() and not f.cancelled() and f.exception() is not None), None)
    if failed is not None:
        for f in futures:
            f.cancel()
        wait(futures)
        raise cast(BaseException, failed.exception())  # chosen above for holding one
    for f in futures:
        f.result()


def write_array(group: Any, name: str, arr: np.ndarray) -> Any:
    """Create `group[name]` holding `arr` (C-contiguous copy if needed); returns the zarr array."""
    import zarr

    arr = np.asarray(arr, order="C")  # (np.ascontiguousarray would turn a 0-d array into 1-d)
    chunks = chunks_for(arr)
    compressors = (
        [zarr.codecs.BloscCodec(cname="lz4", clevel=1, shuffle=_shuffle(arr.itemsize))]
        if compression_pays(arr)
        else None
    )
    z = group.create_array(
        name, shape=arr.shape, dtype=arr.dtype, chunks=chunks, compressors=compressors,
        overwrite=True, config={"write_empty_chunks": True},
    )
    if arr.size == 0:
        return z
    if arr.ndim == 0:
        z[...] = arr
        return z

    def write_block(block: slice) -> None:
        z[block] = arr[block]

    _run_parallel(write_block, _row_blocks(arr.shape[0], z.chunks[0]))
    return z


def read_array(zarray: Any) -> np.ndarray:
    """Read a whole zarr array into a new ndarray, chunk rows in parallel."""
    if zarray.ndim == 0 or zarray.size == 0:
        return np.asarray(zarray[...])
    return read_rows(zarray, 0, zarray.shape[0])


def read_rows(zarray: Any, start: int, stop: int) -> np.ndarray:
    """Rows [start, stop) of a zarr array with ndim >= 1 into a new ndarray, the chunks it
    touches read in parallel (whole chunks through the raw fast path where it applies)."""
    rows = zarray.chunks[0]
    out = np.empty((max(0, stop - start), *zarray.shape[1:]), dtype=zarray.dtype)
    if out.size == 0:
        return out
    n = zarray.shape[0]
    first = start - start % rows
    blocks = [slice(max(a, start), min(a + rows, stop)) for a in range(first, stop, rows)]
    chunk_files = _raw_local_chunk_files(zarray)
    verified = hasattr(zarray.store, "expected")
    from zarr.core.buffer import default_buffer_prototype

    nd_buffer = default_buffer_prototype().nd_buffer

    def read_block(block: slice) -> None:
        target = out[block.start - start:block.stop - start]
        whole = block.start % rows == 0 and block.stop == min(block.start + rows, n)
        if chunk_files is not None and whole:
            path, key, expected = chunk_files(block.start // rows)
            _read_raw_chunk(path, target, zarray.metadata.fill_value, key, expected, verified)
        else:
            zarray.get_basic_selection(block, out=nd_buffer.from_numpy_array(target))

    _run_parallel(read_block, blocks)
    return out


class ArrayAppender:
    """Build `group[name]` from chunks along axis 0 as they come, never holding the whole.

    Rows are buffered up to one storage chunk (TARGET_CHUNK_BYTES, fixed by the first
    chunk's row size) and each full chunk is written as soon as it is complete, the array
    growing by it (a resize rewrites the small zarr.json); `close` writes the last, partial
    one. Compression is decided on the first storage chunk, as `write_array` decides on the
    whole. The values read back are exactly those appended, whatever the chunk sizes."""

    def __init__(self, group: Any, name: str) -> None:
        self.group, self.name = group, name
        self.zarray: Any = None
        self.rows = 0  # rows written to the array so far
        self._buffer: np.ndarray | None = None
        self._filled = 0
        self._row_shape: tuple[int, ...] | None = None
        self._dtype: np.dtype | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.rows + self._filled, *(self._row_shape or ()))

    def append(self, chunk: np.ndarray) -> None:
        chunk = np.asarray(chunk)
        if chunk.ndim == 0:
            raise ValueError("a streamed chunk needs a time axis (got a 0-d value)")
        if self._row_shape is None:
            self._row_shape, self._dtype = tuple(chunk.shape[1:]), chunk.dtype
            per_row = max(1, int(np.prod(chunk.shape[1:], dtype=np.int64)) * chunk.itemsize)  # (an empty first chunk too)
            self._buffer = np.empty((max(1, TARGET_CHUNK_BYTES // per_row), *self._row_shape), chunk.dtype)
        elif chunk.shape[1:] != self._row_shape or chunk.dtype != self._dtype:
            raise ValueError(f"chunk of shape {chunk.shape} and dtype {chunk.dtype} does not continue "
                             f"rows of shape {self._row_shape} and dtype {self._dtype}")
        assert self._buffer is not None
        done = 0
        while done < len(chunk):
            take = min(len(chunk) - done, len(self._buffer) - self._filled)
            self._buffer[self._filled:self._filled + take] = chunk[done:done + take]
            self._filled += take
            done += take
            if self._filled == len(self._buffer):
                self._flush()

    def _flush(self) -> None:
        import zarr

        assert self._buffer is not None
        block = self._buffer[:self._filled]
        if self.zarray is None:
            compressors = (
                [zarr.codecs.BloscCodec(cname="lz4", clevel=1, shuffle=_shuffle(block.itemsize))]
                if compression_pays(block) else None
            )
            self.zarray = self.group.create_array(
                self.name, shape=block.shape, dtype=block.dtype, chunks=self._buffer.shape, compressors=compressors,
                overwrite=True, config={"write_empty_chunks": True},
            )
        else:
            self.zarray.resize((self.rows + len(block), *block.shape[1:]))
        self.zarray[self.rows:self.rows + len(block)] = block
        self.rows += len(block)
        self._filled = 0

    def close(self) -> Any:
        """Write what is buffered; the zarr array (ValueError if nothing was appended)."""
        if self._row_shape is None:
            raise ValueError("no chunk was streamed")
        if self._filled or self.zarray is None:
            self._flush()
        self._buffer = None
        return self.zarray


def _raw_local_chunk_files(zarray: Any) -> Any:
    """For an uncompressed, native-endian array on a local disk chunked along axis 0 only,
    a function chunk index -> (file path, store key, expected digest or None); else None
    (read through zarr).

    Such a chunk file is the chunk's bytes in C order, so it can be read straight into the
    output (one copy, like np.load) instead of into a buffer that zarr then copies. Behind a
    VerifyingStore (a committed cache entry) each file is checked against its digest."""
    import zarr
    from zarr.codecs import BytesCodec

    meta = zarray.metadata
    codecs: tuple[Any, ...] = getattr(meta, "codecs", ())
    store = zarray.store
    expected = getattr(store, "expected", None)
    local = getattr(store, "_store", store) if expected is not None else store
    if not isinstance(local, zarr.storage.LocalStore) or len(codecs) != 1 or not isinstance(codecs[0], BytesCodec):
        return None
    native = "little" if sys.byteorder == "little" else "big"
    if zarray.dtype.itemsize > 1 and (codecs[0].endian is None or codecs[0].endian.value != native):
        return None
    if tuple(zarray.chunks[1:]) != tuple(zarray.shape[1:]) or zarray.dtype.hasobject:
        return None
    folder = os.path.join(str(local.root), zarray.path)
    zeros = (0,) * (zarray.ndim - 1)

    def chunk_file(i: int) -> tuple[str, str, str | None]:
        rel = meta.encode_chunk_key((i, *zeros))
        key = f"{zarray.path}/{rel}" if zarray.path else rel
        return os.path.join(folder, *rel.split("/")), key, expected(key) if expected is not None else None

    return chunk_file


def _read_raw_chunk(path: str, out: np.ndarray, fill_value: Any, key: str = "", expected: str | None = None,
                    verified: bool = False) -> None:
    """Read one raw chunk file into `out`. `verified`: the file belongs to a committed entry
    that lists `expected`, its digest (checked over the whole file: a partial last chunk is
    stored at full size, so its tail is read and hashed too), or None if it never wrote it."""
    from .digests import DamagedData, new_hasher

    if verified and expected is None:  # not part of the entry: a chunk never written
        out[...] = fill_value
        return
    view = out.reshape(-1).view(np.uint8).data  # `out` is a C-contiguous row block
    hasher = new_hasher() if expected is not None else None
    step = _HASH_STEP if hasher is not None else len(view)
    got = 0
    try:
        with open(path, "rb", buffering=0) as f:
            while got < len(view):  # a partial last chunk reads only the rows that exist
                n = f.readinto(view[got:got + step])
                if not n:
                    break
                if hasher is not None:  # while the bytes are still in the CPU cache
                    hasher.update(view[got:got + n])
                got += n
            tail = f.read() if hasher is not None else b""
    except FileNotFoundError:  # a chunk never written holds the fill value
        if expected is not None:
            raise DamagedData(key, "missing") from None
        out[...] = fill_value
        return
    except OSError as exc:
        if expected is not None:
            raise DamagedData(key, f"unreadable ({exc})") from None
        raise
    if hasher is not None:
        hasher.update(tail)
        if hasher.hexdigest() != expected:
            raise DamagedData(key, f"content changed ({got + len(tail)} bytes, not what was written)")
    if got != len(view):
        raise OSError(f"cache chunk {path} is truncated: {got} of {len(view)} bytes")
