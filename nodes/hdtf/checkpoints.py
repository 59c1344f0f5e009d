"""Loading the HDTF generators from checkpoints written by the shared training loop.

A checkpoint is the loop's model export (`model.pt`: generator weights + model config + what it
was trained on), either as a file or as the CheckpointBlob a Train* node outputs.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from graphcore.types import CheckpointBlob
from trainers.exports import blob_from_export, read_model_export  # noqa: F401 (blob_from_export re-exported)

# Which trainer produces each architecture's checkpoints (named in error messages).
TRAINERS = {
    "animation_generator": "the TrainAnimationGenerator node (workflows/train_animation.yaml)",
    "flow_video_generator": "the TrainFlowVideoGenerator node (workflows/train_flow_video.yaml)",
}
BUNDLED = {
    "animation_generator": "assets/checkpoints/hdtf_animation_tiny.pt",
    "flow_video_generator": "assets/checkpoints/hdtf_flow_video_tiny.pt",
}
REPO_ROOT = Path(__file__).resolve().parents[2]


def read_export(source: str | os.PathLike | CheckpointBlob, arch: str) -> dict[str, Any]:
    """The export dict of a checkpoint file or blob, checked to hold an `arch` generator."""
    return read_model_export(source, arch, f"train one with {TRAINERS[arch]}")


def load_generator(source: str | os.PathLike | CheckpointBlob, arch: str, device: str = "cpu"):
    """(generator in eval mode on `device`, export dict)."""
    from .model_registry import create_model

    export = read_export(source, arch)
    config = {k: v for k, v in export["model_config"].items() if k != "arch"}
    model = create_model(arch, config)
    model.load_state_dict(export["generator"])
    return model.to(device).eval(), export
