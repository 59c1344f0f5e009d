"""Audio2Head's released checkpoint (wangsuzhen/Audio2Head, `audio2head.pth.tar`) in talkgraph:
the converter `graphrun weights import audio2head` runs (docs/official-weights.md); the
release's audio features and pose conventions are in nodes/audio2head/release.py.

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

from .release import POSE_MAX, POSE_MIN

CONVERTER_VERSION = 1

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
# section -> (registered model, sub-module): the detector and renderer share one export
TARGETS = {"kp_detector": ("keypoint_autoencoder", "detector"), "generator": ("keypoint_autoencoder", "renderer"),
           "audio2pose": ("head_motion", ""), "audio2kp": ("motion_field", "")}


def rename(section: str, key: str) -> str:
    from nodes.weights import rename_by_rules

    return rename_by_rules(RULES[section], key, f"{section}.{key}")


def official_configs() -> dict[str, dict[str, Any]]:
    """The project configs of the released networks (paper presets in official mode)."""
    from nodes.model_registry import model_config

    keypoints = model_config("keypoint_autoencoder", "paper").model_dump()
    keypoints["renderer"]["align_corners"] = False
    return {
        "keypoint_autoencoder": keypoints,
        "head_motion": {**model_config("head_motion", "paper").model_dump(), "official": True},
        "motion_field": {**model_config("motion_field", "paper").model_dump(), "official": True},
    }


def convert_state(section: str, state: dict[str, Any], configs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One official state dict -> the project's state dict of its target (strictly checked)."""
    import torch

    from nodes.model_registry import create_model
    from nodes.weights import check_gaussian_kernel, map_state

    for key, (channels, scale) in KERNELS.get(section, {}).items():
        check_gaussian_kernel(state, key, channels, scale, f"{section}.{key}")
    state = {k: v for k, v in state.items() if k not in KERNELS.get(section, {})}
    name, part = TARGETS[section]
    with torch.device("meta"):
        model = create_model(name, configs[name])
    target = (getattr(model, part) if part else model).state_dict()
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
    missing = [s for s in TARGETS if s not in ckpt]
    if missing:
        raise ValueError(f"{path} is not Audio2Head's audio2head.pth.tar: no {', '.join(missing)} "
                         f"(it holds {', '.join(map(str, list(ckpt)[:8])) or 'nothing'})")
    cfg = official_configs()
    state = {s: convert_state(s, ckpt[s], cfg) for s in TARGETS}
    keypoints = {**{"detector." + k: v for k, v in state["kp_detector"].items()},
                 **{"renderer." + k: v for k, v in state["generator"].items()}}
    return [
        write_export(out_dir / "keypoints.pt", "keypoint_autoencoder",
                     {"arch": "keypoint_autoencoder", **cfg["keypoint_autoencoder"]},
                     keypoints, source_info, "the keypoint detector and renderer (kp_detector + generator)"),
        write_export(out_dir / "head_motion.pt", "head_motion", {"arch": "head_motion", **cfg["head_motion"]}, state["audio2pose"],
                     source_info, "the head motion predictor (audio2pose)"),
        write_export(out_dir / "motion_field.pt", "motion_field", {"arch": "motion_field", **cfg["motion_field"]}, state["audio2kp"],
                     source_info, "the motion field generator (audio2kp)"),
    ]
