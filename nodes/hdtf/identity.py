"""Reference identity embeddings for the animation generator's AdaIN style (HDTF §4.1).

The paper embeds the reference image with a pre-trained VGG-Face. Its weights cannot be
downloaded here, so:
- `kind="vggface"` (the user gives a VGG-Face state-dict file): the L2-normalised fc7 vector
  of the face crop (4096 dims), as the paper;
- `kind="morph"` (the default): a documented fallback of 66 numbers that also describe who is
  speaking: the 60 identity (shape) coefficients of the fitted 3DMM — face geometry — and the
  mean and standard deviation of R, G, B over the face region (the convex hull of the
  landmarks) — skin tone and contrast. Both are computed from the same reference frame the
  generator animates, so training and inference see the same quantities.
"""
from __future__ import annotations

import numpy as np

MORPH_DIM = 66
VGGFACE_DIM = 4096


def spread_floor(kind: str) -> np.ndarray:
    """The smallest per-dimension spread used to standardise identities: how much the embedding
    varies between people a priori. Training sets with few identities have almost no spread,
    and standardising by it would put every new face far outside what the model saw.
    morph: shape coefficients are N(0, 1) under the 3DMM prior; face colour means ~0.1 and
    colour spreads ~0.05 between people. vggface: unit-norm 4096-d vectors (~1/64 per entry)."""
    if kind == "vggface":
        return np.full(VGGFACE_DIM, 1.0 / 64, np.float32)
    return np.concatenate([np.ones(60), np.full(3, 0.1), np.full(3, 0.05)]).astype(np.float32)


def face_mask(landmarks: np.ndarray, height: int, width: int) -> np.ndarray:
    """Boolean mask of the convex hull of the landmarks (N, 2) in pixels."""
    import cv2

    pts = np.round(np.asarray(landmarks, np.float64)[:, :2]).astype(np.int32)
    hull = cv2.convexHull(pts)
    mask = np.zeros((height, width), np.uint8)
    cv2.fillConvexPoly(mask, hull, 1)
    return mask.astype(bool)


def appearance_statistics(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Mean and standard deviation of R, G, B in [0, 1] over the face region: (6,)."""
    mask = face_mask(landmarks, *image.shape[:2])
    if mask.sum() < 16:
        raise ValueError("the landmarks enclose fewer than 16 pixels: no usable face region in the reference image")
    px = image[mask].astype(np.float32) / 255.0
    return np.concatenate([px.mean(0), px.std(0)]).astype(np.float32)


def morph_identity(image: np.ndarray, landmarks: np.ndarray, shape_coeffs: np.ndarray) -> np.ndarray:
    """The fallback embedding: 60 shape coefficients + 6 appearance statistics."""
    shape = np.asarray(shape_coeffs, np.float32).reshape(-1)
    if shape.shape != (60,):
        raise ValueError(f"expected 60 shape coefficients, got {shape.shape[0]}")
    return np.concatenate([shape, appearance_statistics(image, landmarks)])


def face_crop(image: np.ndarray, landmarks: np.ndarray, margin: float = 1.3) -> np.ndarray:
    """A square crop around the landmarks' box, enlarged by `margin` (clamped to the image)."""
    lo, hi = landmarks[:, :2].min(0), landmarks[:, :2].max(0)
    centre, half = (lo + hi) / 2, (hi - lo).max() * margin / 2
    h, w = image.shape[:2]
    x0, y0 = int(max(0, centre[0] - half)), int(max(0, centre[1] - half))
    x1, y1 = int(min(w, centre[0] + half + 1)), int(min(h, centre[1] + half + 1))
    return image[y0:y1, x0:x1]


def vggface_identity(model, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """VGG-Face fc7 embedding of the face crop (the paper's identity embedding)."""
    import torch

    crop = face_crop(image, landmarks)
    x = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None].float() / 255.0
    with torch.no_grad():
        return model(x)[0].numpy().astype(np.float32)


class IdentityEncoder:
    """Computes the embedding the generator was trained with (`kind` from its config)."""

    def __init__(self, kind: str = "morph", vggface_weights: str | None = None) -> None:
        self.kind = kind
        self.model = None
        if kind == "vggface":
            if not vggface_weights:
                raise ValueError("this model uses VGG-Face identity embeddings: give the VGG-Face weights file")
            from trainers.vgg import VGGFace

            self.model = VGGFace.from_file(vggface_weights)
        elif kind != "morph":
            raise ValueError(f"unknown identity embedding {kind!r} (morph or vggface)")

    @property
    def dim(self) -> int:
        return VGGFACE_DIM if self.kind == "vggface" else MORPH_DIM

    def __call__(self, image: np.ndarray, landmarks: np.ndarray, shape_coeffs: np.ndarray) -> np.ndarray:
        if self.model is not None:
            return vggface_identity(self.model, image, landmarks)
        return morph_identity(image, landmarks, shape_coeffs)
