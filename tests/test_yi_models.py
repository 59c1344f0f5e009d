"""Yi et al. architectures: shapes, eq. 2-4 terms (parameter counts: tests/test_model_registry.py),
the memory network's update/retrieval/triplet loss, identity features."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nodes.model_registry import create_model
from nodes.yi import audio_to_exp_pose as a2e
from nodes.yi import memory_gan as mg


def test_audio_network_shapes_and_loss():
    torch.manual_seed(0)
    net = create_model("yi_audio_exp_pose", "tiny").eval()
    exp, pose = net(torch.randn(2, 7, 28, 12))
    assert exp.shape == (2, 7, 33) and pose.shape == (2, 7, 6)
    with pytest.raises(ValueError, match="MFCC windows"):
        net(torch.randn(2, 7, 13))
    zero = torch.zeros(1, 4, 6)
    steps = torch.arange(4.0).view(1, 4, 1).expand(1, 4, 6)
    total, logs = a2e.exp_pose_loss(torch.zeros(1, 4, 33), steps, torch.zeros(1, 4, 33), zero)
    # MSE(pose) = mean(0,1,4,9) = 3.5; continuity = 3 steps of 1 = 3
    assert logs["pose_mse"] == pytest.approx(3.5) and logs["pose_smooth"] == pytest.approx(3.0)
    assert float(total) == pytest.approx(0.2 * 3.5 + 0.01 * 3.0)


def test_audio_encoder_in_chunks_gives_the_same_values():
    """A long clip's MFCC windows go through the CNN a chunk at a time (flat memory): the same
    bytes as one pass over them all."""
    torch.manual_seed(0)
    net = create_model("yi_audio_exp_pose", "tiny").eval()
    x = torch.randn(1, 300, 28, 12)
    with torch.no_grad():
        whole, chunked = net(x), net(x, chunk=64)
    assert all(torch.equal(a, b) for a, b in zip(whole, chunked))


def test_lstm_is_causal():
    """Eq. 1: frame t depends on s_1..s_t only."""
    torch.manual_seed(0)
    net = create_model("yi_audio_exp_pose", "tiny").eval()
    x = torch.randn(1, 6, 28, 12)
    y = x.clone()
    y[:, 4:] += 1.0
    e1, _ = net(x)
    e2, _ = net(y)
    assert torch.allclose(e1[:, :4], e2[:, :4], atol=1e-6) and not torch.allclose(e1[:, 4:], e2[:, 4:])


def test_generator_shapes_and_eq3():
    torch.manual_seed(0)
    m = create_model("yi_memory_gan", "tiny").eval()
    window = torch.rand(2, 9, 128, 128) * 2 - 1
    ident = torch.nn.functional.normalize(torch.randn(2, m.cfg.identity_dim), dim=1)
    out, colour, att = m(window, ident)
    assert out.shape == colour.shape == (2, 3, 128, 128) and att.shape == (2, 1, 128, 128)
    assert torch.allclose(out, att * window[:, -3:] + (1 - att) * colour)
    assert 0 <= float(att.min().detach()) and float(att.max().detach()) <= 1
    with pytest.raises(ValueError, match="multiple of 128"):
        m(torch.zeros(1, 9, 96, 96), ident[:1])
    # AdaIN: a different identity changes the output
    out2, _, _ = m(window, ident.flip(0))
    assert not torch.allclose(out, out2)


def test_attention_losses():
    a = torch.zeros(1, 1, 4, 4)
    a[..., :, 2:] = 1.0  # one vertical edge of height 4
    l2, smooth = mg.attention_losses(a)
    assert float(l2) == pytest.approx(0.5) and float(smooth) == pytest.approx(4.0)


def _unit(x):
    return torch.nn.functional.normalize(x, dim=-1)


def test_memory_update_refresh_replace_and_retrieve():
    torch.manual_seed(0)
    mem = mg.IdentityMemory(size=8, key_dim=4, value_dim=3)
    with pytest.raises(ValueError, match="empty"):
        mem.retrieve(_unit(torch.randn(1, 4)))
    keys = torch.eye(4)
    values = torch.eye(3)[[0, 1, 2, 0]]
    refreshed, replaced = mem.update(keys, values, threshold=0.9)
    assert (refreshed, replaced) == (0, 4) and mem.n_filled == 4
    got, score = mem.retrieve(_unit(keys + 0.1 * torch.randn(4, 4)))
    assert torch.allclose(got, values) and (score > 0.9).all()
    # same identity near an existing key: the key is refreshed, nothing new is written
    q = _unit(torch.tensor([[1.0, 0.2, 0, 0]]))
    slot = int((mem.keys @ keys[0]).masked_fill(~mem.filled, -2).argmax())
    assert mem.update(q, values[:1], 0.9) == (1, 0) and mem.n_filled == 4
    assert torch.allclose(mem.keys[slot], _unit(keys[0] + q[0]), atol=1e-6) and float(mem.age[slot]) == 0.0
    # a new identity near key 0: replaced into an empty slot, then retrieved
    new_value = _unit(torch.tensor([[0.0, 1.0, 1.0]]))
    assert mem.update(q, new_value, 0.9) == (0, 1) and mem.n_filled == 5
    got, _ = mem.retrieve(q)
    assert torch.allclose(got, new_value)


def test_memory_replaces_oldest_when_full():
    torch.manual_seed(0)
    mem = mg.IdentityMemory(size=3, key_dim=3, value_dim=3, age_noise=0.0)
    for i in range(3):
        mem.update(torch.eye(3)[i:i + 1], torch.eye(3)[i:i + 1], 0.9)
    oldest = int(mem.age.argmax())
    mem.update(_unit(torch.ones(1, 3)), _unit(torch.tensor([[1.0, -1.0, 0.0]])), 0.9)
    assert float(mem.age[oldest]) == 0.0 and mem.n_filled == 3


def test_triplet_loss_pulls_same_identity_closer():
    torch.manual_seed(0)
    mem = mg.IdentityMemory(size=16, key_dim=2, value_dim=2)
    ang = torch.linspace(0, 3.0, 8)
    mem.update(torch.stack([ang.cos(), ang.sin()], 1), torch.eye(2)[(torch.arange(8) % 2)], 0.5)
    # query nearest to an item of the other identity -> positive loss; its gradient moves it away
    q = torch.tensor([[ang[0].cos(), ang[0].sin()]], requires_grad=True)
    loss = mem.triplet_loss(q, torch.eye(2)[1:2], threshold=0.5, top_k=8, margin=0.3)
    assert loss.item() > 0
    loss.backward()
    moved = (q - 0.1 * q.grad).detach()
    assert float(mem.triplet_loss(moved, torch.eye(2)[1:2], threshold=0.5, top_k=8, margin=0.3)) < loss.item()
    # a query that sits on an item of its own identity, far from the others: no loss
    q2 = mem.keys[mem.filled][:1].clone()
    v2 = mem.values[mem.filled][:1].clone()
    assert float(mem.triplet_loss(q2, v2, 0.5, top_k=8, margin=0.01)) == pytest.approx(0.0, abs=1e-6)


def test_smooth_features_reduces_jitter():
    torch.manual_seed(0)
    base = _unit(torch.randn(1, 8)).expand(40, 8)
    noisy = _unit(base + 0.3 * torch.randn(40, 8))
    smooth = mg.smooth_features(noisy, sigma=2.0)
    jitter = lambda f: float((f[1:] - f[:-1]).norm(dim=1).mean())  # noqa: E731
    assert jitter(smooth) < 0.5 * jitter(noisy)
    assert torch.allclose(smooth.norm(dim=1), torch.ones(40))


def test_own_identity_features():
    from nodes.face.identity import OWN_DIM, IdentityFeatures
    from nodes.face.model import load_face_model

    model = load_face_model()
    pts = model.mean[:, :2] * 0.8 + 64.0
    lm = np.concatenate([pts, np.repeat(pts[:1], 10, 0)])[None].astype(np.float32)
    rng = np.random.default_rng(0)
    img = (rng.random((1, 128, 128, 3)) * 40 + 100).astype(np.uint8)
    feats = IdentityFeatures("own", model=model)
    a = feats(img, lm, np.zeros(60))
    b = feats(np.clip(img.astype(int) + [60, 0, -40], 0, 255).astype(np.uint8), lm, np.zeros(60))
    assert a.shape == (1, OWN_DIM) and np.allclose(np.linalg.norm(a, axis=1), 1)
    assert float((a * b).sum()) < float((a * a).sum()) - 1e-3  # a different skin tone moves the feature
    with pytest.raises(ValueError, match="ArcFace"):
        IdentityFeatures("arcface", model=model)


def test_arcface_loader_reads_its_own_layout(tmp_path):
    from nodes.face.identity import _iresnet, load_arcface

    net = _iresnet([1, 1, 1, 1])
    path = tmp_path / "backbone.pth"
    torch.save(net.state_dict(), path)
    loaded = load_arcface(path)
    x = torch.randn(2, 3, 112, 112)
    net.eval()
    assert torch.allclose(loaded(x), net(x), atol=1e-5)
    torch.save({"conv1.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="IResNet"):
        load_arcface(path)


def test_own_threshold_keeps_the_pseudo_identities_apart():
    """TrainMemoryGAN's 4 recoloured pseudo-identities of the sample portrait (at the 128-px
    training size) must be different identities at the own embedding's default threshold, and
    the same face moved a few pixels with pixel noise the same one (docs/yi.md: 0.97 merged the
    closest pair, cosine ~0.989)."""
    import cv2

    from nodes.face.fitting import fit_coefficients
    from nodes.face.identity import THRESHOLDS, IdentityFeatures
    from nodes.face.landmarks import detect_landmarks
    from nodes.face.model import load_face_model
    from nodes.io.media import read_image
    from nodes.yi.train_memorygan import recolour

    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    image = cv2.resize(read_image(root / "assets/samples/portrait.png"), (128, 128), interpolation=cv2.INTER_AREA)
    lms, found = detect_landmarks(image[None], tracking=False)
    assert found.all()
    model = load_face_model()
    shape = fit_coefficients(model, lms).shape
    feats = IdentityFeatures("own", model=model)
    variants = np.concatenate([feats(recolour(image[None], k), lms, shape) for k in range(4)])
    cos = variants @ variants.T
    threshold = THRESHOLDS["own"]
    assert cos[~np.eye(4, dtype=bool)].max() < threshold, np.round(cos, 4)
    moved = cv2.warpAffine(image, np.float32([[1, 0, 3], [0, 1, -2]]), (128, 128), borderMode=cv2.BORDER_REPLICATE)
    moved = np.clip(moved + np.random.default_rng(0).integers(-4, 5, moved.shape), 0, 255).astype(np.uint8)
    moved_lms = lms.copy()
    moved_lms[..., :2] += np.float32([3, -2])
    same = feats(moved[None], moved_lms, shape)
    assert float(same[0] @ variants[0]) > threshold
    assert THRESHOLDS["arcface"] == 0.98  # the official iden_thres
