"""The Audio2Head networks in the model registry (nodes/model_registry.py): sizes, parameter
counts (the official release's: audio2head.pth.tar), bundled checkpoints and the trainers that
make them. No torch here: the architectures are imported when a model is first built."""
from __future__ import annotations

from nodes.model_registry import ModelSpec, register_model
from nodes.weights import OfficialImport


def _keypoint_autoencoder():
    from .keypoint_autoencoder import KeypointAutoencoder, KeypointAutoencoderConfig

    return KeypointAutoencoderConfig, KeypointAutoencoder


def _head_motion():
    from .head_motion import HeadMotionConfig, HeadMotionPredictorNet

    return HeadMotionConfig, HeadMotionPredictorNet


def _motion_field():
    from .motion_field import MotionFieldConfig, MotionFieldGeneratorNet

    return MotionFieldConfig, MotionFieldGeneratorNet


KEYPOINT_AUTOENCODER = register_model(ModelSpec(
    name="keypoint_autoencoder", family="audio2head", title="Audio2Head keypoint detector + renderer",
    paper="Audio2Head §3.1 (FOMM §3)", architecture=_keypoint_autoencoder,
    presets={
        "paper": {},  # config/vox-256.yaml of the official release: kp_detector_params, generator_params
        "tiny": {"detector": {"block_expansion": 8, "max_features": 64, "num_blocks": 4},
                 "renderer": {"block_expansion": 8, "max_features": 64, "num_bottleneck_blocks": 2,
                              "dense_motion": {"block_expansion": 16, "max_features": 128, "num_blocks": 4}}},
    },
    parameters={"paper": 59_790_759, "tiny": 855_183},
    parts=("detector", "renderer"),
    official_parameters={"detector": 14.2e6, "renderer": 45.6e6}, official_source="audio2head.pth.tar",
    bundled="checkpoints/audio2head/keypoints_tiny.pt",
    trainer="the TrainKeypointRenderer node (workflows/train_audio2head.yaml)",
    convert_official=OfficialImport("audio2head"),
))

HEAD_MOTION = register_model(ModelSpec(
    name="head_motion", family="audio2head", title="Audio2Head head motion predictor", paper="Audio2Head §3.2, eq. 1-2",
    architecture=_head_motion,
    presets={
        "paper": {},  # modules/audio2pose.py: two ResNet-34 (256-d), LSTM(512 -> 256, 2 layers), Linear(256, 6)
        "tiny": {"image_size": 128, "width": 8, "embedding": 64},
    },
    parameters={"paper": 44_142_086, "tiny": 761_798},
    official_parameters=44.1e6, official_source="audio2head.pth.tar",
    bundled="checkpoints/audio2head/head_motion_tiny.pt",
    trainer="the TrainHeadMotionPredictor node (workflows/train_audio2head.yaml)",
    convert_official=OfficialImport("audio2head"),
))

MOTION_FIELD = register_model(ModelSpec(
    name="motion_field", family="audio2head", title="Audio2Head motion field generator", paper="Audio2Head §3.3",
    architecture=_motion_field,
    presets={
        "paper": {},  # config/parameters.yaml: S = 64, T = 64, Hourglass-3D 32 -> 512, 5 blocks
        "tiny": {"size": 32, "window": 32, "block_expansion": 8, "max_features": 64, "num_blocks": 3, "audio_width": 4,
                 "head_kernel": 3},
    },
    parameters={"paper": 84_994_512, "tiny": 398_060},
    official_parameters=84.9e6, official_source="audio2head.pth.tar",
    bundled="checkpoints/audio2head/motion_field_tiny.pt",
    trainer="the TrainMotionFieldGenerator node, stages 1 and 2 (workflows/train_audio2head.yaml)",
    convert_official=OfficialImport("audio2head"),
))

# the "with L1" ablation of the head motion predictor (pose_loss: l1), for EvaluateAudio2Head
HEAD_MOTION_L1_BUNDLED = "checkpoints/audio2head/head_motion_l1_tiny.pt"
