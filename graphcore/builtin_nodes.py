"""The engine's own generic nodes: small numeric building blocks with no domain knowledge.

They make the engine usable (and testable, and demonstrable) before any node library is
installed, and serve as glue in larger workflows.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from .node import CachePolicy, In, InputFile, Node, NodeError, Out, OutputFile, RunContext
from .outputs import atomic_output


class Value(Node):
    """Emit a constant number, string or list given as a parameter."""

    category = "basic"
    outputs = {"value": Out("Any", "the constant")}

    class Params(BaseModel):
        value: Any = Field(0, description="the value to emit (number, string or list)")

    def run(self, ctx: RunContext) -> dict[str, Any]:
        return {"value": self.params.value}


class RandomArray(Node):
    """A seeded array of normally distributed numbers."""

    category = "basic"
    cache = CachePolicy.RECOMPUTE  # deterministic (and cached) when `seed` is set
    outputs = {"array": Out("Array")}

    class Params(BaseModel):
        shape: list[int] = Field(default_factory=lambda: [16], description="array shape")
        seed: int | None = Field(0, description="random seed; empty for a fresh draw every run")
        scale: float = Field(1.0, ge=0, description="standard deviation")

    def run(self, ctx: RunContext) -> dict[str, Any]:
        rng = np.random.default_rng(ctx.seed)
        return {"array": (rng.standard_normal(self.params.shape) * self.params.scale).astype(np.float32)}


class Range(Node):
    """Evenly spaced numbers, like numpy.linspace."""

    category = "basic"
    outputs = {"array": Out("Array")}

    class Params(BaseModel):
        start: float = 0.0
        stop: float = 1.0
        num: int = Field(50, ge=1, le=100_000_000, description="number of samples")

    def run(self, ctx: RunContext) -> dict[str, Any]:
        p = self.params
        return {"array": np.linspace(p.start, p.stop, p.num, dtype=np.float64)}


class Math(Node):
    """Element-wise arithmetic on two arrays (or an array and a scalar)."""

    category = "basic"
    inputs = {"a": In("Array"), "b": In("Any", "array or number", optional=True)}
    outputs = {"result": Out("Array")}

    class Params(BaseModel):
        op: Literal["add", "sub", "mul", "div", "pow", "max", "min"] = Field("add", description="operation")
        b: float = Field(0.0, description="used when input b is not connected")

    def run(self, ctx: RunContext, a: np.ndarray, b: Any = None) -> dict[str, Any]:
        other = self.params.b if b is None else np.asarray(b)
        ops: dict[str, Callable[..., Any]] = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
                                              "pow": np.power, "max": np.maximum, "min": np.minimum}
        fn = ops[self.params.op]
        return {"result": np.asarray(fn(a, other))}


class Function(Node):
    """A unary element-wise function."""

    category = "basic"
    inputs = {"x": In("Array")}
    outputs = {"y": Out("Array")}

    class Params(BaseModel):
        fn: Literal["sin", "cos", "exp", "log", "abs", "sqrt", "tanh"] = "sin"

    def run(self, ctx: RunContext, x: np.ndarray) -> dict[str, Any]:
        return {"y": getattr(np, self.params.fn)(x)}


class MovingAverage(Node):
    """Smooth a 1-D (or per-column 2-D) signal with a centred box filter."""

    category = "signal"
    inputs = {"x": In("Array")}
    outputs = {"y": Out("Array")}

    class Params(BaseModel):
        window: int = Field(5, ge=1, le=10_001, description="window length in samples")

    def run(self, ctx: RunContext, x: np.ndarray) -> dict[str, Any]:
        w = self.params.window
        kernel = np.ones(w) / w
        x2 = x.reshape(x.shape[0], -1).astype(np.float64)
        cols = x2.shape[1]
        out = np.empty_like(x2)
        for c in range(cols):
            out[:, c] = np.convolve(np.pad(x2[:, c], (w // 2, w - 1 - w // 2), mode="edge"), kernel, mode="valid")
            ctx.progress(c + 1, cols)
        return {"y": out.reshape(x.shape)}


class Stats(Node):
    """Summary statistics of an array."""

    category = "signal"
    inputs = {"x": In("Array")}
    outputs = {"metrics": Out("Metrics")}

    def run(self, ctx: RunContext, x: np.ndarray) -> dict[str, Any]:
        x = np.asarray(x, dtype=np.float64)
        return {"metrics": {"mean": float(x.mean()), "std": float(x.std()), "min": float(x.min()),
                            "max": float(x.max()), "count": int(x.size)}}


class SaveArray(Node):
    """Write an array to a .npy file (re-written if the file goes missing)."""

    category = "io"
    inputs = {"array": In("Array")}
    outputs = {"path": Out("Path")}

    class Params(BaseModel):
        path: str = OutputFile("output.npy", description="where to write the .npy file", extensions=(".npy",))

    def run(self, ctx: RunContext, array: np.ndarray) -> dict[str, Any]:
        path = ctx.resolve_path(self.params.path)
        with atomic_output(path) as part, open(part, "wb") as f:
            np.save(f, array)
        return {"path": str(path)}


class LoadArray(Node):
    """Read an array from a .npy file (its content is part of the cache key)."""

    category = "io"
    outputs = {"array": Out("Array")}

    class Params(BaseModel):
        path: str = InputFile(description="the .npy file to read", extensions=(".npy",))

    def run(self, ctx: RunContext) -> dict[str, Any]:
        path = ctx.resolve_path(self.params.path)
        try:
            return {"array": np.load(path, allow_pickle=False)}
        except ValueError as exc:
            raise NodeError(f"{path} is not a readable .npy array file: {exc}") from None


class SaveJSON(Node):
    """Write metrics (or any mapping of numbers and strings) to a JSON file."""

    category = "io"
    inputs = {"data": In("Any", "a mapping, e.g. Metrics")}
    outputs = {"path": Out("Path")}

    class Params(BaseModel):
        path: str = OutputFile("output.json", description="where to write the .json file", extensions=(".json",))

    def run(self, ctx: RunContext, data: Any) -> dict[str, Any]:
        path = ctx.resolve_path(self.params.path)
        try:
            text = json.dumps(data, indent=2, sort_keys=True, default=_json_default)
        except TypeError as exc:
            raise NodeError(f"cannot write {type(data).__name__} as JSON: {exc}") from None
        with atomic_output(path) as part:
            part.write_text(text + "\n", encoding="utf-8")
        return {"path": str(path)}


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")
