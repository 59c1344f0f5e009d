"""Reading the shared loop's model exports (trainers/loop.py `model.pt`) from inference nodes.

A checkpoint reaches a node as a file path or as the CheckpointBlob a Train* node outputs;
either way a missing, unreadable or wrong-architecture checkpoint becomes a NodeError whose
message names the trainer that makes the right one (`hint`).
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from graphcore.node import NodeError
from graphcore.types import CheckpointBlob

# The export format, here rather than in loop.py: inference nodes read exports, and what they
# import enters their cache keys (a change to the training loop must not invalidate inference).
MODEL_FORMAT = "talkgraph.model/1"


def read_model_export(source: str | os.PathLike | CheckpointBlob, arch: str, hint: str) -> dict[str, Any]:
    """The export dict of a checkpoint, checked to hold an `arch` model (model_config["arch"])."""
    import torch

    if isinstance(source, CheckpointBlob):
        what, stream = "the connected checkpoint", source.open()
    else:
        path = Path(source)
        if not path.is_file():
            raise NodeError(f"checkpoint {path} not found: {hint}")
        what, stream = f"checkpoint {path}", io.BytesIO(path.read_bytes())
    try:
        export = torch.load(stream, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or foreign file: say which, not how torch failed inside
        raise NodeError(f"{what} cannot be read as a talkgraph checkpoint ({type(exc).__name__}: {exc}); {hint}") from None
    if not isinstance(export, dict) or export.get("format") != MODEL_FORMAT:
        raise NodeError(f"{what} is not a talkgraph model export (written by the training loop's export); {hint}")
    got = export.get("model_config", {}).get("arch")
    if got != arch:
        raise NodeError(f"{what} holds a {got!r} model, not a {arch!r}; {hint}")
    return export


def blob_from_export(path: str | os.PathLike) -> CheckpointBlob:
    """A Checkpoint port value for a model export file; its metadata is the export minus weights."""
    import torch

    export = torch.load(path, map_location="cpu", weights_only=True)
    return CheckpointBlob.from_file(path, {k: v for k, v in export.items() if k not in ("generator", "extra")})
