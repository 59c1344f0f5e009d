"""Audio2Head's released checkpoint (wangsuzhen/Audio2Head, `audio2head.pth.tar`) in talkgraph:
the converter `graphrun weights import audio2head` runs, the release's audio features and its
pose conventions for the `official` mode (docs/official-weights.md).

The file is one dict with four state dicts, each loaded strictly by the official code:
`audio2pose` (head motion predictor), `kp_detector`, `generator` (renderer) and `audio2kp`
(motion field). Names are mapped to the project's modules rule by rule below; every tensor must
land on a project tensor of the same shape (the conversion fails otherwise), the fixed Gaussian
kernels of the release's downsamplers are checked against the project's and dropped.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

# The release's head-pose scaling (modules/audio2pose.py): the network's [-1, 1] outputs map
# linearly onto [MIN, MAX]: Rodrigues rotation vector (rad) then translation (mm, camera frame).
POSE_MIN = np.array([-0.639, -0.501, -0.47, -102.6, -32.5, 184.6], np.float32)
POSE_MAX = np.array([0.411, 0.547, 0.433, 159.1, 116.5, 376.5], np.float32)
CANVAS = 256  # the release draws its pose boxes on 256 x 256 whatever the image size
FOCAL = 233.333  # its camera: f = 233.333 px, principal point at (128, 128)
BOX_NEAR_HALF, BOX_FAR_HALF, BOX_FAR_DEPTH = 75.0, 100.0, 100.0  # mm: a square at depth 0, a larger one at depth 100
SAMPLE_RATE = 16000

CONVERTER_VERSION = 1


# --- audio features (python_speech_features + pyworld, as the release's inference.py) ---------


def _fill_unvoiced(f0: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    """Unvoiced frames take the pitch linearly interpolated between the voiced frames around
    them; leading/trailing ones hold the nearest voiced value (all-unvoiced audio stays 0)."""
    idx = np.flatnonzero(voiced)
    if len(idx) == 0:
        return f0
    return np.interp(np.arange(len(f0)), idx, f0[idx])


def feature_rows(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """(rows, 41) float64 at 100 rows/s: 13 MFCC, 26 log filterbank energies, F0 (Hz, unvoiced
    frames interpolated) and the voiced flag, from mono 16 kHz audio.

    As the release: the waveform (int16 as ffmpeg writes it; float samples in [-1, 1] are scaled
    by 32768 and rounded) is centred and peak-normalised, then python_speech_features' default
    MFCC / log filterbank (25 ms windows, 10 ms step) and pyworld's harvest (10 ms frames)."""
    import warnings

    import python_speech_features

    with warnings.catch_warnings():  # pyworld 0.3.5 imports the deprecated pkg_resources
        warnings.simplefilter("ignore", UserWarning)
        import pyworld

    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"the official Audio2Head features are defined at 16 kHz, got {sample_rate} Hz (resample first)")
    x = np.asarray(samples)
    if x.ndim != 1:
        raise ValueError(f"mono audio expected, got shape {x.shape}")
    if x.dtype.kind == "f":
        x = np.clip(np.round(x.astype(np.float64) * 32768.0), -32768, 32767)
    x = x.astype(np.float64)
    x = x - x.mean()
    peak = np.abs(x).max()
    if peak == 0:
        raise ValueError("the audio is silent")
    x = x / peak
    mfcc = python_speech_features.mfcc(x, SAMPLE_RATE)
    fbank = python_speech_features.logfbank(x, SAMPLE_RATE)
    f0, _ = pyworld.harvest(x, SAMPLE_RATE, frame_period=10)
    voiced = (f0 != 0.0).astype(np.float64)
    f0 = _fill_unvoiced(f0, voiced)
    n = min(len(mfcc), len(fbank), len(f0))
    return np.concatenate([mfcc[:n], fbank[:n], f0[:n, None], voiced[:n, None]], axis=1)


def frame_features(rows: np.ndarray) -> np.ndarray:
    """(T, 4, 41) float32: four consecutive rows per 25 fps video frame (T = rows // 4)."""
    t = len(rows) // 4
    return rows[:4 * t].reshape(t, 4, rows.shape[1]).astype(np.float32)


