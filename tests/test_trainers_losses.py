"""Shared losses and discriminators against independent computations."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from trainers.discriminators import MultiScalePatchDiscriminator, TemporalPatchDiscriminator
from trainers.losses import (
    PerceptualLoss,
    feature_matching_loss,
    image_ssim,
    l1_loss,
    lsgan_d_loss,
    lsgan_g_loss,
    multiscale_structure_loss,
    sequence_ssim,
    sequence_ssim_loss,
)
from trainers.vgg import VGGFace, VGGFeatures, make_features, relu_indices


def test_sequence_ssim_matches_eq5_per_dimension():
    rng = np.random.default_rng(0)
    p, t = rng.normal(size=(3, 40, 5)), rng.normal(size=(3, 40, 5))
    c1, c2 = 1e-4, 9e-4
    want = []
    for b in range(3):
        for i in range(5):
            x, y = p[b, :, i], t[b, :, i]
            cov = np.mean((x - x.mean()) * (y - y.mean()))
            want.append((2 * x.mean() * y.mean() + c1) * (2 * cov + c2) / ((x.mean() ** 2 + y.mean() ** 2 + c1) * (x.var() + y.var() + c2)))
    got = sequence_ssim(torch.tensor(p), torch.tensor(t), c1, c2)
    assert float(got) == pytest.approx(np.mean(want), rel=1e-9)
    assert float(sequence_ssim_loss(torch.tensor(p), torch.tensor(p))) == pytest.approx(0.0, abs=1e-12)


def test_image_ssim_matches_skimage():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(1)
    a = rng.uniform(size=(32, 32)).astype(np.float64)
    b = np.clip(a + rng.normal(scale=0.1, size=a.shape), 0, 1)
    want = structural_similarity(a, b, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    got = image_ssim(torch.tensor(a)[None, None], torch.tensor(b)[None, None])
    assert float(got) == pytest.approx(want, abs=1e-6)
    assert float(image_ssim(torch.tensor(a)[None, None], torch.tensor(a)[None, None])) == pytest.approx(1.0)


def test_lsgan_and_feature_matching_values():
    real = [[torch.ones(2, 4), torch.full((2, 1, 3), 1.0)]]
    fake = [[torch.zeros(2, 4), torch.full((2, 1, 3), 0.5)]]
    assert float(lsgan_d_loss(real, fake)) == pytest.approx(0.25)  # (1-1)^2 + 0.5^2
    assert float(lsgan_g_loss(fake)) == pytest.approx(0.25)
    assert float(feature_matching_loss(real, fake)) == pytest.approx(1.0)  # |1 - 0| on the one feature map
    assert float(feature_matching_loss(real, real)) == 0.0
    assert float(l1_loss(torch.ones(3), torch.zeros(3))) == 1.0


def test_discriminator_shapes_and_gradients():
    d1 = TemporalPatchDiscriminator(param_dim=5, cond_dim=15, channels=16, n_layers=3)
    out = d1(torch.randn(2, 32, 5), torch.randn(2, 32, 15))
    assert len(out) == 1 and out[0][-1].shape[:2] == (2, 1) and out[0][-1].shape[-1] == 8
    d2 = MultiScalePatchDiscriminator(in_channels=3, cond_channels=3, channels=8, n_layers=3, num_scales=3)
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    outs = d2(x, torch.rand(2, 3, 64, 64))
    assert len(outs) == 3 and outs[0][-1].shape[-1] > outs[1][-1].shape[-1] > outs[2][-1].shape[-1]
    lsgan_g_loss(outs).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_perceptual_fallback_is_structural():
    loss = PerceptualLoss(None)
    assert "fallback" in loss.kind
    img = torch.rand(2, 3, 64, 64)
    assert float(loss(img, img)) == pytest.approx(0.0, abs=1e-6)
    blurred = torch.nn.functional.avg_pool2d(img, 3, 1, 1)
    shifted_const = (img + 0.02).clamp(0, 1)
    # the fallback penalises losing structure more than a small uniform brightness change
    assert float(loss(blurred, img)) > float(loss(shifted_const, img)) > 0
    assert float(multiscale_structure_loss(blurred, img)) == pytest.approx(float(loss(blurred, img)))


def test_vgg_layout_matches_torchvision_and_loads_weights(tmp_path):
    # torchvision's vgg19 `features`: ReLUs of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 at 1, 6, 11, 20, 29
    assert [relu_indices("vgg19")[k] for k in ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")] == [1, 6, 11, 20, 29]
    assert len(make_features("vgg19")) == 37 and len(make_features("vgg16")) == 31
    ref = make_features("vgg19")
    state = {f"features.{k}": v for k, v in ref.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(10, 20)  # a full torchvision file also has a classifier (ignored)
    state["classifier.0.bias"] = torch.zeros(10)
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    loss = PerceptualLoss(path)
    assert loss.kind.startswith("vgg19")
    torch.testing.assert_close(loss.vgg.features[0].weight, ref[0].weight)
    a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    assert float(loss(a, a)) == 0.0 and float(loss(a, b)) > 0
    assert len(VGGFeatures("vgg19")(a)) == 5
    torch.save({"features.0.weight": torch.zeros(8, 3, 3, 3), "features.0.bias": torch.zeros(8)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="bad.pth"):
        PerceptualLoss(tmp_path / "bad.pth")


def test_vggface_loads_a_state_dict_in_layer_order(tmp_path):
    model = VGGFace()
    path = tmp_path / "vgg_face.pth"
    # VGG-Face conversions name layers conv1_1 ... fc7; only the order and shapes matter
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    state = {}
    for i, m in enumerate(convs + [model.fc6, model.fc7]):
        state[f"layer{i:02d}.weight"] = torch.full_like(m.weight, 0.001 * (i + 1))
        state[f"layer{i:02d}.bias"] = torch.zeros_like(m.bias)
    torch.save(state, path)
    loaded = VGGFace.from_file(path)
    torch.testing.assert_close(loaded.fc7.weight, state["layer14.weight"])
    emb = loaded(torch.rand(2, 3, 100, 100))
    assert emb.shape == (2, 4096)
