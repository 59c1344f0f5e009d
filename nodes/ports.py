"""Small helpers shared by nodes that accept either an `image` or `frames` input."""
from __future__ import annotations

import numpy as np

from graphcore.node import NodeError


def image_or_frames(node: str, image: np.ndarray | None, frames: np.ndarray | None) -> np.ndarray:
    """The one connected input as frames (T, H, W, C): an image becomes a single frame."""
    if (image is None) == (frames is None):
        raise NodeError(f"{node}: connect exactly one of the inputs `image` and `frames`")
    return np.asarray(image)[None] if image is not None else np.asarray(frames)
