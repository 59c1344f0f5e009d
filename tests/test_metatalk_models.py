"""MetaTalk's networks (nodes/metatalk): A2E exactly as Table 1, the renderer's U-Net adapting
to the §2.1 crop sizes, and the 28×80 MFCC blocks of §3."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nodes.metatalk.a2e import AUDIODVP_A2E, A2EConfig, A2ENet, AudioEncoderNet, PhoneticEncoderNet, frame_windows
from nodes.metatalk.face_renderer import (
    FaceRendererConfig,
    NeuralFaceRendererNet,
    band_blend_mask,
    build_discriminator,
    unet_levels,
)
from nodes.model_registry import count_parameters, create_model
from trainers.data.audio_features import audio_features


def test_a2e_layers_are_table1():
    net = A2ENet(A2EConfig(expression_dim=64))  # the paper's 64 FaceWarehouse coefficients
    convs = [m for m in net.convs if isinstance(m, torch.nn.Conv1d)]
    assert [(c.kernel_size, c.stride, c.padding) for c in convs] == [((3,), (1,), (0,))] * 5
    h = torch.randn(2, 5, 256)
    shapes = []
    for m in net.convs:
        h = m(h)
        if isinstance(m, torch.nn.Conv1d):
            shapes.append(tuple(h.shape[1:]))
    assert shapes == [(5, 254), (5, 252), (3, 250), (3, 248), (3, 246)]  # Table 1's "Outputs"
    assert net.fc.in_features == 3 * 246 and net.fc.out_features == 64
    assert net(torch.randn(2, 5, 28, 80)).shape == (2, 64)


def conv_shapes(net: A2ENet, x: torch.Tensor) -> list[tuple[int, ...]]:
    shapes = []
    for m in net.convs:
        x = m(x)
        if isinstance(m, torch.nn.Conv1d):
            shapes.append(tuple(x.shape[1:]))
    return shapes


def test_a2e_baseline_is_audiodvps_shallow_a2e():
    """Table 3's "Baseline": AudioDVP's A2E (Conv1D 5, 3, 1, kernel 3, no activation; FC 250 -> α;
    7 frames), the network MetaTalk deepens into Table 1's."""
    net = A2ENet(A2EConfig(**AUDIODVP_A2E))
    assert [type(m).__name__ for m in net.convs] == ["Conv1d", "Identity"] * 3
    assert conv_shapes(net, torch.randn(2, 7, 256)) == [(5, 254), (3, 252), (1, 250)]
    assert net.fc.in_features == 250 and net(torch.randn(2, 7, 28, 80)).shape == (2, 33)
    assert isinstance(net.encoder, AudioEncoderNet)  # same audio front-end: only H differs


def test_a2e_phonetic_option_keeps_table1():
    """`feature: phonetic`: 44-D rows per frame through a per-frame MLP to the same 256-D f; H is Table 1's."""
    net = A2ENet(A2EConfig(feature="phonetic"))
    assert isinstance(net.encoder, PhoneticEncoderNet) and net.cfg.input_shape == (44,)
    assert net.mfcc_mean.shape == (44,)
    assert conv_shapes(net, torch.randn(2, 5, 256)) == [(5, 254), (5, 252), (3, 250), (3, 248), (3, 246)]
    assert net.features(torch.randn(3, 5, 44)).shape == (3, 5, 256) and net(torch.randn(3, 5, 44)).shape == (3, 33)
    paper = A2ENet(A2EConfig())  # the default (paper) input is unchanged
    assert isinstance(paper.encoder, AudioEncoderNet) and paper.cfg.input_shape == (28, 80)
    with pytest.raises(ValueError, match="feature"):
        A2EConfig(feature="mel")


def test_a2e_features_are_256d_per_frame_and_windows_are_centred():
    net = create_model("metatalk_a2e", "tiny").eval()
    mfcc = torch.randn(7, 28, 80)
    win = frame_windows(mfcc, 5)
    assert win.shape == (7, 5, 28, 80)
    assert torch.equal(win[3, 2], mfcc[3]) and torch.equal(win[0, 0], mfcc[0]) and torch.equal(win[6, 4], mfcc[6])
    assert net.features(win).shape == (7, 5, 256)
    assert net(win).shape == (7, 33)


