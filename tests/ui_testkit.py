"""Shared set-up for the editor tests: a small project folder with workflows, assets and a plugin."""
from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from ui.config import UIConfig

ROOT = Path(__file__).resolve().parents[1]

# Every kind of value the editor has to carry unchanged: integral floats (0.0, 5.0) for float and
# untyped parameters, lists, null, a literal input, an input file, an output file, nodes with and
# without layout, a description.
ROUNDTRIP_YAML = """\
version: 1
description: every kind of value the editor must keep
nodes:
  data:
    type: LoadArray
    params: {path: ../assets/ramp.npy}
    layout: {x: 10, y: 20, note: keep me}
  const:
    type: Value
    params: {value: 5.0}
  listy:
    type: Value
    params: {value: [1, 2.0, three, null]}
  noise:
    type: RandomArray
    params: {shape: [8], seed: null, scale: 2}
  scaled:
    type: Math
    params: {op: mul, b: 0.0}
    inputs: {a: data.array, b: 2.5}
  smooth:
    type: MovingAverage
    params: {window: 3}
    inputs: {x: scaled.result}
  save:
    type: SaveArray
    params: {path: out/smoothed.npy}
    inputs: {array: smooth.y}
"""

SMALL_YAML = """\
version: 1
description: a tiny chain of built-in nodes
nodes:
  t:
    type: Range
    params: {start: 0.0, stop: 6.28, num: 64}
  wave:
    type: Function
    params: {fn: sin}
    inputs: {x: t.array}
  smooth:
    type: MovingAverage
    params: {window: 5}
    inputs: {x: wave.y}
  stats:
    type: Stats
    inputs: {x: smooth.y}
"""

UNKNOWN_YAML = """\
version: 1
description: a node whose type this server does not have
nodes:
  t:
    type: Range
    params: {num: 8}
  mystery:
    type: NotInstalled
    params: {strength: 3, mode: fast}
    inputs: {x: t.array, k: 2.5}
  after:
    type: Stats
    inputs: {x: mystery.out}
"""

PLUGIN_PY = '''\
"""A test plugin: nodes in their own category (one slow with progress, one that always fails)."""
import time

import numpy as np
from pydantic import BaseModel, Field

from graphcore import In, Node, NodeError, Out, OutputFile


class Wobble(Node):
    """Add a wobble to a signal (test plugin node)."""

    category = "plugin_demo"
    inputs = {"x": In("Array")}
    outputs = {"y": Out("Array")}

    class Params(BaseModel):
        amount: float = Field(0.5, ge=0, le=2, description="how much")

    def run(self, ctx, x):
        return {"y": x + self.params.amount * np.sin(np.arange(len(x)))}


class Slow(Node):
    """Pass an array through, slowly, reporting progress."""

    category = "plugin_demo"
    inputs = {"x": In("Array")}
    outputs = {"y": Out("Array")}

    class Params(BaseModel):
        steps: int = Field(8, ge=1)
        delay: float = Field(0.3, ge=0)

    def run(self, ctx, x):
        for i in range(self.params.steps):
            time.sleep(self.params.delay)
            ctx.progress(i + 1, self.params.steps, "step")
        return {"y": x}


class WriteClip(Node):
    """Write a short H.264 clip (a red ramp) and output its path."""

    category = "plugin_demo"
    outputs = {"path": Out("Path")}

    class Params(BaseModel):
        path: str = OutputFile("out/clip.mp4", extensions=(".mp4",))
        frames: int = Field(25, ge=1)

    def run(self, ctx):
        import av

        path = ctx.resolve_path(self.params.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with av.open(str(path), "w") as container:
            stream = container.add_stream("h264", rate=25)
            stream.width = stream.height = 64
            stream.pix_fmt = "yuv420p"
            for i in range(self.params.frames):
                img = np.zeros((64, 64, 3), np.uint8)
                img[..., 0] = (i * 10) % 256
                for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        return {"path": str(path)}


class WaveCoeffs(Node):
    """3DMM coefficients that move: a slow expression wave and a nodding head."""

    category = "plugin_demo"
    outputs = {"coeffs": Out("MorphCoeffs")}

    class Params(BaseModel):
        frames: int = Field(50, ge=2)

    def run(self, ctx):
        from nodes.types import MorphCoeffs

        t = np.linspace(0, 2 * np.pi, self.params.frames, dtype=np.float32)[:, None]
        expression = np.sin(t * np.arange(1, 34, dtype=np.float32) / 8).astype(np.float32)
        pose = np.concatenate([0.2 * np.sin(t), 0.1 * np.cos(t), 0 * t, 5 * t, 0 * t, 0 * t], axis=1).astype(np.float32)
        return {"coeffs": MorphCoeffs(shape=np.linspace(-1, 1, 60, dtype=np.float32), expression=expression, pose=pose,
                                      error=np.zeros(len(t), np.float32), image_size=(64, 64))}


class Boom(Node):
    """Always fails."""

    category = "plugin_demo"
    inputs = {"x": In("Array")}
    outputs = {"y": Out("Array")}

    def run(self, ctx, x):
        raise NodeError("boom: this node always fails")
'''


def make_project(root: Path) -> UIConfig:
    """workflows/ (four files), assets/ramp.npy, a plugin file outside every root, an upload folder."""
    (root / "workflows" / "sub").mkdir(parents=True)
    (root / "assets").mkdir()
    (root / "workflows" / "roundtrip.yaml").write_text(textwrap.dedent(ROUNDTRIP_YAML))
    (root / "workflows" / "small.yaml").write_text(SMALL_YAML)
    (root / "workflows" / "sub" / "copy.yaml").write_text(SMALL_YAML)
    (root / "workflows" / "unknown.yaml").write_text(UNKNOWN_YAML)
    # The roundtrip workflow's input file: relative to workflows/, so ../assets/ramp.npy.
    np.save(root / "assets" / "ramp.npy", np.linspace(0, 1, 16, dtype=np.float32))
    (root / "plugins").mkdir()
    (root / "plugins" / "wobble.py").write_text(PLUGIN_PY)
    return UIConfig.create(root, upload_dir=root / "uploads", cache_url=str(root / "cache"),
                           plugin_paths=[str(root / "plugins" / "wobble.py")])


def browser_client(app: Any, config: UIConfig) -> Any:
    """A TestClient that reaches the app as the browser does: by a loopback name, with the launch token."""
    from fastapi.testclient import TestClient

    return TestClient(app, base_url="http://127.0.0.1", headers={"X-TalkGraph-Token": config.token})


def as_javascript(value: Any) -> Any:
    """What a value looks like after a trip through the browser: JSON numbers lose 5.0 vs 5."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: as_javascript(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_javascript(v) for v in value]
    return value
