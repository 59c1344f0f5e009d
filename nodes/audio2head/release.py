"""Audio2Head's released conventions (wangsuzhen/Audio2Head `inference.py` and
`modules/audio2pose.py`), for the `official` mode of imported checkpoints (docs/official-weights.md):
its pose scaling and its pose-box drawing. Its audio features are the AudioFeatures variant
`a2h_official` (nodes/audio/a2h_official.py); the weight converter is nodes/audio2head/official.py.
"""
from __future__ import annotations

import numpy as np

# The release's head-pose scaling (modules/audio2pose.py): the network's [-1, 1] outputs map
# linearly onto [MIN, MAX]: Rodrigues rotation vector (rad) then translation (mm, camera frame).
POSE_MIN = np.array([-0.639, -0.501, -0.47, -102.6, -32.5, 184.6], np.float32)
POSE_MAX = np.array([0.411, 0.547, 0.433, 159.1, 116.5, 376.5], np.float32)
CANVAS = 256  # the release draws its pose boxes on 256 x 256 whatever the image size
FOCAL = 233.333  # its camera: f = 233.333 px, principal point at (128, 128)
BOX_NEAR_HALF, BOX_FAR_HALF, BOX_FAR_DEPTH = 75.0, 100.0, 100.0  # mm: a square at depth 0, a larger one at depth 100


# --- pose conventions ---------------------------------------------------------------------------


def denormalize_pose(raw: np.ndarray) -> np.ndarray:
    """The network's [-1, 1] outputs (T, 6) -> (Rodrigues vector, translation in mm)."""
    return (raw + 1) / 2 * (POSE_MAX - POSE_MIN) + POSE_MIN


def _box_points() -> np.ndarray:
    corners = [(-1, -1), (-1, 1), (1, 1), (1, -1), (-1, -1)]
    near = [(sx * BOX_NEAR_HALF, sy * BOX_NEAR_HALF, 0.0) for sx, sy in corners]
    far = [(sx * BOX_FAR_HALF, sy * BOX_FAR_HALF, BOX_FAR_DEPTH) for sx, sy in corners]
    return np.array(near + far, np.float64)


def draw_pose_boxes(pose: np.ndarray) -> np.ndarray:
    """The release's V_S: each pose (rotation vector, translation) projects the two squares
    with cv2.projectPoints on the 256-px camera; the points are truncated to integers and drawn
    as value 255 with 2-px lines on a float canvas (cv2 draws non-8-bit images without
    anti-aliasing): the square outlines and the three connecting edges 1-6, 2-7, 3-8.
    Returns float32 (T, 256, 256) in {0, 255}."""
    import cv2

    camera = np.array([[FOCAL, 0, CANVAS / 2], [0, FOCAL, CANVAS / 2], [0, 0, 1]], np.float64)
    points = _box_points()
    out = np.zeros((len(pose), CANVAS, CANVAS), np.float32)
    for t, p in enumerate(np.asarray(pose)):
        canvas = np.zeros((CANVAS, CANVAS), np.float64)
        rvec = np.array(p[:3], np.float64).reshape(3, 1)  # float32 poses as the release hands them over
        tvec = np.array(p[3:6], np.float64).reshape(3, 1)
        projected, _ = cv2.projectPoints(points, rvec, tvec, camera, np.zeros((4, 1)))
        q = np.int32(projected.reshape(-1, 2))
        cv2.polylines(canvas, [q], True, (255, 255, 255), 2, cv2.LINE_AA)
        for a, b in ((1, 6), (2, 7), (3, 8)):
            cv2.line(canvas, tuple(int(v) for v in q[a]), tuple(int(v) for v in q[b]), (255, 255, 255), 2, cv2.LINE_AA)
        out[t] = canvas
    return out
