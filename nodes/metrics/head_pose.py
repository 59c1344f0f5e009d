"""HS, the head-pose similarity of Yi et al. §4.4 (eq. 6):

    HS = 1 - W1(P_real, P_gen)

P are histograms of the head's Euler angles (pitch: nod, yaw: shake/turn, roll: tilt) over a
real and a generated video, and W1 is the Wasserstein-1 distance normalised to [0, 1]. The paper
does not say how the three angles are combined or normalised; here each angle gets a histogram
of `bins` bins over a fixed range [-limit, limit] degrees, its W1 is computed exactly from the
cumulative histograms (the 1-D optimal transport cost) and divided by the range width 2*limit
(the largest possible cost), and HS is the mean of 1 - W1 over the three angles. Identical pose
distributions give HS = 1; a fixed range makes HS comparable across videos.
"""
from __future__ import annotations

import numpy as np

ANGLES = ("pitch", "yaw", "roll")


def angle_histogram(angles_deg: np.ndarray, bins: int, limit: float) -> np.ndarray:
    """Normalised histogram (bins,) of angles in degrees over [-limit, limit] (outliers clipped in)."""
    a = np.clip(np.asarray(angles_deg, np.float64), -limit, limit)
    h, _ = np.histogram(a, bins=bins, range=(-limit, limit))
    return h / max(h.sum(), 1)


def wasserstein1(p: np.ndarray, q: np.ndarray, bin_width: float) -> float:
    """W1 between two histograms on the same uniform bins: sum |CDF_p - CDF_q| * width."""
    return float(np.abs(np.cumsum(p) - np.cumsum(q)).sum() * bin_width)


def head_pose_similarity(real_pose: np.ndarray, gen_pose: np.ndarray, *, bins: int = 60,
                         limit: float = 30.0) -> dict[str, float]:
    """HS and its per-angle parts for poses (T, >=3) whose first three columns are pitch, yaw,
    roll in radians (MorphCoeffs / HeadPose convention)."""
    real, gen = np.asarray(real_pose, np.float64), np.asarray(gen_pose, np.float64)
    if real.ndim != 2 or gen.ndim != 2 or real.shape[1] < 3 or gen.shape[1] < 3 or not len(real) or not len(gen):
        raise ValueError(f"poses must be (T, 6) arrays with at least one frame, got {real.shape} and {gen.shape}")
    width = 2 * limit / bins
    out = {}
    for i, name in enumerate(ANGLES):
        p = angle_histogram(np.degrees(real[:, i]), bins, limit)
        q = angle_histogram(np.degrees(gen[:, i]), bins, limit)
        out[f"w1_{name}_deg"] = wasserstein1(p, q, width)
        out[f"w1_{name}"] = out[f"w1_{name}_deg"] / (2 * limit)
        out[f"hs_{name}"] = 1.0 - out[f"w1_{name}"]
    out["hs"] = float(np.mean([out[f"hs_{n}"] for n in ANGLES]))
    return out
