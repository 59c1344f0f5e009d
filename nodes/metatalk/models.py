"""The MetaTalk networks in the model registry (nodes/model_registry.py). No torch here."""
from __future__ import annotations

from nodes.model_registry import ModelSpec, register_model


def _a2e():
    from .a2e import A2EConfig, A2ENet

    return A2EConfig, A2ENet


def _renderer():
    from .face_renderer import FaceRendererConfig, NeuralFaceRendererNet

    return FaceRendererConfig, NeuralFaceRendererNet


TRAINER = "workflows/train_metatalk.yaml"

A2E = register_model(ModelSpec(
    name="metatalk_a2e", family="metatalk", title="MetaTalk audio-to-expression network (A2E)",
    paper="MetaTalk §2.3, Table 1, eq. 1",
    architecture=_a2e,
    presets={"paper": {}, "tiny": {"encoder_widths": (8, 16, 16, 16)}},
    # no official release (the paper is the specification); Table 1's H is 24,655 of these (33 outputs), the rest the AT-net stand-in
    parameters={"paper": 1_724_431, "tiny": 112_831},
    bundled="checkpoints/metatalk/a2e_tiny.pt",
    trainer=f"the TrainA2E node ({TRAINER})",
))

NEURAL_FACE_RENDERER = register_model(ModelSpec(
    name="metatalk_face_renderer", family="metatalk", title="MetaTalk neural face renderer (U-Net generator)",
    paper="MetaTalk §2.4, eq. 2-4",
    architecture=_renderer,
    presets={"paper": {}, "tiny": {"ngf": 8, "max_levels": 6, "ndf": 16},
             "tiny_residual": {"ngf": 8, "max_levels": 6, "ndf": 16, "residual": True}},  # not the paper: G corrects its input
    parameters={"paper": 54_419_459, "tiny": 459_011, "tiny_residual": 459_011},  # at 512 (8 levels); 768: 7 levels
    bundled="checkpoints/metatalk/face_renderer_residual_tiny.pt",  # preset tiny_residual (face_renderer_tiny.pt: tiny)
    trainer=f"the TrainNeuralFaceRenderer node ({TRAINER})",
))
