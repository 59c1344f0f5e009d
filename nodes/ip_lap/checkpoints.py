"""IP_LAP checkpoints: the shared training loop's model exports (trainers/loop.py) — trained here
or imported from the official release (`graphrun weights import ip_lap …`, nodes/ip_lap/official.py)
— as a file or as the CheckpointBlob a Train* node outputs."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from graphcore.types import CheckpointBlob
from trainers.exports import read_model_export

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAINERS = {
    "ip_lap_landmark_generator": "the TrainLandmarkGenerator node (workflows/train_ip_lap.yaml), or import the official "
                          "landmarkgenerator_checkpoint.pth with `graphrun weights import ip_lap FILE`",
    "ip_lap_renderer": "the TrainLandmarkRenderer node (workflows/train_ip_lap.yaml), or import the official "
                "renderer_checkpoint.pth with `graphrun weights import ip_lap FILE`",
}
BUNDLED = {
    "ip_lap_landmark_generator": "assets/checkpoints/ip_lap/landmark_generator_tiny.pt",
    "ip_lap_renderer": "assets/checkpoints/ip_lap/renderer_tiny.pt",
}


def checkpoint_source(resolve, param: str, connected: CheckpointBlob | None, arch: str):
    """A connected checkpoint wins, then the parameter's path, then the bundled file."""
    if connected is not None:
        return connected
    return resolve(param) if param else REPO_ROOT / BUNDLED[arch]


def load_model(source: str | os.PathLike | CheckpointBlob, arch: str, device: str = "cpu"):
    """(model in eval mode, export) of a landmark_generator or renderer checkpoint."""
    from .models import create_model

    export = read_model_export(source, arch, f"train one with {TRAINERS[arch]}")
    cfg = {k: v for k, v in export["model_config"].items() if k != "arch"}
    model = create_model(arch, cfg)
    model.load_state_dict(export["generator"])
    return model.to(device).eval(), export


def is_bgr(export: dict[str, Any]) -> bool:
    """Whether the checkpoint was trained on BGR images (the official release) rather than RGB."""
    return (export.get("extra") or {}).get("channels") == "bgr"
