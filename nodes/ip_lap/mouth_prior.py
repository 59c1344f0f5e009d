"""The `mouth_prior: rules` option of IP_LAP's landmark generator (not in the paper): a rule-based
lip prior in the generator's own landmark space, to which the network adds a learned residual.

Why: trained on a few synthetic voices, the generator reads the mel spectrogram of an unseen
voice poorly (held-out lip-sync benchmark, docs/lipsync.md: 0.42, with a half-open mouth in
silence); the rules mouth of the speaker-independent phonetic features reads it better (~0.68).

The prior of output frame t, shown on template frame j (all in the network's face-box
coordinates, (2, 57) = jaw then lips, facemesh.CONTENT_IDX):

    prior_t = rest_j + A_j · (P(e_t) − P(e_silence))

- e_t: the rules mouth of the phonetic features on a neutral face (nodes/lipsync/prior.py
  `rules_mouth_prior`, the prior of the HDTF, Yi and MetaTalk options too); e_silence: the same for
  silence (the rules' closed rest), so silence gives zero displacement.
- P: the 3DMM (nodes/face/model.py, mean identity) -> its MediaPipe landmarks, x/y in mm.
- A_j: the 2 x 2 linear part of the least-squares affine map from the 3DMM's 74 pose points to
  frame j's pose points (box coordinates): mm -> box units, with the frame's scale, roll and
  box aspect.
- rest_j: the video's least open frame (lip-middle distance, the openness references are
  sorted by) — its jaw and lips carried onto frame j by the affine map between the two frames'
  pose points. If even that frame's lips are parted, its inner-lip gap is closed (each lower
  inner-lip point moved onto its upper partner, the lower outer lip and the jaw moved up by the
  middle gap): silence gives the video's own face with the lips together, as LipSyncRules'
  closed rest does for a portrait with parted lips.

`content_prior` is the one function the trainer (nodes/ip_lap/data.py) and the node call.
"""
from __future__ import annotations

import functools

import numpy as np

from . import facemesh as fm

# lower / upper inner-lip partners (MediaPipe), and the lower outer lip, as positions in CONTENT_IDX
_POS = {int(m): i for i, m in enumerate(fm.CONTENT_IDX)}
_INNER_PAIRS = ((13, 14), (82, 87), (81, 178), (80, 88), (191, 95), (312, 317), (311, 402), (310, 318), (415, 324))
_LOWER_INNER = np.array([_POS[b] for _, b in _INNER_PAIRS])
_UPPER_INNER = np.array([_POS[a] for a, _ in _INNER_PAIRS])
_LOWER_OUTER = np.array([_POS[m] for m in (146, 91, 181, 84, 17, 314, 405, 321, 375)])
_JAW = np.arange(fm.N_JAW)


def _affine(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares affine map dst ≈ M @ src + m of point sets (2, N) -> (M (2, 2), m (2,))."""
    x = np.concatenate([src, np.ones((1, src.shape[1]))]).T  # (N, 3)
    sol, *_ = np.linalg.lstsq(x, np.asarray(dst, np.float64).T, rcond=None)  # (3, 2)
    return sol[:2].T, sol[2]


@functools.lru_cache(maxsize=2)
def _model_points(path: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The 3DMM's landmark positions (478, 3) on the mean face, the expression basis of those
    landmarks (478, 3, E), both in mm, via the model's MediaPipe embedding (NaN where unmapped)."""
    from nodes.face.model import N_EXPRESSION, load_face_model

    model = load_face_model(path)
    mean = model.landmark_points(model.vertices())
    eye = np.eye(N_EXPRESSION, dtype=np.float32)
    basis = model.landmark_points(model.vertices(None, eye)) - mean[None]  # (E, K, 3): linear in the expression
    pts = np.full((478, 3), np.nan)
    pts[model.landmark_ids] = mean
    bas = np.full((478, 3, N_EXPRESSION), np.nan)
    bas[model.landmark_ids] = basis.transpose(1, 2, 0)
    return pts, bas


def silence_mouth(fps: float = 25.0) -> np.ndarray:
    """The rules mouth (28,) of silence (phonetic features of digital silence: SIL = 1, zeros)."""
    from nodes.lipsync.prior import rules_mouth_prior
    from trainers.data.phonetic import FEATURE_DIM, PHONE_INDEX

    quiet = np.zeros((25, FEATURE_DIM), np.float32)
    quiet[:, PHONE_INDEX["SIL"]] = 1.0
    return rules_mouth_prior(quiet, fps)[12]


def rules_displacement(features: np.ndarray, fps: float = 25.0) -> np.ndarray:
    """(T, 2, 57) displacement of the jaw and lip landmarks (x, y in mm on the 3DMM's mean face)
    that the rules mouth of phonetic features (T, 44) makes, relative to the rules' silence."""
    from nodes.lipsync.prior import rules_mouth_prior

    mouth = rules_mouth_prior(features, fps) - silence_mouth(fps)[None]
    _, basis = _model_points()
    d = np.einsum("kde,te->tkd", basis[fm.CONTENT_IDX, :2, :mouth.shape[1]], mouth.astype(np.float64))
    return np.swapaxes(d, 1, 2)


def closed_rest(pose: np.ndarray, content: np.ndarray, openness: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The least open frame's pose (2, 74) and jaw + lips (2, 57), inner-lip gap closed."""
    c = int(np.argmin(openness))
    rest = np.array(content[c], np.float64)
    gap = rest[:, _LOWER_INNER] - rest[:, _UPPER_INNER]  # (2, 9): lower minus upper partner
    mid = gap[:, :1]  # the middle pair (13, 14)
    if mid[1, 0] > 0:  # parted: lift the lower lip and the jaw by the middle gap, the inner points onto their partners
        rest[:, _LOWER_OUTER] -= mid
        rest[:, _JAW] -= mid
        rest[:, _LOWER_INNER] = rest[:, _UPPER_INNER]
    return np.asarray(pose[c], np.float64), rest


def content_prior(pose: np.ndarray, content: np.ndarray, openness: np.ndarray, features: np.ndarray,
                  template: np.ndarray, fps: float = 25.0) -> np.ndarray:
    """The prior (T_out, 2, 57), float32, in each output frame's box coordinates.

    pose (N, 2, 74), content (N, 2, 57), openness (N,): the video's frames (FaceTrack); features
    (T_out, 44): phonetic features of the speech; template (T_out,): the video frame each output
    frame shows (pipeline.template_indices)."""
    features = np.asarray(features, np.float32)
    template = np.asarray(template)
    if len(template) != len(features):
        raise ValueError(f"{len(features)} phonetic feature frames for {len(template)} output frames")
    rest_pose, rest = closed_rest(pose, content, openness)
    model_pose = _model_points()[0][fm.POSE_IDX, :2].T  # (2, 74) mm
    d = rules_displacement(features, fps)
    out = np.empty((len(template), 2, fm.N_CONTENT), np.float32)
    maps: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for t, j in enumerate(template.tolist()):
        if j not in maps:
            m_rest, b_rest = _affine(rest_pose, pose[j])
            m_model, _ = _affine(model_pose, pose[j])
            maps[j] = (m_rest @ rest + b_rest[:, None], m_model, b_rest)
        base, m_model, _ = maps[j]
        out[t] = base + m_model @ d[t]
    return out