def official_frame_features(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """AudioFeatures `a2h_official`: audio at any rate -> 16 kHz int16 (as the release's ffmpeg
    step) -> feature_rows -> (T, 4, 41)."""
    from nodes.io.media import resample_audio

    x = np.asarray(samples, np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if sample_rate != SAMPLE_RATE:
        x = resample_audio(x, int(sample_rate), SAMPLE_RATE)
    pcm = np.clip(np.round(x.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int16)
    frames = frame_features(feature_rows(pcm, SAMPLE_RATE))
    if len(frames) == 0:
        raise ValueError("the audio is shorter than one video frame (40 ms)")
    return frames


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


# --- weights ------------------------------------------------------------------------------------

_HOURGLASS_2D = [
    (r"encoder\.down_blocks\.(\d+)\.conv\.", r"down.\1.body.0.0."),
    (r"encoder\.down_blocks\.(\d+)\.norm\.", r"down.\1.body.0.1."),
    (r"decoder\.up_blocks\.(\d+)\.conv\.", r"up.\1.body.0.0."),
    (r"decoder\.up_blocks\.(\d+)\.norm\.", r"up.\1.body.0.1."),
]
_RES = {"norm1": "0", "conv1": "2", "norm2": "3", "conv2": "5"}  # FOMM ResBlock -> ResBlock.body
_HOURGLASS_3D = [
    (r"encoder\.down_blocks\.(\d+)\.res\.(norm1|conv1|norm2|conv2)\.", lambda m: f"down.{m[1]}.body.0.body.{_RES[m[2]]}."),
    (r"encoder\.down_blocks\.(\d+)\.norm_res\.", r"down.\1.body.1."),
    (r"encoder\.down_blocks\.(\d+)\.conv\.", r"down.\1.body.3.0."),
    (r"encoder\.down_blocks\.(\d+)\.norm\.", r"down.\1.body.3.1."),
    (r"decoder\.up_blocks\.(\d+)\.conv\.", r"up.\1.body.0.0."),
    (r"decoder\.up_blocks\.(\d+)\.norm\.", r"up.\1.body.0.1."),
    (r"decoder\.up_blocks\.(\d+)\.res\.(norm1|conv1|norm2|conv2)\.", lambda m: f"up.{m[1]}.body.1.body.{_RES[m[2]]}."),
    (r"decoder\.up_blocks\.(\d+)\.norm2\.", r"up.\1.body.2."),
    (r"decoder\.res_blocks\.(\d+)\.0\.(norm1|conv1|norm2|conv2)\.", lambda m: f"skip.{m[1]}.0.body.{_RES[m[2]]}."),
    (r"decoder\.res_blocks\.(\d+)\.1\.", r"skip.\1.1."),
]
_RESNET = [  # torchvision-style ResNet-34 (modules/resnet.py) -> nodes/audio2head/blocks.ResNetEncoder
    (r"conv1\.", "stem.0."), (r"bn1\.", "stem.1."),
    (r"layer(\d)\.(\d+)\.conv1\.", lambda m: f"stages.{int(m[1]) - 1}.{m[2]}.body.0."),
    (r"layer(\d)\.(\d+)\.bn1\.", lambda m: f"stages.{int(m[1]) - 1}.{m[2]}.body.1."),
    (r"layer(\d)\.(\d+)\.conv2\.", lambda m: f"stages.{int(m[1]) - 1}.{m[2]}.body.3."),
    (r"layer(\d)\.(\d+)\.bn2\.", lambda m: f"stages.{int(m[1]) - 1}.{m[2]}.body.4."),
    (r"layer(\d)\.(\d+)\.downsample\.(\d)\.", lambda m: f"stages.{int(m[1]) - 1}.{m[2]}.shortcut.{m[3]}."),
    (r"fc\.", "fc."),
]


def _prefixed(prefix_from: str, prefix_to: str, rules: list) -> list:
    return [(re.escape(prefix_from) + pattern, (lambda m, r=repl, p=prefix_to: p + (r(m) if callable(r) else m.expand(r))))
            for pattern, repl in rules]


RULES: dict[str, list] = {
    "kp_detector": _prefixed("predictor.", "hourglass.", _HOURGLASS_2D) + [(r"kp\.", "kp_head."), (r"jacobian\.", "jacobian_head.")],
    "generator": _prefixed("dense_motion_network.hourglass.", "dense_motion.hourglass.", _HOURGLASS_2D) + [
        (r"dense_motion_network\.(mask|occlusion)\.", r"dense_motion.\1."),
        (r"first\.conv\.", "first.0."), (r"first\.norm\.", "first.1."),
        (r"down_blocks\.(\d+)\.conv\.", r"down.\1.0.0."), (r"down_blocks\.(\d+)\.norm\.", r"down.\1.0.1."),
        (r"up_blocks\.(\d+)\.conv\.", r"up.\1.body.0.0."), (r"up_blocks\.(\d+)\.norm\.", r"up.\1.body.0.1."),
        (r"bottleneck\.r(\d+)\.(norm1|conv1|norm2|conv2)\.", lambda m: f"bottleneck.{m[1]}.body.{_RES[m[2]]}."),
        (r"final\.", "final."),
    ],
    "audio2pose": _prefixed("em_img.resnet.", "image_encoder.", _RESNET) + _prefixed("em_audio.resnet.", "audio_encoder.", _RESNET)
    + [(r"lstm\.", "lstm."), (r"output\.", "decoder.")],
    "audio2kp": _prefixed("predictor.", "hourglass.", _HOURGLASS_3D) + [
        (r"embedding\.0\.", "audio_encoder.transposed."), (r"embedding\.1\.", "audio_encoder.norm."),
        (r"embedding\.3\.", "audio_encoder.out."), (r"kp\.", "kp_head."), (r"jacobian\.", "jacobian_head."),
    ],
}
# fixed buffers of the release (FOMM's AntiAliasInterpolation2d kernels): checked, not copied
KERNELS = {"kp_detector": {"down.weight": (3, 0.25)}, "generator": {"dense_motion_network.down.weight": (3, 0.25)},
           "audio2kp": {"down_id.weight": (3, 0.25), "down_pose.weight": (64, 0.25)}}
ARCHS = {"kp_detector": "keypoint_detector", "generator": "keypoint_renderer", "audio2pose": "head_motion", "audio2kp": "motion_field"}


def rename(section: str, key: str) -> str:
    from nodes.weights import rename_by_rules

    return rename_by_rules(RULES[section], key, f"{section}.{key}")


def official_configs() -> dict[str, dict[str, Any]]:
    """The project configs of the released networks (paper presets in official mode)."""
    from .models import model_config

    return {
        "keypoint_detector": model_config("keypoint_detector", "paper").model_dump(),
        "keypoint_renderer": {**model_config("keypoint_renderer", "paper").model_dump(), "align_corners": False},
        "head_motion": {**model_config("head_motion", "paper").model_dump(), "official": True},
        "motion_field": {**model_config("motion_field", "paper").model_dump(), "official": True},
    }


def convert_state(section: str, state: dict[str, Any], arch_config: dict[str, Any]) -> dict[str, Any]:
    """One official state dict -> the project's state dict of `ARCHS[section]` (strictly checked)."""
    import torch

    from nodes.weights import check_gaussian_kernel, map_state

    from .models import create_model

    for key, (channels, scale) in KERNELS.get(section, {}).items():
        check_gaussian_kernel(state, key, channels, scale, f"{section}.{key}")
    state = {k: v for k, v in state.items() if k not in KERNELS.get(section, {})}
    with torch.device("meta"):
        target = create_model(ARCHS[section], arch_config).state_dict()
    extra = {}
    if section == "audio2pose":  # raw features in; [-1, 1] poses out, scaled by the release's constants
        extra = {"audio_mean": torch.zeros(41), "audio_std": torch.ones(41),
                 "pose_mean": torch.from_numpy((POSE_MAX + POSE_MIN) / 2), "pose_std": torch.from_numpy((POSE_MAX - POSE_MIN) / 2)}
    elif section == "audio2kp":
        extra = {"audio_mean": torch.zeros(41), "audio_std": torch.ones(41)}
    return map_state(state, lambda k: rename(section, k), target, extra, what=f"audio2head.pth.tar [{section}]")


def convert(files: dict[str, Path], out_dir: Path, source_info: dict[str, Any]) -> list[Path]:
    """`graphrun weights import audio2head`: audio2head.pth.tar -> three talkgraph exports
    (keypoint_autoencoder = detector + renderer, head_motion, motion_field)."""
    from nodes.weights import load_official, write_export

    path = files["audio2head.pth.tar"]
    ckpt = load_official(path, "audio2head.pth.tar")
    missing = [s for s in ARCHS if s not in ckpt]
    if missing:
        raise ValueError(f"{path} is not Audio2Head's audio2head.pth.tar: no {', '.join(missing)} "
                         f"(it holds {', '.join(map(str, list(ckpt)[:8])) or 'nothing'})")
    cfg = official_configs()
    state = {s: convert_state(s, ckpt[s], cfg[ARCHS[s]]) for s in ARCHS}
    keypoints = {**{"detector." + k: v for k, v in state["kp_detector"].items()},
                 **{"renderer." + k: v for k, v in state["generator"].items()}}
    return [
        write_export(out_dir / "keypoints.pt", "keypoint_autoencoder",
                     {"arch": "keypoint_autoencoder", "detector": cfg["keypoint_detector"], "renderer": cfg["keypoint_renderer"]},
                     keypoints, source_info, "the keypoint detector and renderer (kp_detector + generator)"),
        write_export(out_dir / "head_motion.pt", "head_motion", {"arch": "head_motion", **cfg["head_motion"]}, state["audio2pose"],
                     source_info, "the head motion predictor (audio2pose)"),
        write_export(out_dir / "motion_field.pt", "motion_field", {"arch": "motion_field", **cfg["motion_field"]}, state["audio2kp"],
                     source_info, "the motion field generator (audio2kp)"),
    ]
