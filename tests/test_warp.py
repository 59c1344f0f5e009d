"""WarpImage / nodes.warp: backward-flow conventions checked on known integer and sub-pixel shifts."""
from __future__ import annotations

import numpy as np
import pytest

from graphcore.node import NodeError, RunContext
from graphcore.stream import run_whole
from nodes.warp import warp_frames
from nodes.warp_nodes import WarpImage


def make_ctx(events: list | None = None) -> RunContext:
    sink = (lambda kind, data: events.append((kind, dict(data)))) if events is not None else (lambda k, d: None)
    return RunContext(node_id="w", node_type="WarpImage", key="k", emit=sink)


def textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def constant_flow(t: int, h: int, w: int, dx: float, dy: float) -> np.ndarray:
    flow = np.zeros((t, h, w, 2), np.float32)
    flow[..., 0], flow[..., 1] = dx, dy
    return flow


def test_zero_flow_is_identity():
    img = textured(33, 47)
    for mode in ("bilinear", "bicubic", "nearest"):
        out = warp_frames(img, constant_flow(2, 33, 47, 0, 0), mode=mode)
        np.testing.assert_array_equal(out, np.stack([img, img]))


@pytest.mark.parametrize("dx,dy", [(3, -2), (-5, 4), (1, 0)])
def test_integer_shift(dx, dy):
    img = textured(40, 50)
    out = warp_frames(img, constant_flow(1, 40, 50, dx, dy), padding="zeros")[0]
    # out(x, y) = in(x + dx, y + dy) where that lies inside the image, 0 elsewhere
    expect = np.zeros_like(img)
    ys, xs = np.mgrid[0:40, 0:50]
    sx, sy = xs + dx, ys + dy
    inside = (sx >= 0) & (sx < 50) & (sy >= 0) & (sy < 40)
    expect[inside] = img[sy[inside], sx[inside]]
    np.testing.assert_array_equal(out, expect)


def test_subpixel_shift_bilinear_and_bicubic_on_a_ramp():
    h, w = 24, 32
    ramp = np.tile((np.arange(w, dtype=np.float32) * 3.0)[None, :, None], (h, 1, 3)) + np.arange(h, dtype=np.float32)[:, None, None]
    # bilinear reproduces a linear function exactly at any offset: in(x + 0.25, y - 0.5)
    out = warp_frames(ramp, constant_flow(1, h, w, 0.25, -0.5))[0]
    np.testing.assert_allclose(out[1:-1, 1:-1], ramp[1:-1, 1:-1] + 3 * 0.25 - 0.5, atol=1e-3)
    # torch's bicubic (Keys, a = -0.75) does so only at half-pixel offsets, by symmetry
    out = warp_frames(ramp, constant_flow(1, h, w, -0.5, 0.5), mode="bicubic")[0]
    np.testing.assert_allclose(out[2:-2, 2:-2], ramp[2:-2, 2:-2] - 3 * 0.5 + 0.5, atol=1e-3)


def test_half_pixel_shift_averages_neighbours():
    img = textured(16, 16).astype(np.float32)
    out = warp_frames(img, constant_flow(1, 16, 16, 0.5, 0.0))[0]
    np.testing.assert_allclose(out[:, :-1], 0.5 * (img[:, :-1] + img[:, 1:]), atol=1e-3)
    np.testing.assert_allclose(out[:, -1], img[:, -1], atol=1e-3)  # border padding repeats the edge


def test_per_pixel_flow_and_chunking():
    t, h, w = 9, 20, 28
    frames = np.stack([textured(h, w, s) for s in range(t)])
    flow = np.random.default_rng(1).uniform(-3, 3, (t, h, w, 2)).astype(np.float32)
    a = warp_frames(frames, flow, chunk=1)
    b = warp_frames(frames, flow, chunk=4)
    np.testing.assert_array_equal(a, b)
    # a single pixel by hand: bilinear read at (x + dx, y + dy)
    k, y, x = 4, 10, 13
    sx, sy = x + flow[k, y, x, 0], y + flow[k, y, x, 1]
    x0, y0 = int(np.floor(sx)), int(np.floor(sy))
    fx, fy = sx - x0, sy - y0
    f = frames[k].astype(np.float64)
    ref = (f[y0, x0] * (1 - fx) * (1 - fy) + f[y0, x0 + 1] * fx * (1 - fy)
           + f[y0 + 1, x0] * (1 - fx) * fy + f[y0 + 1, x0 + 1] * fx * fy)
    assert np.abs(a[k, y, x] - ref).max() <= 0.51


def test_node_image_and_frames_inputs():
    img = textured(12, 14)
    flow = constant_flow(5, 12, 14, 1, 0)
    events: list = []
    out = run_whole(WarpImage({"padding": "zeros"}), make_ctx(events), flow=flow, image=img)["frames"]
    assert out.shape == (5, 12, 14, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[3, :, :-1], img[:, 1:])
    assert events and events[-1] == ("progress", {"i": 5, "n": 5, "message": "warping"})
    frames = np.stack([img] * 5)
    np.testing.assert_array_equal(run_whole(WarpImage({"padding": "zeros"}), make_ctx(), flow=flow, frames=frames)["frames"], out)


def test_node_errors():
    img = textured(12, 14)
    with pytest.raises(NodeError, match="exactly one"):
        run_whole(WarpImage(), make_ctx(), flow=constant_flow(1, 12, 14, 0, 0))
    with pytest.raises(NodeError, match="14x12 but the flow is 15x12"):
        run_whole(WarpImage(), make_ctx(), flow=constant_flow(1, 12, 15, 0, 0), image=img)
    with pytest.raises(NodeError, match="3 frames but 2 flow fields"):
        run_whole(WarpImage(), make_ctx(), flow=constant_flow(2, 12, 14, 0, 0), frames=np.stack([img] * 3))


def test_cuda_matches_cpu():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    frames = np.stack([textured(64, 80, s) for s in range(5)])
    flow = np.random.default_rng(2).uniform(-4, 4, (5, 64, 80, 2)).astype(np.float32)
    cpu = warp_frames(frames, flow, chunk=2)
    gpu = warp_frames(frames, flow, chunk=2, device="cuda")
    assert np.abs(cpu.astype(int) - gpu).max() <= 1
