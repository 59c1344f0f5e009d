"""Head poses for Audio2Head: the 6-D camera-space pose and its 3-D box drawing (§3.3).

Audio2Head's pose is a rotation plus a translation in the camera's coordinate system (OpenFace
poses in the paper). Here a `HeadPose` row is (pitch, yaw, roll, tx, ty, tz): the rotation of
the project's 3DMM (nodes/face/camera.py: R = Rz(roll) Ry(yaw) Rx(pitch), radians) and the
position of the model's origin in millimetres, seen by a virtual pinhole camera with focal
length f = FOCAL_PER_WIDTH * image width pixels, centred on the image (the official code's
233.3 px at 256 px).

The project's fitted coefficients (MorphCoeffs.pose: pitch, yaw, roll, tx, ty in pixels,
log-scale, a scaled orthographic camera) map to it one to one: the scale s = f / tz pixels per
mm at the head's depth, and the origin projects to (tx_px, ty_px):

    tz = f / s,   tx = (tx_px - cx) / s,   ty = (ty_px - cy) / s,   s = exp(log_scale)

`morph_pose_from_camera` is the inverse, which lets the HDTF pipeline take Audio2Head's poses.
"""
from __future__ import annotations

import numpy as np

FOCAL_PER_WIDTH = 233.333 / 256.0

# The pose box (model frame, mm; the mean face spans x +-68, y +-76, z -35..64): a square of
# half-side 80 just in front of the face and one of half-side 60 behind the head.
_NEAR, _FAR = (-45.0, 80.0), (75.0, 60.0)
BOX_CORNERS = np.array([(sx * h, sy * h, z) for z, h in (_NEAR, _FAR) for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))],
                       np.float64)
BOX_EDGES = [(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7)]


def camera(image_size: tuple[int, int]) -> tuple[float, float, float]:
    """(f, cx, cy) of the virtual camera for frames of (H, W) pixels (pixel-centre origin)."""
    h, w = image_size
    return FOCAL_PER_WIDTH * w, (w - 1) / 2.0, (h - 1) / 2.0


def camera_pose_from_morph(pose: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """MorphCoeffs.pose (T, 6) -> HeadPose (T, 6)."""
    pose = np.asarray(pose, np.float64)
    f, cx, cy = camera(image_size)
    s = np.exp(pose[:, 5])
    out = np.empty_like(pose)
    out[:, :3] = pose[:, :3]
    out[:, 3] = (pose[:, 3] - cx) / s
    out[:, 4] = (pose[:, 4] - cy) / s
    out[:, 5] = f / s
    return out.astype(np.float32)


def morph_pose_from_camera(pose: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """HeadPose (T, 6) -> MorphCoeffs.pose (T, 6) for frames of `image_size`."""
    pose = np.asarray(pose, np.float64)
    if np.any(pose[:, 5] <= 0):
        raise ValueError("head pose depth tz must be positive (the head is in front of the camera)")
    f, cx, cy = camera(image_size)
    s = f / pose[:, 5]
    out = np.empty_like(pose)
    out[:, :3] = pose[:, :3]
    out[:, 3] = cx + s * pose[:, 3]
    out[:, 4] = cy + s * pose[:, 4]
    out[:, 5] = np.log(s)
    return out.astype(np.float32)


def project_box(pose: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Pixel positions (T, 8, 2) of the box corners under each pose (pinhole projection)."""
    from nodes.face.camera import rotation_matrix

    pose = np.asarray(pose, np.float64)
    f, cx, cy = camera(image_size)
    r = rotation_matrix(pose[:, 0], pose[:, 1], pose[:, 2])
    cam = np.einsum("tij,nj->tni", r, BOX_CORNERS) + pose[:, None, 3:6]
    z = np.maximum(cam[..., 2], 1e-3)
    return np.stack([cx + f * cam[..., 0] / z, cy + f * cam[..., 1] / z], -1)


def draw_pose_boxes(pose: np.ndarray, image_size: tuple[int, int], out_size: int, supersample: int = 4) -> np.ndarray:
    """V_S of §3.3: the projected box of each pose as an anti-aliased line image, float32
    (T, out_size, out_size) in [0, 1], for frames of `image_size` viewed at out_size x out_size.
    Drawn at `supersample` times the size with 2-px lines (the official draws at 256 px) and
    area-averaged down."""
    import cv2

    canvas = out_size * supersample
    h, w = image_size
    pts = project_box(pose, image_size)
    pts = (pts + 0.5) * np.array([canvas / w, canvas / h]) - 0.5  # pixel-centre convention
    pts = np.clip(pts, -8 * canvas, 9 * canvas)  # far off-canvas corners: keep cv2's integers small
    thickness = max(1, round(2 * canvas / 256))
    out = np.empty((len(pts), out_size, out_size), np.float32)
    shift = 4  # sub-pixel precision for cv2.line
    for t, p in enumerate(np.round(pts * (1 << shift)).astype(np.int64)):
        img = np.zeros((canvas, canvas), np.uint8)
        for a, b in BOX_EDGES:
            cv2.line(img, tuple(int(v) for v in p[a]), tuple(int(v) for v in p[b]), 255, thickness, cv2.LINE_AA, shift)
        out[t] = cv2.resize(img, (out_size, out_size), interpolation=cv2.INTER_AREA) / 255.0
    return out
