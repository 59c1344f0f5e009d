"""Node types the engine tests use (loaded as a plugin file by the tests and by dask workers)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from graphcore import CachePolicy, FileSource, In, InputFile, Node, NodeError, Out, OutputFile, OutputFolder, RunContext
from graphcore.outputs import atomic_output


class Rendezvous(Node):
    """Waits until `parties` nodes of the same group run at once (proves concurrency), then
    emits [value]. Works across threads and processes: each party drops a file in `folder`."""

    category = "test"
    inputs = {"x": In("Array", optional=True)}
    outputs = {"y": Out("Array")}

    class Params(BaseModel):
        folder: str
        parties: int = 2
        value: float = 0.0
        timeout: float = 20.0

    def run(self, ctx: RunContext, x: Any = None) -> dict[str, Any]:
        folder = Path(self.params.folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ctx.node_id).touch()
        deadline = time.monotonic() + self.params.timeout
        while len(list(folder.iterdir())) < self.params.parties:
            if time.monotonic() > deadline:
                raise NodeError(f"only {len(list(folder.iterdir()))} of {self.params.parties} parties ran concurrently")
            time.sleep(0.01)
        return {"y": np.array([self.params.value])}


class Fail(Node):
    """Always fails: with a NodeError (a user-facing message) or an unexpected exception."""

    category = "test"
    inputs = {"x": In("Array", optional=True)}
    outputs = {"y": Out("Array")}

    class Params(BaseModel):
        kind: Literal["node_error", "exception"] = "node_error"
        message: str = "the input frame 3 has no face"

    def run(self, ctx: RunContext, x: Any = None) -> dict[str, Any]:
        if self.params.kind == "node_error":
            raise NodeError(self.params.message)
        return {"y": helper_that_breaks(self.params.message)}


def helper_that_breaks(message: str) -> Any:
    raise ZeroDivisionError(message)


class BadOutput(Node):
    """Returns something its declaration does not allow."""

    category = "test"
    outputs = {"y": Out("Array")}

    class Params(BaseModel):
        kind: Literal["type", "missing", "extra", "not_a_dict"] = "type"

    def run(self, ctx: RunContext) -> Any:
        kind = self.params.kind
        if kind == "type":
            return {"y": "a string, not an array"}
        if kind == "missing":
            return {}
        if kind == "extra":
            return {"y": np.zeros(2), "z": 1}
        return np.zeros(2)


class Scaler:
    """An in-memory 'model' (never cached)."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x * self.factor


class LoadScaler(Node):
    """A transient node: its output is an in-memory object, computed where it is needed."""

    category = "test"
    cache = CachePolicy.TRANSIENT
    outputs = {"model": Out("Object")}

    class Params(BaseModel):
        factor: float = 2.0

    def run(self, ctx: RunContext) -> dict[str, Any]:
        ctx.log(f"loading scaler x{self.params.factor}")
        return {"model": Scaler(self.params.factor)}


class ApplyScaler(Node):
    category = "test"
    inputs = {"model": In("Object"), "x": In("Array")}
    outputs = {"y": Out("Array")}

    def run(self, ctx: RunContext, model: Scaler, x: np.ndarray) -> dict[str, Any]:
        return {"y": model(x)}


class Steps(Node):
    """Reports progress step by step (for progress events)."""

    category = "test"
    outputs = {"y": Out("Array")}

    class Params(BaseModel):
        steps: int = Field(5, ge=1)
        delay: float = 0.0

    def run(self, ctx: RunContext) -> dict[str, Any]:
        for i in range(self.params.steps):
            time.sleep(self.params.delay)
            ctx.progress(i + 1, self.params.steps, f"step {i + 1}")
        return {"y": np.arange(self.params.steps, dtype=np.float64)}


class BigRandom(Node):
    """A large incompressible uint8 array (for interrupted cache writes)."""

    category = "test"
    outputs = {"y": Out("Array")}

    class Params(BaseModel):
        megabytes: int = 64
        seed: int = 0

    def run(self, ctx: RunContext) -> dict[str, Any]:
        rng = np.random.default_rng(self.params.seed)
        rows = self.params.megabytes * 4
        return {"y": rng.integers(0, 256, size=(rows, 512, 512), dtype=np.uint8)}


