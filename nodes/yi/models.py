"""The Yi et al. networks in the model registry (nodes/model_registry.py): sizes, parameter
counts against the official code, bundled checkpoints and the trainers that make them. No
torch here: the architectures are imported when a model is first built."""
from __future__ import annotations

from nodes.model_registry import ModelSpec, register_model
from nodes.weights import OfficialImport


def _audio_exp_pose():
    from .audio_to_exp_pose import AudioExpPoseConfig, AudioToExpressionPoseNet

    return AudioExpPoseConfig, AudioToExpressionPoseNet


def _memory_gan():
    from .memory_gan import MemoryGANConfig, MemoryGANNet

    return MemoryGANConfig, MemoryGANNet


AUDIO_EXP_POSE = register_model(ModelSpec(
    name="yi_audio_exp_pose", family="yi", title="Yi audio -> expression + pose network", paper="Yi et al. §3.2",
    architecture=_audio_exp_pose,
    presets={
        "paper": {},
        "tiny": {"channels": (8, 16, 32, 32, 32), "fc_hidden": 128, "embed": 64, "lstm_hidden": 64},
    },
    parameters={"paper": 29_423_783, "tiny": 233_687},
    # ATC_net with para_dim 64 + 6: ours predicts 33 + 6 (a 31-row difference in the last layer)
    official_parameters=29.4e6, official_source="Audio/code/models.py ATC_net",
    bundled="checkpoints/yi/audio_exp_pose_tiny.pt",
    trainer="the TrainAudioToExpressionPose node (workflows/train_yi_audio.yaml; the phonetic + rules-prior option: "
            "workflows/train_yi_audio_phonetic.yaml) or, for one target, "
            "PersonalizeAudioToExpressionPose (workflows/personalize_memorygan.yaml)",
    convert_official=OfficialImport("yi"),
))

MEMORY_GAN = register_model(ModelSpec(
    name="yi_memory_gan", family="yi", title="Yi memory-augmented GAN", paper="Yi et al. §3.4, Fig. 2, eq. 3-5",
    architecture=_memory_gan,
    presets={
        "paper": {},  # unetac_adain_256; the key encoder: ResNet-18 without its classifier + FC to 512-D keys
        "tiny": {"ngf": 16, "levels": 7, "identity": "own", "identity_dim": 84, "mlp_dim": 256, "dropout": 0.0, "ndf": 16,
                 "d_layers": 3, "encoder_widths": (8, 16, 32, 64), "key_dim": 64, "memory_size": 512, "encoder_size": 96},
    },
    parameters={"paper": 270_494_724, "tiny": 3_406_332},
    parts=("generator", "encoder"),
    official_parameters={"generator": 259e6, "encoder": 11.44e6}, official_source="unetac_adain_256 + ResNet-18 keys",
    bundled="checkpoints/yi/memory_gan_tiny.pt",
    trainer="the TrainMemoryGAN node (workflows/train_memorygan.yaml) or, for one target, "
            "PersonalizeMemoryGAN (workflows/personalize_memorygan.yaml)",
    convert_official=OfficialImport("yi"),
))
