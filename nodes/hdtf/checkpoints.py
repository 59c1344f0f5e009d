"""Loading the HDTF generators from checkpoints written by the shared training loop.

A checkpoint is the loop's model export (`model.pt`: generator weights + model config + what it
was trained on), either as a file or as the CheckpointBlob a Train* node outputs.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from graphcore.node import NodeError
from graphcore.types import CheckpointBlob

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
    import torch

    from trainers.loop import MODEL_FORMAT

    hint = f"train one with {TRAINERS[arch]}"
    if isinstance(source, CheckpointBlob):
        what, stream = "the connected checkpoint", source.open()
    else:
        path = Path(source)
        if not path.is_file():
            raise NodeError(f"checkpoint {path} not found: {hint}")
        what, stream = f"checkpoint {path}", io.BytesIO(path.read_bytes())
    try:
        export = torch.load(stream, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which, not how torch failed inside
        raise NodeError(f"{what} cannot be read as a talkgraph checkpoint ({type(exc).__name__}: {exc}); {hint}") from None
    if not isinstance(export, dict) or export.get("format") != MODEL_FORMAT:
        raise NodeError(f"{what} is not a talkgraph model export (written by the training loop's export); {hint}")
    got = export.get("model_config", {}).get("arch")
    if got != arch:
        raise NodeError(f"{what} holds a {got!r} model, not a {arch!r}; {hint}")
    return export


def load_generator(source: str | os.PathLike | CheckpointBlob, arch: str, device: str = "cpu"):
    """(generator in eval mode on `device`, export dict)."""
    from .model_registry import create_model

    export = read_export(source, arch)
    config = {k: v for k, v in export["model_config"].items() if k != "arch"}
    model = create_model(arch, config)
    model.load_state_dict(export["generator"])
    return model.to(device).eval(), export


def blob_from_export(path: str | os.PathLike) -> CheckpointBlob:
    """A Checkpoint port value for a model export file; its metadata is the export minus weights."""
    import torch

    export = torch.load(path, map_location="cpu", weights_only=True)
    meta = {k: v for k, v in export.items() if k not in ("generator", "extra")}
    return CheckpointBlob.from_file(path, meta)
