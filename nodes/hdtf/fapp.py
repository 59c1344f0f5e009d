"""F_app between frames of a dataset clip, from their 3DMM coefficients — the same geometry the
DenseFlowBuilder node uses at inference (nodes/face/flow.py), so the video generator is trained
on exactly the kind of flow it will be given."""
from __future__ import annotations

from typing import Any

import numpy as np


class ClipFlowBuilder:
    """Callable (clip, ref frame, target frames) -> F_app (len(targets), H, W, 2), also giving
    the region codes of the last call (face / head-related / torso / background)."""

    def __init__(self, face_model=None, device: str = "cpu") -> None:
        from nodes.face.flow import FlowBuilder
        from nodes.face.model import load_face_model

        self.builder = FlowBuilder(face_model or load_face_model(), device=device)
        self.last_regions: np.ndarray | None = None

    def __call__(self, clip: dict[str, Any], ref: int, targets: np.ndarray) -> np.ndarray:
        from nodes.face.flow import Coefficients

        h, w = clip["frames"].shape[1:3] if "frames" in clip else clip["image_size"]
        shape, expr, pose = clip["shape"], clip["expression"], clip["pose"]
        reference = Coefficients(shape, expr[ref:ref + 1], pose[ref:ref + 1])
        driving = Coefficients(shape, expr[targets], pose[targets])
        flow, regions = self.builder.build(reference, driving, h, w)
        self.last_regions = regions
        return flow
