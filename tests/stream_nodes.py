"""Small face-library inputs for the streaming tests and bench (loaded as a plugin file):
synthetic 3DMM coefficients with a moving head and mouth, and a textured portrait."""
from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from graphcore import Node, Out, RunContext
from nodes.types import MorphCoeffs


class ToyCoeffs(Node):
    """`n` frames of coefficients for a `size` x `size` image: the head sways, the mouth opens."""

    category = "test"
    outputs = {"coeffs": Out("MorphCoeffs")}

    class Params(BaseModel):
        n: int = Field(1, ge=1)
        size: int = Field(64, ge=16)

    def run(self, ctx: RunContext) -> dict[str, Any]:
        n, s = self.params.n, self.params.size
        t = np.arange(n, dtype=np.float32)
        pose = np.zeros((n, 6), np.float32)
        pose[:, 0], pose[:, 1] = 0.05 + 0.05 * np.sin(t / 9), -0.1 + 0.08 * np.sin(t / 13)
        pose[:, 3], pose[:, 4] = s / 2 + s / 40 * np.sin(t / 7), s * 0.46
        pose[:, 5] = np.log(0.85 * s / 256)
        expression = np.zeros((n, 33), np.float32)
        expression[:, 0] = 0.6 * (1 + np.sin(t / 3)) / 2
        return {"coeffs": MorphCoeffs(np.zeros(60, np.float32), expression, pose, np.zeros(n, np.float32), (s, s))}


class ToyPortrait(Node):
    """A `size` x `size` uint8 RGB image with texture everywhere (warps show)."""

    category = "test"
    outputs = {"image": Out("Image")}

    class Params(BaseModel):
        size: int = Field(64, ge=16)

    def run(self, ctx: RunContext) -> dict[str, Any]:
        s = self.params.size
        y, x = np.mgrid[0:s, 0:s].astype(np.float32)
        img = np.stack([128 + 100 * np.sin(x / 5), 128 + 100 * np.cos(y / 7), 128 + 60 * np.sin((x + y) / 9)], -1)
        return {"image": img.astype(np.uint8)}
