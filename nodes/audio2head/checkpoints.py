"""Audio2Head checkpoints: the shared training loop's model exports (trainers/loop.py), as a
file or as the CheckpointBlob a Train* node outputs.

Three exports: `keypoint_autoencoder` (the keypoint detector N_D and the renderer N_I, trained
together as in FOMM; weights prefixed `detector.` / `renderer.`), `head_motion` (N_H) and
`motion_field` (N_M).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from graphcore.types import CheckpointBlob
from trainers.exports import blob_from_export, read_model_export  # noqa: F401 (re-exported)

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAINERS = {
    "keypoint_autoencoder": "the TrainKeypointRenderer node (workflows/train_audio2head.yaml)",
    "head_motion": "the TrainHeadMotionPredictor node (workflows/train_audio2head.yaml)",
    "motion_field": "the TrainMotionFieldGenerator node, stages 1 and 2 (workflows/train_audio2head.yaml)",
}
BUNDLED = {
    "keypoint_autoencoder": "assets/checkpoints/audio2head/keypoints_tiny.pt",
    "head_motion": "assets/checkpoints/audio2head/head_motion_tiny.pt",
    "motion_field": "assets/checkpoints/audio2head/motion_field_tiny.pt",
}
BUNDLED_L1 = "assets/checkpoints/audio2head/head_motion_l1_tiny.pt"  # the "with L1" ablation


def read_export(source: str | os.PathLike | CheckpointBlob, arch: str) -> dict[str, Any]:
    """The export dict of a checkpoint, checked to hold an `arch` model."""
    return read_model_export(source, arch, f"train one with {TRAINERS[arch]}")


def checkpoint_source(resolve, param: str, connected: CheckpointBlob | None, arch: str):
    """A connected checkpoint wins, then the parameter's path, then the bundled file."""
    if connected is not None:
        return connected
    return resolve(param) if param else REPO_ROOT / BUNDLED[arch]


def _load(module, state: dict[str, Any], prefix: str = ""):
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    module.load_state_dict(state)
    return module


def load_keypoint_models(source, device: str = "cpu", parts: tuple[str, ...] = ("detector", "renderer")):
    """{"detector": KeypointDetector, "renderer": KeypointRenderer} (eval mode) and the export."""
    from .models import create_model

    export = read_export(source, "keypoint_autoencoder")
    cfg = export["model_config"]
    archs = {"detector": "keypoint_detector", "renderer": "keypoint_renderer"}
    models = {p: _load(create_model(archs[p], cfg[p]), export["generator"], p + ".").to(device).eval() for p in parts}
    return models, export


def load_model(source, arch: str, device: str = "cpu"):
    """(model in eval mode, export) for `head_motion` or `motion_field`."""
    from .models import create_model

    export = read_export(source, arch)
    cfg = {k: v for k, v in export["model_config"].items() if k != "arch"}
    return _load(create_model(arch, cfg), export["generator"]).to(device).eval(), export
