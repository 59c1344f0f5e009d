"""The HDTF networks in the model registry (nodes/model_registry.py): sizes, parameter counts,
bundled checkpoints and the trainers that make them. No torch here: the architectures are
imported when a model is first built."""
from __future__ import annotations

from nodes.model_registry import ModelSpec, register_model
from nodes.weights import OfficialImport


def _animation_generator():
    from .animation_generator import AnimationConfig, AnimationGeneratorNet

    return AnimationConfig, AnimationGeneratorNet


def _flow_video_generator():
    from .flow_video_generator import FlowVideoConfig, FlowVideoGeneratorNet

    return FlowVideoConfig, FlowVideoGeneratorNet


ANIMATION_GENERATOR = register_model(ModelSpec(
    name="animation_generator", family="hdtf", title="HDTF animation generator", paper="HDTF §4.1, Fig. 4",
    architecture=_animation_generator,
    presets={
        "paper": {},  # the paper gives no widths and the official code has no animation generator
        "tiny": {"channels": 64, "encoder_blocks": 2, "decoder_channels": 32, "temporal_levels": 3, "style_hidden": 64,
                 "disc_channels": 32, "disc_layers": 3},
    },
    parameters={"paper": 8_928_295, "tiny": 468_519},
    bundled="checkpoints/hdtf_animation_tiny.pt",
    trainer="the TrainAnimationGenerator node (workflows/train_animation.yaml)",
))

FLOW_VIDEO_GENERATOR = register_model(ModelSpec(
    name="flow_video_generator", family="hdtf", title="HDTF flow-guided video generator", paper="HDTF §4.2, Fig. 6",
    architecture=_flow_video_generator,
    presets={
        "paper": {},  # the official release's widths (code_animation2video)
        "tiny": {"encoder_width": 16, "encoder_max": 64, "hourglass_blocks": 4, "hourglass_width": 16, "hourglass_max": 128,
                 "bottleneck_blocks": 1},
    },
    parameters={"paper": 20_417_877, "tiny": 787_749},
    official_parameters=20.4e6, official_source="MRzzm/HDTF code_animation2video, default options",
    bundled="checkpoints/hdtf_flow_video_tiny.pt",
    trainer="the TrainFlowVideoGenerator node (workflows/train_flow_video.yaml)",
    convert_official=OfficialImport("hdtf"),
))
