"""The HDTF architectures on random tensors: shapes, switches, conventions (parameter counts:
tests/test_model_registry.py)."""
from __future__ import annotations

import pytest
import torch

from nodes.hdtf.animation_generator import AnimationDiscriminators
from nodes.hdtf.blocks import Hourglass, pixel_flow_to_normalized, warp
from nodes.model_registry import create_model, model_config


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_video_generator_outputs_and_switches():
    g = create_model("flow_video_generator", "tiny").eval()
    ref = torch.rand(2, 3, 64, 64)
    flow = torch.randn(2, 2, 64, 64) * 0.05
    with torch.no_grad():
        out = g(ref, flow)
        plain = g(ref, flow, matting=False)
    assert out["image"].shape == (2, 3, 64, 64) and 0 <= out["image"].min() and out["image"].max() <= 1
    for k in ("foreground_mask", "matting_mask"):
        assert out[k].shape == (2, 1, 16, 16) and 0 <= out[k].min() and out[k].max() <= 1
    assert out["matting_image"].shape == (2, g.cfg.feature_channels, 16, 16)
    # eq. 8: the revised flow is F_app (downsampled) times the foreground mask
    torch.testing.assert_close(out["flow"], g.downsample(flow) * out["foreground_mask"])
    assert not torch.allclose(out["image"], plain["image"])  # eq. 14 differs from eq. 9
    with pytest.raises(ValueError, match="multiple of 4"):
        g(torch.rand(1, 3, 62, 64), torch.zeros(1, 2, 62, 64))


def test_video_generator_reference_encoding_is_reusable_and_batch_independent():
    g = create_model("flow_video_generator", "tiny").eval()
    ref = torch.rand(1, 3, 64, 64)
    flows = torch.randn(3, 2, 64, 64) * 0.05
    with torch.no_grad():
        enc = g.encode_reference(ref)
        batched = g(ref, flows, encoded=enc)["image"]
        one_by_one = torch.cat([g(ref, flows[i:i + 1])["image"] for i in range(3)])
    torch.testing.assert_close(batched, one_by_one, atol=1e-5, rtol=1e-5)


def test_video_generator_trains_on_a_batch():
    g = create_model("flow_video_generator", "tiny").train()
    opt = torch.optim.Adam(g.parameters(), 1e-3)
    ref, target = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    flow = torch.zeros(2, 2, 32, 32)
    losses = []
    for _ in range(8):
        loss = (g(ref, flow)["image"] - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_hourglass_pads_odd_sizes():
    hg = Hourglass(5, 8, 3, 32)
    assert hg(torch.rand(1, 5, 20, 13)).shape == (1, 13, 20, 13)


def test_feature_warp_matches_the_project_pixel_warp():
    from nodes.warp import warp_tensor

    img = torch.rand(1, 3, 24, 32)
    pix = torch.zeros(1, 24, 32, 2)
    pix[..., 0], pix[..., 1] = 2.5, -1.0
    torch.testing.assert_close(warp(img, pixel_flow_to_normalized(pix)), warp_tensor(img, pix), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("preset", ["tiny", "paper"])
def test_animation_generator_shapes(preset):
    g = create_model("animation_generator", preset).eval()
    audio, ident = torch.randn(2, 37, g.cfg.audio_dim), torch.randn(2, g.cfg.identity_dim)
    with torch.no_grad():
        out = g(audio, ident)
    assert out["mouth"].shape == (2, 37, 28) and out["brow"].shape == (2, 37, 5) and out["pose"].shape == (2, 37, 6)


def test_animation_generator_style_switch_and_standardisation():
    g = create_model("animation_generator", "tiny").eval()
    audio, ident = torch.randn(1, 40, g.cfg.audio_dim), torch.randn(1, g.cfg.identity_dim) * 3
    with torch.no_grad():
        styled, plain = g(audio, ident), g(audio, ident, style=False)
        other = g(audio, ident * -1)
        mean_id = g(audio, g.identity_norm.mean[None])
    assert not torch.allclose(styled["mouth"], other["mouth"])  # the identity changes the output
    torch.testing.assert_close(plain["mouth"], mean_id["mouth"])  # w/o style = the mean identity
    g.out_norm["mouth"].set(torch.full((28,), 5.0), torch.full((28,), 2.0))
    with torch.no_grad():
        shifted = g(audio, ident)["mouth"]
    torch.testing.assert_close(shifted, styled["mouth"] * 2 + 5)


def test_animation_discriminators():
    cfg = model_config("animation_generator", "tiny")
    d = AnimationDiscriminators(cfg)
    params = {"mouth": torch.randn(2, 32, 28), "brow": torch.randn(2, 32, 5), "pose": torch.randn(2, 32, 6)}
    out = d(params, torch.randn(2, 32, cfg.audio_dim))
    assert set(out) == {"mouth", "brow", "pose"} and all(o[0][-1].shape[:2] == (2, 1) for o in out.values())
