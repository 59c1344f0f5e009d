"""The Audio2Head architectures and their size presets, by name.

Each architecture file declares a pydantic config and a `PRESETS` dict (`paper`: the official
widths, parameter counts close to the released models; `tiny`: the same structure with small
widths for CPU training, tests and the bundled demo):

    create_model("keypoint_detector", "tiny")
    create_model("motion_field", {"block_expansion": 8, ...})   # an explicit config
"""
from __future__ import annotations

import functools
import importlib
from typing import Any

from pydantic import BaseModel
from torch import nn

# architecture -> module defining CONFIG (pydantic class), build(config) and PRESETS
ARCHITECTURES = {
    "keypoint_detector": "nodes.audio2head.keypoint_detector",
    "keypoint_renderer": "nodes.audio2head.generator",
    "head_motion": "nodes.audio2head.head_motion",
    "motion_field": "nodes.audio2head.motion_field",
}
# parameter counts of the official Audio2Head release (audio2head.pth.tar), for comparison
OFFICIAL_PARAMETERS = {"head_motion": 44.1e6, "motion_field": 84.9e6, "keypoint_detector": 14.2e6, "keypoint_renderer": 45.6e6}


def _module(arch: str):
    if arch not in ARCHITECTURES:
        raise KeyError(f"unknown Audio2Head architecture {arch!r}; known: {sorted(ARCHITECTURES)}")
    return importlib.import_module(ARCHITECTURES[arch])


def presets(arch: str) -> dict[str, BaseModel]:
    return dict(_module(arch).PRESETS)


def model_config(arch: str, preset: str | dict[str, Any] | BaseModel) -> BaseModel:
    mod = _module(arch)
    if isinstance(preset, BaseModel):
        return mod.CONFIG.model_validate(preset.model_dump())
    if isinstance(preset, str):
        if preset not in mod.PRESETS:
            raise KeyError(f"unknown {arch} preset {preset!r}; known: {sorted(mod.PRESETS)}")
        return mod.PRESETS[preset].model_copy()
    return mod.CONFIG.model_validate(preset)


def create_model(arch: str, preset: str | dict[str, Any] | BaseModel = "tiny") -> nn.Module:
    return _module(arch).build(model_config(arch, preset))


@functools.cache
def preset_parameter_counts(arch: str) -> dict[str, int]:
    """Parameters of each preset, counted on the meta device (no memory, no initialisation)."""
    import torch

    from .blocks import count_parameters

    with torch.device("meta"):
        return {name: count_parameters(create_model(arch, name)) for name in presets(arch)}
