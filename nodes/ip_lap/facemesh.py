"""IP_LAP's 131 MediaPipe landmarks, its face box, and the sketches it draws (§3.2, §4.1).

The paper takes n_r = 131 of MediaPipe's 478 face-mesh points: the contours of the face oval
(lower part), brows, nose, eyes and lips. They split into n_p = 74 *pose* points (the upper
half: brows, eyes, nose, the four oval points on each temple) and 57 *content* points inferred
from audio: 17 jaw points and 40 lip points. The paper states n_l = 41 lip and n_j = 16 jaw
points; the official code, and so its released weights, use 40 and 17 (same total): we follow
the code, since the `paper` preset must load those weights.

Each contour is kept here as a chain of MediaPipe indices; the 131 points are the chains in
order (the order the official code sorts its landmark lists by), and the sketch's 125 edges
join consecutive points of each chain (eyes and lips are closed loops).

Coordinates. MediaPipe's normalised coordinates (x / W, y / H from the image's edges) relate to
the project's pixel convention (origin at the first pixel's centre, nodes/types.py) by
x_px = x_n·W − ½. As the official inference, a frame's *face box* is the extent of the 131
points widened by `margin` pixels on each side (clipped to the frame, truncated to integers),
and landmarks enter the networks normalised to that box: u = (x_n·W − x1) / (x2 − x1).

Sketch. The official drawing: a black canvas of the box's aspect ratio with its shorter side
128 px, every edge drawn with cv2.line (1 px, 8-connected, value 224 in all channels) between
the points' pixel cells min(floor(u·w), w − 1) — points outside [0, 1] are left out with their
edges — then resized to 128 × 128 (bilinear), kept as float in [0, 224] (/255 for the network).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

# --- the contours, as chains of MediaPipe face-mesh indices -----------------------------------

OVAL = (162, 127, 234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361, 323,
        454, 356, 389)  # from the right temple round the chin to the left temple (the forehead is not used)
RIGHT_BROW = ((70, 63, 105, 66, 107), (55, 65, 52, 53, 46))
LEFT_BROW = ((336, 296, 334, 293, 300), (276, 283, 282, 295, 285))
NOSE_BRIDGE = (168, 6, 197, 195, 5)
NOSE_BASE = (48, 115, 220, 45, 4, 275, 440, 344, 278)
RIGHT_EYE = (33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7)  # closed
LEFT_EYE = (362, 398, 384, 385, 386, 387, 388, 466, 263, 249, 390, 373, 374, 380, 381, 382)  # closed
OUTER_LIPS = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)  # closed
INNER_LIPS = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)  # closed

# the 131 points in the official order
ORDER: tuple[int, ...] = (*OVAL, *RIGHT_BROW[0], *RIGHT_BROW[1], *LEFT_BROW[0], *LEFT_BROW[1], *NOSE_BRIDGE, *NOSE_BASE,
                          *RIGHT_EYE, *LEFT_EYE, *OUTER_LIPS, *INNER_LIPS)
TEMPLE = 4  # oval points on each temple that count as pose: ORDER[:4] and ORDER[21:25]
JAW_SLOTS = tuple(range(TEMPLE, len(OVAL) - TEMPLE))                  # 17 positions in ORDER
LIP_SLOTS = tuple(range(len(ORDER) - 40, len(ORDER)))                  # 40
POSE_SLOTS = tuple(i for i in range(len(ORDER) - 40) if i not in JAW_SLOTS)  # 74
CONTENT_SLOTS = JAW_SLOTS + LIP_SLOTS                                   # 57: jaw, then lips

POSE_IDX = np.array([ORDER[i] for i in POSE_SLOTS])        # (74,) MediaPipe indices of the pose points
CONTENT_IDX = np.array([ORDER[i] for i in CONTENT_SLOTS])  # (57,) jaw (17) then lips (40)
N_POSE, N_JAW, N_LIP = len(POSE_SLOTS), len(JAW_SLOTS), len(LIP_SLOTS)
N_CONTENT = N_JAW + N_LIP
UPPER_LIP_MID, LOWER_LIP_MID = 0, 17  # MediaPipe points whose distance measures how open the mouth is


# The sketch's 125 edges as polylines, each drawn from its first point on (cv2.line is not
# symmetric in its end points, so the direction is kept as the official drawing has it).
PATHS: tuple[tuple[int, ...], ...] = (
    OVAL[::-1],
    RIGHT_BROW[0], RIGHT_BROW[1][::-1], LEFT_BROW[0][::-1], LEFT_BROW[1],
    (*NOSE_BRIDGE, 4), NOSE_BASE[4::-1], NOSE_BASE[4:],
    (RIGHT_EYE[0], *RIGHT_EYE[:7:-1]), RIGHT_EYE[:9],
    (*LEFT_EYE[8:], LEFT_EYE[0]), (*LEFT_EYE[8:0:-1], LEFT_EYE[0]),
    (*OUTER_LIPS[:1], *OUTER_LIPS[:9:-1]), OUTER_LIPS[:11],
    (*INNER_LIPS[:1], *INNER_LIPS[:9:-1]), INNER_LIPS[:11],
)
EDGES: tuple[tuple[int, int], ...] = tuple(e for path in PATHS for e in zip(path[:-1], path[1:]))
# positions in ORDER of each edge's ends (for drawing from a (2, 131) array)
_SLOT = {m: i for i, m in enumerate(ORDER)}
EDGE_SLOTS = np.array([(_SLOT[a], _SLOT[b]) for a, b in EDGES])

SKETCH_SIZE = 128
SKETCH_VALUE = 224.0


# --- boxes and normalisation --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FaceBox:
    """A face box in whole frame pixels: rows y1:y2, columns x1:x2 (end exclusive)."""

    y1: int
    y2: int
    x1: int
    x2: int

    @property
    def height(self) -> int:
        return self.y2 - self.y1

    @property
    def width(self) -> int:
        return self.x2 - self.x1


def to_normalised(landmarks_px: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
    """Pixel landmarks (..., 2+) -> MediaPipe's normalised (..., 2) x/W, y/H."""
    h, w = frame_hw
    xy = np.asarray(landmarks_px, np.float64)[..., :2]
    return np.stack([(xy[..., 0] + 0.5) / w, (xy[..., 1] + 0.5) / h], axis=-1)