class Noise(Node):
    """Random unless seeded (cache policy `recompute`)."""

    category = "test"
    cache = CachePolicy.RECOMPUTE
    outputs = {"y": Out("Array")}

    class Params(BaseModel):
        seed: int | None = None

    def run(self, ctx: RunContext) -> dict[str, Any]:
        return {"y": np.random.default_rng(ctx.seed).standard_normal(4)}


class Scratch(Node):
    """Uses its scratch folder and reports where it was."""

    category = "test"
    outputs = {"folder": Out("String"), "content": Out("String")}

    def run(self, ctx: RunContext) -> dict[str, Any]:
        assert ctx.tmp_dir.is_dir() and not any(ctx.tmp_dir.iterdir())
        (ctx.tmp_dir / "note.txt").write_text(f"seed {ctx.seed}")
        return {"folder": str(ctx.tmp_dir), "content": (ctx.tmp_dir / "note.txt").read_text()}


class WriteFolder(Node):
    """Writes `files` small files into a folder (a stand-in for a dataset writer)."""

    category = "test"
    outputs = {"path": Out("Path")}

    class Params(BaseModel):
        path: str = OutputFolder("out/data", description="the folder written")
        files: int = Field(3, ge=0)

    def run(self, ctx: RunContext) -> dict[str, Any]:
        root = ctx.resolve_path(self.params.path)
        (root / "sub").mkdir(parents=True, exist_ok=True)
        for i in range(self.params.files):
            (root / "sub" / f"{i}.txt").write_text(f"file {i}")
        return {"path": str(root)}


class ReadTable(Node):
    """Reads a table file; without one (parameter empty, input unconnected) it falls back to
    the file named by `fallback`, as a node falls back to a bundled checkpoint."""

    category = "test"
    inputs = {"table_in": In("String", optional=True)}
    outputs = {"text": Out("String")}

    class Params(BaseModel):
        table: str = InputFile("", description="the table; empty: the fallback")
        fallback: str = Field("bundled.txt", description="the fallback table (not a file parameter)")

    def implicit_files(self, connected: frozenset[str]) -> dict[str, str]:
        if self.params.table or "table_in" in connected:
            return {}
        return {"fallback table": self.params.fallback}

    def run(self, ctx: RunContext, table_in: str | None = None) -> dict[str, Any]:
        if table_in is not None:
            return {"text": table_in}
        return {"text": ctx.resolve_path(self.params.table or self.params.fallback).read_text()}


class SlowFile(Node):
    """Writes `blocks` blocks to an output file (through its `.part` file), `delay` s apart,
    printing "writing" once the first block is out (for killing it mid-write)."""

    category = "test"
    inputs = {"x": In("Array", optional=True)}
    outputs = {"path": Out("Path")}

    class Params(BaseModel):
        path: str = OutputFile("slow.bin", description="the file written")
        blocks: int = 4
        delay: float = 0.0

    def run(self, ctx: RunContext, x: Any = None) -> dict[str, Any]:
        path = ctx.resolve_path(self.params.path)
        with atomic_output(path) as part, open(part, "wb") as f:
            for i in range(self.params.blocks):
                f.write(bytes([i]) * 65536)
                f.flush()
                if i == 0:
                    print("writing", flush=True)
                time.sleep(self.params.delay)
        return {"path": str(path)}


class ThreadProbe(Node):
    """Float32 reductions whose last bits depend on the thread count, and the thread settings
    the node saw (for the executor-independence tests)."""

    category = "test"
    outputs = {"sums": Out("Array"), "settings": Out("Any")}

    class Params(BaseModel):
        seed: int = 0

    def run(self, ctx: RunContext) -> dict[str, Any]:
        import torch

        from graphcore.threads import thread_settings

        g = torch.Generator().manual_seed(self.params.seed)
        x, w = torch.randn(2_000_000, generator=g), torch.randn(384, 384, generator=g)
        sums = torch.stack([x.sum(), (w @ w).sum(), torch.nn.functional.conv2d(w[None, None], w[None, None, :7, :7]).sum()])
        return {"sums": sums.numpy(), "settings": {k: str(v) for k, v in thread_settings().items()}}