def test_a2e_statistics_are_buffers_not_parameters():
    net = create_model("metatalk_a2e", "tiny")
    names = dict(net.named_buffers())
    assert {"mfcc_mean", "mfcc_std", "expression_mean", "expression_std"} <= set(names)
    net.expression_mean.fill_(2.0)
    net.expression_std.zero_()
    assert torch.allclose(net(torch.randn(1, 5, 28, 80)), torch.full((1, 33), 2.0))


@pytest.mark.parametrize(("size", "levels"), [(256, 7), (512, 8), (768, 7), (1024, 8)])
def test_renderer_depth_adapts_to_the_crop(size, levels):
    cfg = FaceRendererConfig(size=size, ngf=2, max_levels=8)
    assert unet_levels(cfg) == levels
    with torch.device("meta"):
        g = NeuralFaceRendererNet(cfg)
        out = g(torch.empty(1, 3, size // 2, size))
    assert out.shape == (1, 3, size // 2, size)


def test_renderer_is_a_unet_with_skips_and_a_patchgan():
    torch.manual_seed(0)
    cfg = FaceRendererConfig(size=512, ngf=4, max_levels=4, ndf=4)
    g, d = NeuralFaceRendererNet(cfg).eval(), build_discriminator(cfg)
    x = torch.rand(1, 3, 256, 512) * 2 - 1
    y = g(x)
    assert y.shape == x.shape and y.abs().max() <= 1
    assert len(g.down) == 3 and len(g.up) == 3
    score = d(y)[0][-1]
    assert score.shape[0] == 1 and score.shape[1] == 1 and 20 < score.shape[2] < 40  # patches, not one score
    # a local change of the input changes the output near it more than far away (convolutional, skips)
    x2 = x.clone()
    x2[..., 100:110, 100:110] = 1.0
    diff = (g(x2) - y).abs().mean(1)[0]
    assert diff[95:115, 95:115].mean() > 5 * diff[:, 400:].mean()
    assert count_parameters(g) > 0


def test_residual_renderer_starts_as_its_input_and_learns_a_correction():
    """tiny_residual (not the paper): G(x) = x + correction, the correction zero before training;
    the paper and tiny presets keep pix2pix's plain output."""
    from nodes.metatalk.models import NEURAL_FACE_RENDERER

    assert not any(p.get("residual") for name, p in NEURAL_FACE_RENDERER.presets.items() if name != "tiny_residual")
    torch.manual_seed(0)
    g = create_model(NEURAL_FACE_RENDERER, {**NEURAL_FACE_RENDERER.presets["tiny_residual"], "size": 512})
    x = torch.rand(2, 3, 256, 512) * 2 - 1
    assert torch.equal(g(x), x)
    opt = torch.optim.Adam(g.parameters(), 1e-3)
    target = (x * 0.5).detach()
    for _ in range(3):
        opt.zero_grad()
        (g(x) - target).abs().mean().backward()
        opt.step()
    assert (g(x) - target).abs().mean() < (x - target).abs().mean()


def test_blend_mask_feathers_the_band_top():
    m = band_blend_mask(512, 16)
    assert m.shape == (256, 512)
    assert m[0].max() == 0 and m[16:].min() == 1 and 0 < m[8, 0] < 1


def test_mfcc80_window_blocks():
    sr = 16000
    t = np.arange(sr) / sr
    x = (0.3 * np.sin(2 * np.pi * 220 * t) * (t > 0.5)).astype(np.float32)
    f = audio_features(x, sr, "mfcc80_window")
    assert f.shape == (25, 28, 80) and f.dtype == np.float32 and np.isfinite(f).all()
    # frame 24's block is centred at 0.96 s (rows 84..111 of 100 Hz): tone there, silence at frame 0
    assert f[24, 14, 0] > f[0, 14, 0] + 5
    # the block of frame t is rows s_t-12 .. s_t+15: frame t+1's block is frame t's shifted by 4 rows
    np.testing.assert_allclose(f[13, :-4], f[12, 4:], atol=1e-5)
