"""The long path streamed end to end: ToyCoeffs -> DenseFlowBuilder -> WarpImage -> SaveVideo
and LoadVideo -> SaveVideo give the same bytes as the whole-array functions (and as a run
with streaming off), while the engine hands each node chunks."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from engine_helpers import TESTS, write_workflow

import graphcore.arrayio as arrayio
from graphcore.cache import CacheStore
from graphcore.loader import load_workflow
from graphcore.registry import build_registry
from graphcore.scheduler import run_graph
from graphcore.validation import compile_workflow

PLUGIN = TESTS / "stream_nodes.py"
N, S = 45, 64
CHAIN = f"""
version: 1
nodes:
  portrait: {{type: ToyPortrait, params: {{size: {S}}}}}
  reference: {{type: ToyCoeffs, params: {{n: 1, size: {S}}}}}
  driving: {{type: ToyCoeffs, params: {{n: {N}, size: {S}}}}}
  fapp: {{type: DenseFlowBuilder, params: {{chunk: 4}}, inputs: {{reference: reference.coeffs, driving: driving.coeffs}}}}
  warp: {{type: WarpImage, params: {{chunk: 3}}, inputs: {{image: portrait.image, flow: fapp.flow}}}}
  save: {{type: SaveVideo, params: {{path: out/warped.mp4, preset: ultrafast}}, inputs: {{frames: warp.frames}}}}
"""
REENCODE = """
version: 1
nodes:
  again: {type: LoadVideo, params: {path: out/warped.mp4}}
  save: {type: SaveVideo, params: {path: out/again.mp4, preset: ultrafast}, inputs: {frames: again.frames}}
"""


@pytest.fixture(scope="module")
def registry():
    reg = build_registry([PLUGIN], env=False)
    assert not reg.errors, reg.errors
    return reg


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(arrayio, "TARGET_CHUNK_BYTES", 7 * S * S * 8)  # 7 flow frames a storage chunk


def run(path: Path, cache: CacheStore, registry, **kw):
    report = run_graph(compile_workflow(load_workflow(path), registry), cache=cache, **kw)
    assert report.ok, report.errors
    return report


def test_flow_warp_encode_streamed_matches_the_whole_array_functions(tmp_path, registry):
    from nodes.face.flow import Coefficients, FlowBuilder, FlowSettings
    from nodes.face.model import load_face_model
    from nodes.io import media
    from nodes.warp import warp_frames

    wf = write_workflow(tmp_path, CHAIN)
    streamed = run(wf, CacheStore(tmp_path / "c1"), registry)
    assert {n for n in ("fapp", "warp") if streamed.graph.nodes[n].cls.streams()["outputs"]} == {"fapp", "warp"}
    video = (tmp_path / "out/warped.mp4").read_bytes()
    # the same computation, whole arrays, through the functions the nodes wrapped before
    coeffs = {n: streamed.load_output(n, "coeffs") for n in ("reference", "driving")}
    as_c = lambda c, k: Coefficients(np.asarray(c.shape), np.asarray(c.expression[:k]), np.asarray(c.pose[:k]))  # noqa: E731
    flow, regions = FlowBuilder(load_face_model(), FlowSettings(chunk=4)).build(
        as_c(coeffs["reference"], 1), as_c(coeffs["driving"], N), S, S)
    assert streamed.load_output("fapp", "flow").tobytes() == flow.tobytes()
    assert streamed.load_output("fapp", "regions").tobytes() == regions.tobytes()
    assert np.abs(flow).max() > 0.5  # the head moves: a real warp
    frames = warp_frames(streamed.load_output("portrait", "image"), flow, chunk=3)
    assert streamed.load_output("warp", "frames").tobytes() == frames.tobytes()
    media.write_video(tmp_path / "whole.mp4", frames, 25.0, preset="ultrafast")
    assert (tmp_path / "whole.mp4").read_bytes() == video
    # the engine's whole-in-memory baseline: same keys, same bytes
    (tmp_path / "out/warped.mp4").unlink()
    whole = run(wf, CacheStore(tmp_path / "c2"), registry, stream=False)
    assert whole.keys == streamed.keys
    assert (tmp_path / "out/warped.mp4").read_bytes() == video
    for node, port in (("fapp", "flow"), ("warp", "frames")):
        assert whole.load_output(node, port).tobytes() == streamed.load_output(node, port).tobytes()

    # decoding streamed, then encoding from the cache entry chunk by chunk: the same file again
    wf2 = write_workflow(tmp_path, REENCODE, "reencode.yaml")
    again = run(wf2, CacheStore(tmp_path / "c1"), registry)
    decoded = media.read_video(tmp_path / "out/warped.mp4")
    assert again.load_output("again", "frames").tobytes() == decoded.frames.tobytes()
    media.write_video(tmp_path / "whole_again.mp4", decoded.frames, decoded.fps, preset="ultrafast")
    assert (tmp_path / "out/again.mp4").read_bytes() == (tmp_path / "whole_again.mp4").read_bytes()


def test_a_portrait_too_large_for_memory_is_refused_before_running(tmp_path):
    """The up-front resource check: an 8000x8000 portrait is loaded at the workflows' working
    resolution (LoadImage max_side 512), and with that turned off, hdtf.yaml and
    memorygan_image.yaml are refused before running, naming the nodes, their estimates and
    what to do."""
    from engine_helpers import ROOT, graphrun, subprocess_env
    from PIL import Image

    Image.fromarray(np.full((8000, 8000, 3), 90, np.uint8)).save(tmp_path / "big.png")
    env = subprocess_env(GRAPHRUN_MEMORY_LIMIT="16G")
    big = f"portrait.path={tmp_path / 'big.png'}"
    for name in ("hdtf.yaml", "memorygan_image.yaml", "audio2head.yaml"):
        ok = graphrun("validate", ROOT / "workflows" / name, "--set", big, env=env)
        assert ok.returncode == 0, ok.stdout + ok.stderr
    res = graphrun("validate", ROOT / "workflows" / "hdtf.yaml", "--set", big, "--set", "portrait.max_side=0", env=env)
    assert res.returncode == 2, res.stdout + res.stderr
    out = " ".join((res.stdout + res.stderr).split())
    assert "node 'fapp': DenseFlowBuilder would need ~20.3 GiB of memory here, more than the 16.0 GiB available" in out
    assert "8000x8000: load the portrait at the working resolution (LoadImage's max_side" in out and "nothing was run" in out
    res = graphrun("validate", ROOT / "workflows" / "memorygan_image.yaml", "--set", big, "--set", "portrait.max_side=0",
                   env=env)
    assert res.returncode == 2, res.stdout + res.stderr
    out = " ".join((res.stdout + res.stderr).split())
    assert "node 'render': Render3DMM would need ~92.3 GiB" in out and "node 'refine': MemoryGAN would need ~52.2 GiB" in out
    assert "rendered at the target's size, 8000x8000" in out and "2 problems found; nothing was run" in out


YI_CHAIN = """
version: 1
nodes:
  portrait: {type: ToyPortrait, params: {size: 64}}
  target: {type: ToyCoeffs, params: {n: 1, size: 64}}
  driving: {type: ToyCoeffs, params: {n: 23, size: 64}}
  render:
    type: Render3DMM
    params: {background: reference, chunk: 4}
    inputs: {coeffs: driving.coeffs, target_coeffs: target.coeffs, target_image: portrait.image}
  refine: {type: MemoryGAN, params: {chunk: 3}, inputs: {rendered: render.frames}}
