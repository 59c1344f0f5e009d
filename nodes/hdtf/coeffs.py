"""The animation parameters of HDTF §3 in the project's MorphCoeffs conventions (nodes/types.py).

expression (T, 33) = 28 mouth + 5 eyebrow coefficients; pose (T, 6) = pitch, yaw, roll (rad),
tx, ty (pixels of image_size), log-scale. The generator works with pose *deltas* from the
reference frame's pose (the paper's p^hed "difference sequence"), with tx, ty divided by the
image width and height so that one model serves every resolution.
"""
from __future__ import annotations

import numpy as np

N_MOUTH, N_BROW = 28, 5


def split_expression(expression: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if expression.shape[-1] != N_MOUTH + N_BROW:
        raise ValueError(f"expected {N_MOUTH + N_BROW} expression coefficients (28 mouth + 5 brow), got {expression.shape[-1]}")
    return expression[..., :N_MOUTH], expression[..., N_MOUTH:]


def pose_delta(pose: np.ndarray, ref_pose: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    h, w = image_size
    d = (np.asarray(pose, np.float32) - np.asarray(ref_pose, np.float32)).copy()
    d[..., 3] /= w
    d[..., 4] /= h
    return d


def apply_pose_delta(ref_pose: np.ndarray, delta: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    h, w = image_size
    d = np.asarray(delta, np.float32).copy()
    d[..., 3] *= w
    d[..., 4] *= h
    return (np.asarray(ref_pose, np.float32) + d).astype(np.float32)
