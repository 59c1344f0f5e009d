"""A small timm-style registry of the HDTF architectures and their size presets.

Each architecture file registers its presets (`paper`: the paper's/official widths,
`tiny`: the same structure with small widths for CPU training, tests and the demo):

    model = create_model("flow_video_generator", "tiny")
    model = create_model("flow_video_generator", {"encoder_width": 32, ...})  # explicit config
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from torch import nn

_ARCHS: dict[str, tuple[type[BaseModel], Callable[[Any], nn.Module]]] = {}
_PRESETS: dict[str, dict[str, BaseModel]] = {}


def register_architecture(name: str, config_cls: type[BaseModel], build: Callable[[Any], nn.Module],
                          presets: dict[str, BaseModel]) -> None:
    _ARCHS[name] = (config_cls, build)
    _PRESETS[name] = dict(presets)


def _ensure_loaded() -> None:
    # Importing the architecture modules registers them.
    from . import animation_generator, flow_video_generator  # noqa: F401


def list_models() -> dict[str, list[str]]:
    _ensure_loaded()
    return {name: sorted(p) for name, p in _PRESETS.items()}


def model_config(arch: str, preset: str | dict[str, Any] | BaseModel) -> BaseModel:
    """The config of a preset name, or a config validated from a dict."""
    _ensure_loaded()
    if arch not in _ARCHS:
        raise KeyError(f"unknown architecture {arch!r}; known: {sorted(_ARCHS)}")
    config_cls, _ = _ARCHS[arch]
    if isinstance(preset, BaseModel):
        return config_cls.model_validate(preset.model_dump())
    if isinstance(preset, str):
        if preset not in _PRESETS[arch]:
            raise KeyError(f"unknown {arch} preset {preset!r}; known: {sorted(_PRESETS[arch])}")
        return _PRESETS[arch][preset].model_copy()
    return config_cls.model_validate(preset)


def create_model(arch: str, preset: str | dict[str, Any] | BaseModel = "tiny") -> nn.Module:
    cfg = model_config(arch, preset)
    return _ARCHS[arch][1](cfg)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
