"""Head-pose deltas in the project's MorphCoeffs pose convention (nodes/types.py): pose (T, 6) =
pitch, yaw, roll (rad), tx, ty (pixels of image_size), log-scale. A delta is taken from a
reference pose with tx, ty divided by the image width and height, so that a model predicting
deltas serves every resolution (HDTF's animation generator, Yi's audio -> pose network).
"""
from __future__ import annotations

import numpy as np


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
