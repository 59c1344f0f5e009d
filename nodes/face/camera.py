"""Scaled orthographic camera shared by the fitting, the dense flow and the synthetic generator.

Model frame: x to the subject's left (image right in a frontal view), y down, z away from the
camera (right-handed; the nose tip has the smallest z). A pose row is
(pitch, yaw, roll, tx, ty, log_scale) and projects a model point X to pixels as

    p = exp(log_scale) * (R X)[:2] + (tx, ty),        R = Rz(roll) @ Ry(yaw) @ Rx(pitch)

(paper eq. 2 with s = exp(log_scale)). Signs, seen in the image: positive pitch tips the nose
down, positive yaw turns the nose towards image left, positive roll turns the face clockwise.
The depth of a point is exp(log_scale) * (R X)[2] (smaller = nearer).
"""
from __future__ import annotations

import numpy as np


def rotation_matrix(pitch, yaw, roll) -> np.ndarray:
    """R = Rz(roll) Ry(yaw) Rx(pitch) for scalars or arrays (shape (..., 3, 3))."""
    pitch, yaw, roll = (np.asarray(a, dtype=np.float64) for a in (pitch, yaw, roll))
    cp, sp, cy, sy, cr, sr = np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw), np.cos(roll), np.sin(roll)
    r = np.empty(np.broadcast(pitch, yaw, roll).shape + (3, 3))
    r[..., 0, 0] = cr * cy
    r[..., 0, 1] = cr * sy * sp - sr * cp
    r[..., 0, 2] = cr * sy * cp + sr * sp
    r[..., 1, 0] = sr * cy
    r[..., 1, 1] = sr * sy * sp + cr * cp
    r[..., 1, 2] = sr * sy * cp - cr * sp
    r[..., 2, 0] = -sy
    r[..., 2, 1] = cy * sp
    r[..., 2, 2] = cy * cp
    return r


def euler_angles(r: np.ndarray) -> np.ndarray:
    """Inverse of `rotation_matrix`: (..., 3, 3) -> (..., 3) as (pitch, yaw, roll)."""
    r = np.asarray(r, dtype=np.float64)
    yaw = np.arcsin(np.clip(-r[..., 2, 0], -1.0, 1.0))
    pitch = np.arctan2(r[..., 2, 1], r[..., 2, 2])
    roll = np.arctan2(r[..., 1, 0], r[..., 0, 0])
    return np.stack([pitch, yaw, roll], -1)


def project(vertices: np.ndarray, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project model-frame vertices (..., N, 3) with poses (..., 6) -> pixels (..., N, 2), depth (..., N)."""
    pose = np.asarray(pose, dtype=np.float64)
    r = rotation_matrix(pose[..., 0], pose[..., 1], pose[..., 2])
    s = np.exp(pose[..., 5])[..., None, None]
    cam = s * np.einsum("...ij,...nj->...ni", r, vertices)
    return cam[..., :2] + pose[..., None, 3:5], cam[..., 2]
