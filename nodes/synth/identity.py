"""More identities from one portrait: colour/mirror/zoom variants and 3DMM identity samples.

The project has a single public-domain portrait, so a dataset's identities are made from it:
identity 0 is the portrait itself; identity k > 0 is drawn from (dataset seed, k):

1. an image variant: mirrored (half of them), zoomed 0.92-1.12x about the centre, hue rotated
   +-8 degrees, saturation x0.8-1.2, brightness gamma 0.8-1.25 (`portrait_variant`);
2. landmarks detected (MediaPipe) and the 3DMM fitted again on the variant;
3. a new face shape: the fitted identity coefficients plus a draw from the model's prior
   (N(0, 0.8^2) on the 22 anatomical components — face width, jaw, nose, lips, eye spacing —,
   N(0, 0.5^2) on the smooth random ones), and with probability 1/2 a different rest mouth (the
   fitted mouth activations scaled by 0.3-1: less smile, lips nearer closed);
4. the variant warped by the 3DMM's dense flow from its fitted face to the new one (the
   renderer of the synthetic clips, `render.render_chunks`); its landmarks moved by the model's
   motion, exactly as the clips' ground-truth landmarks are (`render.landmark_tracks`).

The result is a `Portrait` whose coefficients are the new face's, so the clips rendered from it
carry that identity in `coeffs/shape`. Each identity also has a speaking style: its clips'
articulation amplitude is multiplied by `mouth_gain` (0.75-1.3) and their head motion by
`head_gain` (0.6-1.5) — a person-specific trait for a style input (HDTF's AdaIN) to learn.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

N_ANATOMICAL = 22  # the identity basis's designed components come first (nodes/face/model.py)


def portrait_variant(image: np.ndarray, *, mirror: bool = False, zoom: float = 1.0, hue: float = 0.0,
                     saturation: float = 1.0, gamma: float = 1.0) -> np.ndarray:
    """A visibly different uint8 RGB image: mirror, zoom about the centre (edges replicated),
    hue rotation in degrees, saturation factor, brightness gamma (<1 brighter)."""
    import cv2

    out = image[:, ::-1] if mirror else image
    h, w = out.shape[:2]
    if zoom != 1.0:
        m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), 0.0, zoom)
        out = cv2.warpAffine(np.ascontiguousarray(out), m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    hsv = cv2.cvtColor(np.ascontiguousarray(out), cv2.COLOR_RGB2HSV_FULL).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + hue / 360.0 * 256.0) % 256.0
    hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0, 255)
    hsv[..., 2] = 255.0 * (hsv[..., 2] / 255.0) ** gamma
    return cv2.cvtColor(np.clip(hsv + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB_FULL)


@dataclasses.dataclass
class IdentityPlan:
    index: int
    mirror: bool = False
    zoom: float = 1.0
    hue: float = 0.0
    saturation: float = 1.0
    gamma: float = 1.0
    shape_seed: int = 0
    shape_std: tuple[float, float] = (0.0, 0.0)  # anatomical, random-field components
    rest_mouth_scale: float = 1.0
    # speaking style: this face's articulation and head-motion amplitudes (the clips' own draws
    # are multiplied by them), so an identity input has something to predict
    mouth_gain: float = 1.0
    head_gain: float = 1.0

    def describe(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def plan_identity(seed: int, k: int) -> IdentityPlan:
    """Identity k's draws (identity 0 is the portrait unchanged)."""
    if k == 0:
        return IdentityPlan(0)
    rng = np.random.default_rng([seed, k, 0x1D])
    return IdentityPlan(
        index=k, mirror=bool(rng.random() < 0.5), zoom=round(float(rng.uniform(0.92, 1.12)), 3),
        hue=round(float(rng.uniform(-8, 8)), 1), saturation=round(float(rng.uniform(0.8, 1.2)), 3),
        gamma=round(float(rng.uniform(0.8, 1.25)), 3), shape_seed=int(rng.integers(2**31 - 1)),
        shape_std=(0.8, 0.5), rest_mouth_scale=round(float(rng.uniform(0.3, 1.0)), 3) if rng.random() < 0.5 else 1.0,
        mouth_gain=round(float(np.exp(rng.uniform(np.log(0.75), np.log(1.3)))), 3),
        head_gain=round(float(np.exp(rng.uniform(np.log(0.6), np.log(1.5)))), 3),
    )


def moved_landmarks(model, landmarks: np.ndarray, shape: np.ndarray, expression: np.ndarray, pose: np.ndarray,
                    new_shape: np.ndarray, new_expression: np.ndarray) -> np.ndarray:
    """(478, 2) landmarks after the face changes from (shape, expression) to (new_shape, new_expression)."""
    from .render import Driving, landmark_tracks

    drive = Driving(new_shape, new_expression[None].astype(np.float32), pose.reshape(1, 6).astype(np.float32),
                    np.zeros(1, np.float32))
    return landmark_tracks(model, landmarks, shape, expression, pose, drive)[0]


def make_identity(image: np.ndarray, model, plan: IdentityPlan, *, base=None, device: str = "cpu"):
    """The `Portrait` of identity `plan` made from a square portrait `image` (any size).

    `base` (a Portrait of `image` at its own size) saves detecting and fitting it again for
    identity 0 and for variants that keep the geometry.
    """
    from nodes.face.fitting import fit_coefficients
    from nodes.face.landmarks import detect_landmarks

    from .generate import Portrait
    from .render import Driving, render_chunks
    from .visemes import N_MOUTH

    variant = portrait_variant(image, mirror=plan.mirror, zoom=plan.zoom, hue=plan.hue, saturation=plan.saturation,
                               gamma=plan.gamma)
    if base is not None and not plan.mirror and plan.zoom == 1.0:
        landmarks, shape, expression, pose = base.landmarks, base.shape, base.expression, base.pose
    else:
        lms, found = detect_landmarks(variant[None], tracking=False)
        if not found[0]:
            raise ValueError(f"identity {plan.index}: no face found in the portrait variant {plan.describe()}")
        fit = fit_coefficients(model, lms)
        landmarks, shape, expression, pose = lms[0], fit.shape, fit.expression[0], fit.pose[0]
    landmarks = np.asarray(landmarks, np.float32)[..., :2]
    shape, expression, pose = (np.asarray(a, np.float32).reshape(-1) for a in (shape, expression, pose))
    if plan.index == 0 or (plan.shape_std == (0.0, 0.0) and plan.rest_mouth_scale == 1.0):
        return Portrait(np.ascontiguousarray(variant), landmarks, shape, expression, pose)
    rng = np.random.default_rng(plan.shape_seed)
    std = np.full(len(shape), plan.shape_std[1], np.float32)
    std[:N_ANATOMICAL] = plan.shape_std[0]
    new_shape = np.clip(shape + rng.standard_normal(len(shape)).astype(np.float32) * std, -3.0, 3.0).astype(np.float32)
    new_expression = expression.copy()
    new_expression[:N_MOUTH] *= plan.rest_mouth_scale
    drive = Driving(new_shape, new_expression[None], pose[None], np.zeros(1, np.float32))
    (_, frames), = list(render_chunks(variant, model, shape, expression, pose, drive, chunk=1, device=device))
    new_landmarks = moved_landmarks(model, landmarks, shape, expression, pose, new_shape, new_expression)
    return Portrait(frames[0], new_landmarks.astype(np.float32), new_shape, new_expression, pose)
