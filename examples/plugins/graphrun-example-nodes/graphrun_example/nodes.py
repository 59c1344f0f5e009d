"""Two signal-processing nodes and a port type of their own.

`Envelope` turns a signal into its RMS envelope (a new port type, `Envelope`, which is also an
`Array`, so it can feed any node that takes arrays); `Threshold` counts how much of an envelope
lies above a level and reports it as Metrics.
"""
from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from graphcore import ArrayType, In, Node, NodeError, Out, RunContext, register_type

# A port type: a float32 1-D array. `parents=("Array",)` lets it connect to any Array input;
# validation rejects anything else with a message naming what is wrong.
ENVELOPE = register_type(
    ArrayType("Envelope", dtype="float32", ndim=1, parents=("Array",), color="#3aa39a",
              doc="Signal envelope (non-negative), float32 (N,)."),
    origin="graphrun-example-nodes",
)


class Envelope(Node):
    """RMS envelope of a 1-D signal over a sliding window."""

    category = "example"
    version = 1
    inputs = {"signal": In("Array", "a 1-D signal")}
    outputs = {"envelope": Out(ENVELOPE, "RMS over the window, same length as the signal")}

    class Params(BaseModel):
        window: int = Field(32, ge=1, le=100_000, description="window length in samples")
        mode: Literal["rms", "peak"] = Field("rms", description="root-mean-square or peak absolute value")

    def run(self, ctx: RunContext, signal: np.ndarray) -> dict[str, Any]:
        from .dsp import envelope

        if signal.ndim != 1:
            raise NodeError(f"expected a 1-D signal, got shape {signal.shape}")
        return {"envelope": envelope(signal, self.params.window, self.params.mode, ctx.progress)}


class Threshold(Node):
    """How much of an envelope lies above a level."""

    category = "example"
    inputs = {"envelope": In("Envelope")}
    outputs = {"metrics": Out("Metrics")}

    class Params(BaseModel):
        level: float = Field(0.5, ge=0, description="threshold level")

    def run(self, ctx: RunContext, envelope: np.ndarray) -> dict[str, Any]:
        above = envelope > self.params.level
        ctx.log(f"{int(above.sum())} of {above.size} samples above {self.params.level}")
        return {"metrics": {"fraction_above": float(above.mean()), "samples_above": int(above.sum())}}
