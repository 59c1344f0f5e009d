"""Fast, lossless ndarray <-> zarr array I/O for the cache.

Three choices make a 100 MB frames value cost about what `np.save`/`np.load` cost:

* chunks run along axis 0 (time) and hold about 8 MB, so one frame or a short clip can be
  read without touching the rest;
* each chunk is written and read by its own call on chunk-aligned slices, in parallel. A
  chunk-aligned slice goes to the codec as-is, where writing the whole array at once makes
  zarr allocate, fill and copy every chunk first; reads land directly in the output array;
* Blosc/LZ4 compression is used only when a sample of the data shows it pays (saves at
  least `MIN_SAVING` of the bytes). Camera-like uint8 frames with sensor noise compress by
  5-15 % and are stored raw; masks, renders, smooth fields and most small arrays compress
  well and are compressed. Either way the bytes read back are exactly the bytes written.

`write_empty_chunks` is on: checking every chunk for "all fill value" costs a full scan of
the data, and cache values are rarely empty.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

TARGET_CHUNK_BYTES = 8 * 1024 * 1024
MIN_SAVING = 0.25  # compress only if the sample shrinks to <= 75 % of its size
_ALWAYS_COMPRESS_BELOW = 1024 * 1024  # small arrays: compression costs nothing worth measuring
_SAMPLE_WINDOWS, _SAMPLE_BYTES = 4, 256 * 1024

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _io_pool() -> ThreadPoolExecutor:
    """One shared pool for chunk I/O (tasks never submit to it themselves: no deadlock)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=min(8, max(2, os.cpu_count() or 2)), thread_name_prefix="cache-io")
        return _pool


def chunks_for(arr: np.ndarray) -> tuple[int, ...] | None:
    """Chunk along the first (time) axis so that a chunk holds about 8 MB; None for 0-d."""
    if arr.ndim == 0:
        return None
    per_row = max(1, arr[:1].nbytes if arr.shape[0] else arr.itemsize)
    rows = max(1, min(arr.shape[0] or 1, TARGET_CHUNK_BYTES // per_row))
    return (rows, *[max(1, s) for s in arr.shape[1:]])


def _shuffle(itemsize: int) -> str:
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
    if len(blocks) == 1:
        fn(blocks[0])
        return
    for future in [_io_pool().submit(fn, b) for b in blocks]:
        future.result()  # re-raises the first failure


def write_array(group: Any, name: str, arr: np.ndarray) -> Any:
    """Create `group[name]` holding `arr` (C-contiguous copy if needed); returns the zarr array."""
    import zarr

    arr = np.ascontiguousarray(arr)
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
    from zarr.core.buffer import default_buffer_prototype

    out = np.empty(zarray.shape, dtype=zarray.dtype)
    nd_buffer = default_buffer_prototype().nd_buffer

    def read_block(block: slice) -> None:
        zarray.get_basic_selection(block, out=nd_buffer.from_numpy_array(out[block]))

    _run_parallel(read_block, _row_blocks(zarray.shape[0], zarray.chunks[0]))
    return out
