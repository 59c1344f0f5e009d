"""The IP_LAP networks in the model registry (nodes/model_registry.py): sizes, parameter counts
against the official code, bundled checkpoints, the trainers that make them and the importer of
the official release (`graphrun weights import ip_lap`, nodes/ip_lap/official.py). No torch here:
the architectures are imported when a model is first built.

`paper`: the official code's layout and widths (tensor for tensor: nodes/ip_lap/official.py,
tests/test_ip_lap_conformance.py); `tiny`: the same structure with small widths for CPU training,
tests and the bundled demo.
"""
from __future__ import annotations

from nodes.model_registry import ModelSpec, register_model
from nodes.weights import OfficialImport

OFFICIAL_SOURCE = "Weizhi-Zhong/IP_LAP models/, instantiated with the defaults of its inference script"
# the official Renderer's VGG-19 (`perceptual.model.network`), a loss network: the project keeps it
# out of the model (trainers/vgg.py; `graphrun weights import ip_lap` writes it as vgg19.pt)
OFFICIAL_RENDERER_WITH_VGG, OFFICIAL_VGG19 = 38_987_619, 20_024_384


def _landmark_generator():
    from .landmark_generator import LandmarkGeneratorConfig, LandmarkGeneratorNet

    return LandmarkGeneratorConfig, LandmarkGeneratorNet


def _renderer():
    from .renderer import LandmarkRendererNet, RendererConfig

    return RendererConfig, LandmarkRendererNet


LANDMARK_GENERATOR = register_model(ModelSpec(
    name="ip_lap_landmark_generator", family="ip_lap", title="IP_LAP landmark generator", paper="IP_LAP §3.1, Fig. 2",
    architecture=_landmark_generator,
    presets={
        "paper": {},  # Landmark_generator(T=5, d_model=512, nlayers=4, nhead=4, dim_feedforward=1024)
        "tiny": {"dim": 128, "layers": 2, "heads": 4, "ff_dim": 256, "audio_widths": (16, 32, 48, 64),
                 "landmark_widths": (4, 8, 16, 32, 48, 64, 96)},
    },
    parameters={"paper": 13_724_394, "tiny": 877_146},
    official_parameters=13_724_394, official_source=f"{OFFICIAL_SOURCE}: Landmark_generator",
    bundled="checkpoints/ip_lap/landmark_generator_tiny.pt",
    trainer="the TrainLandmarkGenerator node (workflows/train_ip_lap.yaml), or import the official "
            "landmarkgenerator_checkpoint.pth with `graphrun weights import ip_lap FILE`",
    convert_official=OfficialImport("ip_lap"),
))

RENDERER = register_model(ModelSpec(
    name="ip_lap_renderer", family="ip_lap", title="IP_LAP renderer", paper="IP_LAP §3.2, Fig. 3",
    architecture=_renderer,
    presets={
        "paper": {},  # Renderer(): flow_module + translation
        # CPU: 64-px faces (a quarter of the pixels) and narrow layers; one reference costs ~20 ms per frame
        "tiny": {"size": 64, "c1": 8, "c2": 48, "spade_hidden": 16, "audio_widths": (8, 16, 32, 48), "audio_dim": 64,
                 "adain_hidden": 16, "weight_hidden": 8},
        # the tiny widths at the paper's 128-px faces: lip gaps of a few pixels at 64 px drew as closed
        "tiny128": {"size": 128, "c1": 8, "c2": 48, "spade_hidden": 16, "audio_widths": (8, 16, 32, 48), "audio_dim": 64,
                    "adain_hidden": 16, "weight_hidden": 8},
    },
    parameters={"paper": 18_963_235, "tiny": 441_671, "tiny128": 441_671},
    official_parameters=OFFICIAL_RENDERER_WITH_VGG - OFFICIAL_VGG19,
    official_source=f"{OFFICIAL_SOURCE}: Renderer (38,987,619) less the VGG-19 of its perceptual loss (20,024,384)",
    bundled="checkpoints/ip_lap/renderer_tiny.pt",
    trainer="the TrainLandmarkRenderer node (workflows/train_ip_lap.yaml), or import the official "
            "renderer_checkpoint.pth with `graphrun weights import ip_lap FILE`",
    convert_official=OfficialImport("ip_lap"),
))
