"""Identity features f_t for the memory-augmented GAN (Yi et al. §3.4).

The paper feeds the ground-truth frame into ArcFace (Deng et al. 2019). ArcFace weights cannot
be downloaded here, so two kinds exist, both unit vectors (cosine = dot product, as the
memory's threshold triplet loss assumes):

- `arcface` (the user gives an insightface `arcface_torch` IResNet state dict, e.g.
  `backbone.pth` of r50/r100): the face is aligned to ArcFace's 112x112 five-point template
  (eye centres, nose tip and mouth corners from the MediaPipe landmarks) and embedded (512-D).
- `own` (default; no weights needed): 84 numbers that say who the face is and how it looks:
  the 60 identity coefficients of the fitted 3DMM (face geometry, divided by 3), the mean
  colour of five face regions sampled at their landmarks (inner face, lips, eyes, brows, nose:
  15), the colour spread over the inner face (3), and the mean and spread of the colour in a
  ring outside the face oval (hair, neck, background: 6). Colours are mapped from [0, 1] to
  [-1, 1] (spreads x 4) after a Gaussian blur of 1.5 % of the face height, so single pixels do
  not matter. The vector is L2-normalised.
"""
from __future__ import annotations

import os
from typing import Literal

import numpy as np

OWN_DIM = 84
ARCFACE_DIM = 512
DIMS = {"own": OWN_DIM, "arcface": ARCFACE_DIM}
# same-identity cosine: the official default for ArcFace (iden_thres). For `own` (docs/yi.md):
# frames of one synthetic clip give >= 0.9999, its 4 recoloured pseudo-identities 0.81-0.988
# apart, so 0.99 keeps all four apart (0.97 merged the two closest)
THRESHOLDS = {"arcface": 0.98, "own": 0.99}
_OWN_REGIONS = ("inner_face", "lips", "eyes", "brows", "nose")
# ArcFace's 112x112 template: image-left eye, image-right eye, nose tip, mouth corners (left, right)
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], np.float32)

IdentityKind = Literal["own", "arcface"]


def _sample(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Bilinear colours (N, 3) in [0, 1] at pixel points (N, 2) (clamped to the image)."""
    h, w = image.shape[:2]
    x = np.clip(points[:, 0], 0, w - 1.001)
    y = np.clip(points[:, 1], 0, h - 1.001)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    im = image.astype(np.float32) / 255.0
    return ((1 - fx) * (1 - fy) * im[y0, x0] + fx * (1 - fy) * im[y0, x0 + 1]
            + (1 - fx) * fy * im[y0 + 1, x0] + fx * fy * im[y0 + 1, x0 + 1])


def own_identity(image: np.ndarray, landmarks: np.ndarray, shape: np.ndarray, model) -> np.ndarray:
    """The `own` 84-D identity feature of one frame (see the module docstring)."""
    import cv2

    lm = np.asarray(landmarks, np.float32)[:, :2]
    oval = lm[model.loops["face_oval"]]
    face_h = float(oval[:, 1].max() - oval[:, 1].min())
    if not np.isfinite(lm).all() or face_h < 4:
        raise ValueError("the landmarks do not outline a face (non-finite or under 4 pixels tall)")
    blurred = cv2.GaussianBlur(image, (0, 0), sigmaX=max(0.5, 0.015 * face_h))
    parts = [np.clip(np.asarray(shape, np.float32).reshape(-1)[:60] / 3.0, -3, 3)]
    for region in _OWN_REGIONS:
        parts.append(_sample(blurred, lm[:468][model.regions[region]]).mean(0) * 2 - 1)
    inner = _sample(blurred, lm[:468][model.regions["inner_face"]])
    parts.append(inner.std(0) * 4)
    centre = oval.mean(0)
    ring = np.concatenate([centre + (oval - centre) * s for s in (1.25, 1.5)])
    around = _sample(blurred, ring)
    parts += [around.mean(0) * 2 - 1, around.std(0) * 4]
    v = np.concatenate(parts).astype(np.float32)
    return v / max(float(np.linalg.norm(v)), 1e-8)


# --- ArcFace (insightface arcface_torch IResNet layout, so its state dicts load as they are) ---


def _iresnet(layers: list[int]):
    import torch
    from torch import nn

    class IBasicBlock(nn.Module):
        def __init__(self, c_in: int, c: int, stride: int) -> None:
            super().__init__()
            self.bn1 = nn.BatchNorm2d(c_in, eps=1e-5)
            self.conv1 = nn.Conv2d(c_in, c, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(c, eps=1e-5)
            self.prelu = nn.PReLU(c)
            self.conv2 = nn.Conv2d(c, c, 3, stride, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(c, eps=1e-5)
            self.downsample = None
            if stride != 1 or c_in != c:
                self.downsample = nn.Sequential(nn.Conv2d(c_in, c, 1, stride, bias=False), nn.BatchNorm2d(c, eps=1e-5))

        def forward(self, x):
            out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
            return out + (x if self.downsample is None else self.downsample(x))

    class IResNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
            self.prelu = nn.PReLU(64)
            c = 64
            for i, (n, w) in enumerate(zip(layers, (64, 128, 256, 512))):
                blocks = [IBasicBlock(c, w, 2)] + [IBasicBlock(w, w, 1) for _ in range(n - 1)]
                setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
                c = w
            self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
            self.fc = nn.Linear(512 * 7 * 7, ARCFACE_DIM)
            self.features = nn.BatchNorm1d(ARCFACE_DIM, eps=1e-5)

        def forward(self, x):
            x = self.prelu(self.bn1(self.conv1(x)))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.features(self.fc(torch.flatten(self.bn2(x), 1)))

    return IResNet()


def load_arcface(path: str | os.PathLike):
    """An IResNet from an arcface_torch state dict; the depth is read from the file."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"ArcFace weights {path} cannot be read ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    layers = [len({k.split(".")[1] for k in state if k.startswith(f"layer{i}.")}) for i in range(1, 5)]
    if min(layers) == 0:
        raise ValueError(f"{path} is not an arcface_torch IResNet state dict (no layer1..layer4 blocks)")
    net = _iresnet(layers)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path} does not fit an IResNet with blocks {layers}: {exc}") from None
    return net.eval()


