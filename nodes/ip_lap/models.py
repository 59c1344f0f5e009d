"""The IP_LAP architectures and their size presets, by name.

    create_model("ip_lap_landmark_generator", "tiny")
    create_model("ip_lap_renderer", {"c1": 16, ...})   # an explicit config

`paper`: the official code's layout and widths (tensor for tensor: see nodes/ip_lap/official.py);
`tiny`: the same structure with small widths for CPU training, tests and the bundled demo.
"""
from __future__ import annotations

import functools
import importlib
from typing import Any

from pydantic import BaseModel
from torch import nn

ARCHITECTURES = {
    "ip_lap_landmark_generator": "nodes.ip_lap.landmark_generator",
    "ip_lap_renderer": "nodes.ip_lap.renderer",
}


def _module(arch: str):
    if arch not in ARCHITECTURES:
        raise KeyError(f"unknown IP_LAP architecture {arch!r}; known: {sorted(ARCHITECTURES)}")
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

    with torch.device("meta"):
        return {name: sum(p.numel() for p in create_model(arch, name).parameters()) for name in presets(arch)}
