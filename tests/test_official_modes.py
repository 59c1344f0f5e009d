"""The `official` parameter of the nodes whose network runs the same weights under either
convention (KeypointRenderer, FlowVideoGenerator, MemoryGAN): `auto` follows the checkpoint
(the project's bundled ones: off), `on` / `off` force the release's / the project's conventions
through a model-config override of load_checkpoint (docs/official-weights.md)."""
from __future__ import annotations

import numpy as np
import pytest
from engine_helpers import ctx_for

from graphcore.node import NodeError
from graphcore.stream import run_whole
from nodes.types import Keypoints


def _runs(node_class, tmp_path, params: dict, **inputs) -> dict:
    logs: list = []
    return {mode: run_whole(node_class({**params, "official": mode}), ctx_for(tmp_path, logs=logs), **inputs)
            for mode in ("auto", "off", "on")}


def test_flow_video_generator_official_switch(tmp_path):
    from nodes.hdtf.hdtf_nodes import FlowVideoGenerator

    rng = np.random.default_rng(0)
    reference = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    flow = rng.normal(0, 2, (2, 64, 64, 2)).astype(np.float32)
    out = _runs(FlowVideoGenerator, tmp_path, {"size": 64}, reference=reference, flow=flow)
    np.testing.assert_array_equal(out["auto"]["frames"], out["off"]["frames"])  # the bundled checkpoint: project conventions
    assert np.abs(out["on"]["frames"].astype(int) - out["off"]["frames"].astype(int)).max() > 0


def test_keypoint_renderer_official_switch(tmp_path):
    from nodes.audio2head.a2h_nodes import KeypointRenderer

    rng = np.random.default_rng(1)
    reference = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
    value = rng.uniform(-0.6, 0.6, (2, 10, 2)).astype(np.float32)
    keypoints = Keypoints(value, np.broadcast_to(np.eye(2, dtype=np.float32), (2, 10, 2, 2)).copy())
    out = _runs(KeypointRenderer, tmp_path, {"size": 256, "chunk": 2}, reference=reference, keypoints=keypoints)
    np.testing.assert_array_equal(out["auto"]["frames"], out["off"]["frames"])
    assert np.abs(out["on"]["frames"].astype(int) - out["off"]["frames"].astype(int)).max() > 0
    with pytest.raises(NodeError, match="official Audio2Head checkpoint renders at size 256"):
        run_whole(KeypointRenderer({"size": 128, "official": "on"}), ctx_for(tmp_path), reference=reference,
                  keypoints=keypoints)


def test_memory_gan_official_switch(tmp_path):
    from nodes.yi.yi_nodes import MemoryGAN

    rng = np.random.default_rng(2)
    rendered = rng.integers(0, 255, (3, 128, 128, 3), dtype=np.uint8)
    out = _runs(MemoryGAN, tmp_path, {"size": 128}, rendered=rendered)
    np.testing.assert_array_equal(out["auto"]["retrieval_score"], out["off"]["retrieval_score"])
    assert not np.allclose(out["on"]["retrieval_score"], out["off"]["retrieval_score"])  # other keys -> other scores


def test_load_model_config_override_merges_nested_sections():
    from nodes.bundled import asset_path
    from nodes.checkpoints import load_model

    path = asset_path("checkpoints/audio2head/keypoints_tiny.pt")
    plain, _ = load_model(path, "keypoint_autoencoder")
    forced, export = load_model(path, "keypoint_autoencoder", config={"renderer": {"align_corners": False}})
    assert plain.renderer.cfg.align_corners and not forced.renderer.cfg.align_corners
    assert forced.renderer.cfg.num_kp == plain.renderer.cfg.num_kp == export["model_config"]["renderer"]["num_kp"]
    assert forced.detector.cfg == plain.detector.cfg