def five_points(landmarks: np.ndarray, model) -> np.ndarray:
    """ArcFace's five points from MediaPipe landmarks: eye centres, nose tip, mouth corners,
    each pair ordered by image x."""
    lm = np.asarray(landmarks, np.float32)[:, :2]
    eyes = sorted((lm[:468][model.regions[r]].mean(0) for r in ("eye_left", "eye_right")), key=lambda p: p[0])
    mouth = sorted((lm[61], lm[291]), key=lambda p: p[0])
    return np.stack([eyes[0], eyes[1], lm[1], mouth[0], mouth[1]]).astype(np.float32)


def align_arcface(image: np.ndarray, landmarks: np.ndarray, model) -> np.ndarray:
    """The 112x112 aligned face ArcFace expects (similarity transform onto its template)."""
    import cv2

    m, _ = cv2.estimateAffinePartial2D(five_points(landmarks, model), ARCFACE_TEMPLATE, method=cv2.LMEDS)
    if m is None:
        raise ValueError("cannot align the face to ArcFace's template")
    return cv2.warpAffine(image, m, (112, 112), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


class IdentityFeatures:
    """f_t for frames: `own` (default) or `arcface` (needs its weights)."""

    def __init__(self, kind: IdentityKind = "own", arcface_weights: str | os.PathLike | None = None, model=None) -> None:
        from nodes.face.model import load_face_model

        self.kind = kind
        self.model = model or load_face_model()
        self.net = None
        if kind == "arcface":
            if not arcface_weights:
                raise ValueError("this model uses ArcFace identity features: give the ArcFace (arcface_torch IResNet) weights file")
            self.net = load_arcface(arcface_weights)
        elif kind != "own":
            raise ValueError(f"unknown identity feature kind {kind!r} (own or arcface)")

    @property
    def dim(self) -> int:
        return DIMS[self.kind]

    def __call__(self, frames: np.ndarray, landmarks: np.ndarray, shape: np.ndarray) -> np.ndarray:
        """Unit features (T, dim) for frames (T, H, W, 3) with landmarks (T, N, 2|3)."""
        if self.net is None:
            return np.stack([own_identity(f, lm, shape, self.model) for f, lm in zip(frames, landmarks)])
        import torch

        faces = np.stack([align_arcface(f, lm, self.model) for f, lm in zip(frames, landmarks)])
        x = torch.from_numpy(faces).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        with torch.no_grad():
            out = torch.nn.functional.normalize(self.net(x), dim=1)
        return out.numpy().astype(np.float32)