class ReadTableSource(Node):
    """ReadTable declared the short way: the port's FileSource gives the `table` parameter and
    the fallback file (relative to the workflow's folder), as CheckpointInput does for a
    bundled checkpoint."""

    category = "test"
    inputs = {"table_in": In("String", "a table", file=FileSource(param="table", fallback="bundled.txt", label="fallback table"))}
    outputs = {"text": Out("String")}

    def run(self, ctx: RunContext, table_in: str | None = None) -> dict[str, Any]:
        source = self.input_source(ctx, "table_in", table_in)
        return {"text": source if isinstance(source, str) else source.read_text()}



# --- streaming (graphcore/stream.py) -----------------------------------------------------


def ramp_frames(start: int, stop: int, height: int, width: int) -> np.ndarray:
    """Frames [start, stop) of the Ramp sequence: frame i is a fixed pattern plus i."""
    pattern = np.arange(height * width, dtype=np.float32).reshape(height, width) / (height * width)
    return pattern[None] + np.arange(start, stop, dtype=np.float32)[:, None, None]


class Ramp(Node):
    """Streams `frames` (n, height, width) float32, `chunk` frames per yield; `count` is whole."""

    category = "test"
    outputs = {"frames": Out("Array", stream=True), "count": Out("Scalar")}

    class Params(BaseModel):
        n: int = Field(100, ge=0)
        height: int = 8
        width: int = 8
        chunk: int = Field(7, ge=1)
        fail_after: int = Field(-1, description="raise after this many chunks (-1: never)")
        log: bool = Field(False, description="log a line after each chunk (no progress events)")

    def run(self, ctx: RunContext):
        p = self.params
        for i, start in enumerate(range(0, p.n, p.chunk)):
            if i == p.fail_after:
                raise NodeError(f"Ramp: failing after {i} chunks, as asked")
            yield {"frames": ramp_frames(start, min(p.n, start + p.chunk), p.height, p.width)}
            if p.log:
                ctx.log(f"chunk {i} done")
        yield {"count": p.n}


class StreamScale(Node):
    """y = x * factor, chunk by chunk: never holds more than a chunk of x or y."""

    category = "test"
    inputs = {"x": In("Array", stream=True)}
    outputs = {"y": Out("Array", stream=True)}

    class Params(BaseModel):
        factor: float = 2.0
        rows: int = Field(0, ge=0, description="chunk length to read (0: the stored one)")

    def run(self, ctx: RunContext, x: Any):
        if not hasattr(x, "chunks"):
            raise NodeError(f"StreamScale: expected a lazy view of x, got {type(x).__name__}")
        for chunk in x.chunks(self.params.rows or None):
            yield {"y": chunk * np.float32(self.params.factor)}


class StreamPair(Node):
    """Two streamed outputs from one streamed input: a = x * 2, b = x + 1."""

    category = "test"
    inputs = {"x": In("Array", stream=True)}
    outputs = {"a": Out("Array", stream=True), "b": Out("Array", stream=True)}

    def run(self, ctx: RunContext, x: Any):
        for chunk in x.chunks():
            yield {"a": chunk * np.float32(2), "b": chunk + np.float32(1)}


class MovingSum(Node):
    """y[i] = x[i - r] + ... + x[i + r] (clipped at the ends): windows with context."""

    category = "test"
    inputs = {"x": In("Array", stream=True)}
    outputs = {"y": Out("Array", stream=True)}

    class Params(BaseModel):
        radius: int = 1
        rows: int = 5

    def run(self, ctx: RunContext, x: Any):
        r = self.params.radius
        for w in x.windows(self.params.rows, before=r, after=r):
            csum = np.concatenate([np.zeros_like(w.data[:1]), np.cumsum(w.data, axis=0)])
            idx = np.arange(w.core.start, w.core.stop)
            yield {"y": csum[np.minimum(idx + r + 1, len(w.data))] - csum[np.maximum(idx - r, 0)]}


class FrameSums(Node):
    """Per-frame sums of a streamed input (a small whole output)."""

    category = "test"
    inputs = {"x": In("Array", stream=True)}
    outputs = {"sums": Out("Array")}

    def run(self, ctx: RunContext, x: Any) -> dict[str, Any]:
        sums = [c.reshape(len(c), -1).sum(axis=1, dtype=np.float64) for c in x.chunks()]
        return {"sums": np.concatenate(sums) if sums else np.zeros(0)}