def face_box(norm: np.ndarray, frame_hw: tuple[int, int], margin: float = 25) -> FaceBox:
    """The official face box of one frame from its normalised landmarks (478 or more, (N, 2))."""
    h, w = frame_hw
    pts = np.asarray(norm, np.float64)[list(ORDER)]
    if not np.isfinite(pts).all():
        raise ValueError("the face box needs all 131 IP_LAP landmarks; some are missing (NaN)")
    x_min = max(float(pts[:, 0].min()) - margin / w, 0.0)
    x_max = min(float(pts[:, 0].max()) + margin / w, 1.0)
    y_min = max(float(pts[:, 1].min()) - margin / h, 0.0)
    y_max = min(float(pts[:, 1].max()) + margin / h, 1.0)
    box = FaceBox(int(y_min * h), int(y_max * h), int(x_min * w), int(x_max * w))
    if box.height < 2 or box.width < 2:
        raise ValueError(f"the face box {box} is empty")
    return box


def in_box(norm: np.ndarray, box: FaceBox, frame_hw: tuple[int, int]) -> np.ndarray:
    """Normalised frame landmarks (..., 2) -> coordinates in the box, (..., 2) in [0, 1] inside it."""
    h, w = frame_hw
    n = np.asarray(norm, np.float64)
    return np.stack([(n[..., 0] * w - box.x1) / box.width, (n[..., 1] * h - box.y1) / box.height], axis=-1)


def from_box(uv: np.ndarray, box: FaceBox) -> np.ndarray:
    """Box coordinates (..., 2) -> frame pixels (project convention), the inverse of `in_box`."""
    uv = np.asarray(uv, np.float64)
    return np.stack([box.x1 + uv[..., 0] * box.width - 0.5, box.y1 + uv[..., 1] * box.height - 0.5], axis=-1)


def split(uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Box coordinates of the 478 points (..., 478, 2) -> pose (..., 2, 74) and content (..., 2, 57)
    in the networks' layout (x row, y row)."""
    uv = np.asarray(uv, np.float32)
    pose = np.swapaxes(uv[..., POSE_IDX, :], -1, -2)
    content = np.swapaxes(uv[..., CONTENT_IDX, :], -1, -2)
    return pose, content


def full_131(pose: np.ndarray, content: np.ndarray) -> np.ndarray:
    """(…, 2, 74) + (…, 2, 57) -> (…, 2, 131) in ORDER."""
    out = np.empty((*pose.shape[:-1], len(ORDER)), np.float64)
    out[..., list(POSE_SLOTS)] = pose
    out[..., list(CONTENT_SLOTS)] = content
    return out


def lip_openness(norm: np.ndarray) -> np.ndarray:
    """Distance between the middles of the upper and lower lip in normalised coordinates, (T,)."""
    n = np.asarray(norm, np.float64)
    return np.linalg.norm(n[..., UPPER_LIP_MID, :] - n[..., LOWER_LIP_MID, :], axis=-1)


def spread_by_openness(openness: np.ndarray, count: int) -> np.ndarray:
    """Frame indices of `count` references spread over the mouth openings, as the official
    inference picks them: frames sorted by openness, taken at evenly spaced ranks."""
    order = np.argsort(openness, kind="stable")
    ranks = np.linspace(0, len(order) - 1, count).astype(np.int64)  # torch.linspace + int(): truncation
    return order[ranks]


# --- drawing ------------------------------------------------------------------------------------


def _cell(v: float, size: int) -> int | None:
    if not ((v > 0 or math.isclose(0, v)) and (v < 1 or math.isclose(1, v))):
        return None
    return min(math.floor(v * size), size - 1)


def draw_sketch(points: np.ndarray, box_hw: tuple[int, int], size: int = SKETCH_SIZE) -> np.ndarray:
    """The sketch of one frame: (2, 131) box coordinates in ORDER -> float32 (size, size, 3) in [0, 224]."""
    import cv2

    bh, bw = box_hw
    side = min(bh, bw)
    canvas_h, canvas_w = int(bh * size / side), int(bw * size / side)
    canvas = np.zeros((canvas_h, canvas_w, 3))
    cells = [None] * points.shape[1]
    for i in range(points.shape[1]):
        cx, cy = _cell(float(points[0, i]), canvas_w), _cell(float(points[1, i]), canvas_h)
        if cx is not None and cy is not None:
            cells[i] = (cx, cy)
    for a, b in EDGE_SLOTS:
        if cells[a] is not None and cells[b] is not None:
            cv2.line(canvas, cells[a], cells[b], (SKETCH_VALUE,) * 3, 1)
    return cv2.resize(canvas, (size, size)).astype(np.float32)


def crop_face(frame: np.ndarray, box: FaceBox, size: int = SKETCH_SIZE) -> np.ndarray:
    """frame[y1:y2, x1:x2] resized to size x size (bilinear, as the official code)."""
    import cv2

    return cv2.resize(np.ascontiguousarray(frame[box.y1:box.y2, box.x1:box.x2]), (size, size))
