"""Frame sequences that stream: produced and consumed chunk by chunk along time (axis 0).

A node streams an output by declaring it `Out(type, stream=True)` and writing `run` as a
generator: each `yield` is a dict holding the next chunk (rows along time) of its streamed
outputs and, once, the whole value of any other output. The engine checks each chunk against
the port type and appends it to the cache entry as it comes (arrayio.ArrayAppender): the
whole sequence never exists in memory, and the entry commits after the last chunk like any
other (a failure or a kill mid-stream leaves nothing that is served).

A node reads an input lazily by declaring it `In(type, stream=True)`: it gets a `Chunks`
view — shape, dtype, `chunks()`, `windows()` with context frames, slices — backed by the
committed cache entry, each chunk verified as it is read; a value already in memory (a
literal, a whole-array producer's output) comes as a view over that array. Inputs that do
not stream get streamed values read whole, as before. Like dask.array, a sequence is a
shape, a dtype and a chunk length; unlike it there is no graph of chunk tasks: one node's
generator runs from the first chunk to the last, so there is no batch size to get right.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

DEFAULT_ROWS_BYTES = 32 * 1024 * 1024  # chunk length of an in-memory view: about a storage chunk


@dataclasses.dataclass(frozen=True)
class Window:
    """One step of `Chunks.windows`: the rows `rows` of the sequence, with context.

    `data` holds rows `rows.start - before .. rows.stop + after` (clipped at the ends);
    `core` is where `rows` lie inside `data`."""

    rows: slice
    data: np.ndarray
    core: slice


class Chunks:
    """A lazy, read-only frame sequence: rows are read only when asked for, a chunk at a time.

    `read_rows(start, stop)` returns rows [start, stop) as a new array; `chunk_rows` is the
    natural chunk length (the storage chunk of a cache entry)."""

    def __init__(self, shape: tuple[int, ...], dtype: Any, chunk_rows: int,
                 read_rows: Callable[[int, int], np.ndarray], hold_last: bool = False) -> None:
        if not shape:
            raise ValueError("a streamed value needs a time axis")
        self.shape, self.dtype = tuple(int(s) for s in shape), np.dtype(dtype)
        self.chunk_rows = max(1, int(chunk_rows))
        self._read_rows = read_rows
        # Reads that do not start and end on chunk boundaries (a consumer stepping through two
        # inputs stored with different chunk lengths) keep the last stored chunk they touched,
        # so stepping on through it does not read (and verify) it again.
        self._hold_last = hold_last
        self._held: tuple[int, np.ndarray] | None = None

    @classmethod
    def of(cls, array: Any) -> Chunks:
        """A view over an array already in memory (nothing is copied until rows are read)."""
        if isinstance(array, Chunks):
            return array
        arr = np.asarray(array)
        per_row = max(1, int(np.prod(arr.shape[1:], dtype=np.int64)) * arr.itemsize)
        return cls(arr.shape, arr.dtype, max(1, DEFAULT_ROWS_BYTES // per_row), lambda a, b: arr[a:b].copy())

    # --- what it is ---

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"Chunks(shape={self.shape}, dtype={self.dtype}, chunk_rows={self.chunk_rows})"

    # --- reading ---

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) (clipped to the sequence) as a new array."""
        start, stop = max(0, start), min(len(self), stop)
        stop = max(start, stop)
        c = self.chunk_rows
        if not self._hold_last or start == stop or (start % c == 0 and (stop % c == 0 or stop == len(self))):
            return self._read_rows(start, stop)
        out = np.empty((stop - start, *self.shape[1:]), self.dtype)
        for k in range(start // c, (stop - 1) // c + 1):
            if self._held is None or self._held[0] != k:
                self._held = (k, self._read_rows(k * c, min(len(self), (k + 1) * c)))
            lo, hi = max(start, k * c), min(stop, (k + 1) * c)
            out[lo - start:hi - start] = self._held[1][lo - k * c:hi - k * c]
        return out

    def __getitem__(self, index: Any) -> np.ndarray:
        """`view[i]` one frame, `view[a:b]` rows, `view[[i, j]]` chosen frames (read chunk
        by chunk), `view[a:b, ...]` rows then the rest of the index."""
        rest: tuple = ()
        if isinstance(index, tuple):
            index, rest = index[0], index[1:]
        if isinstance(index, (int, np.integer)):
            i = int(index) + (len(self) if index < 0 else 0)
            if not 0 <= i < len(self):
                raise IndexError(f"frame {index} out of range for {len(self)} frames")
            frame = self.rows(i, i + 1)[0]
            return frame[rest] if rest else frame
        elif isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            out = self.rows(start, stop)[::step] if step > 0 else self.rows(stop + 1, start + 1)[::step]
        else:
            picks = np.asarray(index)
            if picks.dtype == bool:
                picks = np.flatnonzero(picks)
            picks = np.where(picks < 0, picks + len(self), picks)
            out = np.empty((len(picks), *self.shape[1:]), self.dtype)
            for chunk_start in np.unique(picks // self.chunk_rows) * self.chunk_rows:
                block = self.rows(int(chunk_start), int(chunk_start) + self.chunk_rows)
                here = (picks >= chunk_start) & (picks < chunk_start + len(block))
                out[here] = block[picks[here] - chunk_start]
        return out[(slice(None), *rest)] if rest else out

    def chunks(self, rows: int | None = None) -> Iterator[np.ndarray]:
        """Consecutive blocks of `rows` rows (default: the natural chunk length). Another
        length is cut from natural chunks, so each stored chunk is still read once."""
        step = max(1, rows or self.chunk_rows)
        natural = (self.rows(start, start + self.chunk_rows) for start in range(0, len(self), self.chunk_rows))
        if step == self.chunk_rows:
            yield from natural
            return
        held: np.ndarray | None = None
        for block in natural:
            held = block if held is None or not len(held) else np.concatenate([held, block])
            while len(held) >= step:
                yield held[:step]
                held = held[step:]
        if held is not None and len(held):
            yield held

    def windows(self, rows: int | None = None, before: int = 0, after: int = 0) -> Iterator[Window]:
        """Consecutive blocks of `rows` rows, each with up to `before`/`after` rows of context
        (a smoothing filter, a sequence model's receptive field): every row is a core row of
        exactly one window. The context rows are read again, never kept across windows."""
        step = max(1, rows or self.chunk_rows)
        for start in range(0, len(self), step):
            stop = min(len(self), start + step)
            lo, hi = max(0, start - before), min(len(self), stop + after)
            yield Window(slice(start, stop), self.rows(lo, hi), slice(start - lo, stop - lo))

    def read(self) -> np.ndarray:
        """The whole sequence in memory (what a whole-array node gets)."""
        return self.rows(0, len(self))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self.read()
        return out if dtype is None else out.astype(dtype, copy=False)


def materialise(value: Any) -> Any:
    """A streamed value read whole; anything else as it is."""
    return value.read() if isinstance(value, Chunks) else value


def run_whole(node: Any, ctx: Any, **inputs: Any) -> dict[str, Any]:
    """Call a node's `run` outside the engine with whole values, as scripts and tests do:
    streamed inputs get views over the arrays given, streamed outputs come back whole."""
    import inspect

    declared_in, declared_out = type(node).inputs, type(node).outputs
    given = {k: Chunks.of(v) if v is not None and k in declared_in and declared_in[k].stream else v
             for k, v in inputs.items()}
    result = node.run(ctx, **given)
    if not inspect.isgenerator(result):
        return result
    whole: dict[str, Any] = {}
    parts: dict[str, list[np.ndarray]] = {}
    steps: Iterator[Any] = result
    for step in steps:
        for port, value in step.items():
            if port in declared_out and declared_out[port].stream:
                parts.setdefault(port, []).append(np.array(value))  # (the node may reuse its buffer)
            else:
                whole[port] = value
    return {**whole, **{port: np.concatenate(chunks) for port, chunks in parts.items()}}