"""


def _refine_whole(gan, rendered: np.ndarray, size: int, chunk: int, sigma: float = 2.0):
    """MemoryGAN's refinement as it was before it streamed: every frame in memory at once."""
    import torch
    import torch.nn.functional as F

    from nodes.yi import memory_gan

    def resize(x, hw):
        return x if tuple(x.shape[-2:]) == hw else F.interpolate(x, size=hw, mode="bilinear", align_corners=False,
                                                                 antialias=True)

    def to_uint8(x):
        return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).movedim(-3, -1).numpy()

    with torch.no_grad():
        t, h, w = rendered.shape[:3]
        frames = torch.from_numpy(rendered).movedim(-1, 1).float().div(127.5).sub(1)
        small = torch.cat([resize(frames[i:i + chunk], (size, size)) for i in range(0, t, chunk)])
        found = [gan.memory.retrieve(gan.encoder(small[i:i + chunk])) for i in range(0, t, chunk)]
        ident = memory_gan.smooth_features(torch.cat([f for f, _ in found]), sigma)
        out, att, col = [], [], []
        for i in range(0, t, chunk):
            idx = torch.arange(i, min(t, i + chunk))
            win = torch.stack([small[(idx - 2).clamp(min=0)], small[(idx - 1).clamp(min=0)], small[idx]], 1).flatten(1, 2)
            o, c, a = gan(win, ident[idx])
            out.append(to_uint8(frames[idx] + resize(o - small[idx], (h, w))))
            col.append(to_uint8(resize(c, (h, w))))
            att.append(resize(a, (h, w))[:, 0].clamp(0, 1).numpy())
        score = torch.cat([s for _, s in found]).numpy()
    return np.concatenate(out), np.concatenate(att), np.concatenate(col), score


def test_render3dmm_and_memory_gan_streamed_match_whole_arrays(tmp_path, registry, monkeypatch):
    """memorygan_image.yaml's long path: Render3DMM streams its frames, MemoryGAN reads them in
    windows (two frames of context, across storage chunks of 5 frames) and streams the refined
    frames: the same bytes as the refinement on the whole clip and as a stream=False run."""
    from nodes.bundled import asset_path
    from nodes.checkpoints import load_model

    monkeypatch.setattr(arrayio, "TARGET_CHUNK_BYTES", 5 * 64 * 64 * 4)  # 5 masks, ~7 frames a storage chunk
    wf = write_workflow(tmp_path, YI_CHAIN)
    streamed = run(wf, CacheStore(tmp_path / "c1"), registry)
    assert streamed.graph.nodes["refine"].cls.streams()["inputs"] == ["rendered"]
    rendered = streamed.load_output("render", "frames")
    assert rendered.shape == (23, 64, 64, 3) and streamed.load_output("render", "face_mask").max() == 1.0
    gan, _ = load_model(asset_path("checkpoints/yi/memory_gan_tiny.pt"), "yi_memory_gan")
    frames, attention, colour, score = _refine_whole(gan, rendered, size=128, chunk=3)
    assert streamed.load_output("refine", "frames").tobytes() == frames.tobytes()
    assert streamed.load_output("refine", "attention").tobytes() == attention.tobytes()
    assert streamed.load_output("refine", "colour").tobytes() == colour.tobytes()
    assert streamed.load_output("refine", "retrieval_score").tobytes() == score.astype(np.float32).tobytes()
    assert np.abs(frames.astype(int) - rendered).max() > 8  # the GAN changed the frames
    whole = run(wf, CacheStore(tmp_path / "c2"), registry, stream=False)
    assert whole.keys == streamed.keys
    for node, ports in (("render", ("frames", "face_mask", "background", "coeffs")),
                        ("refine", ("frames", "attention", "colour", "retrieval_score"))):
        for port in ports:
            a, b = whole.load_output(node, port), streamed.load_output(node, port)
            if port == "coeffs":
                a, b = a.pose, b.pose
            assert np.asarray(a).tobytes() == np.asarray(b).tobytes(), (node, port)
