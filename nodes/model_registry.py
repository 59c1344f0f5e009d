"""One registry of the networks of every family (timm's `register_model` / `create_model` /
`list_models`): a `ModelSpec` per architecture says how to build it, at which sizes, how many
parameters each size has (and the official release), which checkpoint is bundled and which
trainer makes its checkpoints.

A family declares its specs in a light module, `nodes/<family>/models.py` (plugins: anywhere
they like, at import), so that listing nodes and reading a spec never imports torch; the
architecture itself is imported when a model is first built:

    def _architecture():                       # imported when first built
        from .flow_video_generator import FlowVideoConfig, FlowVideoGeneratorNet
        return FlowVideoConfig, FlowVideoGeneratorNet

    FLOW_VIDEO_GENERATOR = register_model(ModelSpec(
        name="flow_video_generator", family="hdtf", architecture=_architecture,
        presets={"paper": {}, "tiny": {"encoder_width": 16, ...}},    # overrides of the config's defaults
        parameters={"paper": 20_412_612, "tiny": 1_100_000}, official_parameters=20.4e6, ...))

    model = create_model("flow_video_generator", "tiny")
    model = create_model("flow_video_generator", {"encoder_width": 32})   # an explicit config

Checkpoints (loading, a node's checkpoint input) are in nodes/checkpoints.py.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import os
import pkgutil
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from nodes.bundled import asset_path

if TYPE_CHECKING:
    from torch import nn

REQUIRED_PRESETS = ("paper", "tiny")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Everything the project knows about one architecture."""

    name: str  # unique; the `arch` recorded in its checkpoints (trainers/loop.py exports)
    family: str  # the paper / node sub-package: "hdtf", "audio2head", "yi", a plugin's name
    # () -> (pydantic config class, callable building the nn.Module from a config); imports torch
    architecture: Callable[[], tuple[type[BaseModel], Callable[[Any], nn.Module]]]
    # preset name -> overrides of the config's defaults. `paper`: the paper's / official sizes
    # (tensor-equal to the official architecture); `tiny`: the same structure, small widths
    presets: Mapping[str, Mapping[str, Any]]
    # preset -> exact parameter count (pinned: tests/test_model_registry.py builds every preset)
    parameters: Mapping[str, int]
    title: str = ""  # e.g. "HDTF flow-guided video generator"; default from the name
    paper: str = ""  # where it follows its paper, e.g. "HDTF §4.2, Fig. 6"
    # parameters of the official release ("total", or per sub-module named in `parts`)
    official_parameters: float | Mapping[str, float] | None = None
    official_source: str = ""  # what was counted
    tolerance: float = 0.01  # |paper - official| / official allowed; say why when larger
    parts: tuple[str, ...] = ()  # sub-modules (attribute names) counted on their own
    # the project-trained checkpoint: relative to talkgraph's assets/ (a str), or a path (a plugin's own file)
    bundled: str | os.PathLike | None = None
    trainer: str = ""  # what makes its checkpoints (named when one is missing or wrong)
    # official released weights -> a talkgraph export (`graphrun weights import`, issue 12)
    convert_official: Callable[..., Any] | None = None
    origin: str = ""  # the module that registered it (set by register_model)

    def __post_init__(self) -> None:
        missing = [p for p in REQUIRED_PRESETS if p not in self.presets]
        if missing:
            raise ValueError(f"model {self.name!r}: presets {missing} missing (every model has {list(REQUIRED_PRESETS)})")
        if set(self.parameters) != set(self.presets):
            raise ValueError(f"model {self.name!r}: parameter counts are for {sorted(self.parameters)}, "
                             f"presets are {sorted(self.presets)}")
        if isinstance(self.official_parameters, (int, float)):
            object.__setattr__(self, "official_parameters", {"total": float(self.official_parameters)})
        unknown = set(self.official_parameters or {}) - {"total", *self.parts}
        if unknown:
            raise ValueError(f"model {self.name!r}: official counts for {sorted(unknown)}, which are not in parts {self.parts}")
        if not self.title:
            object.__setattr__(self, "title", self.name.replace("_", " "))

    @property
    def config_class(self) -> type[BaseModel]:
        return self.architecture()[0]

    @property
    def bundled_path(self) -> Path | None:
        """The bundled checkpoint's absolute path (None: the model ships none)."""
        if self.bundled is None:
            return None
        return asset_path(self.bundled) if isinstance(self.bundled, str) else Path(os.fspath(self.bundled))

    @property
    def bundled_name(self) -> str:
        """How descriptions name the bundled checkpoint."""
        return f"assets/{self.bundled}" if isinstance(self.bundled, str) else str(self.bundled_path)

    def describe(self) -> dict[str, Any]:
        """JSON-able facts (for node schemas and `graphrun nodes describe`), without torch."""
        out: dict[str, Any] = {"family": self.family, "parameters": dict(self.parameters)}
        if self.paper:
            out["paper"] = self.paper
        if self.official_parameters:
            out["official_parameters"] = dict(self.official_parameters)
        if self.bundled is not None:
            out["bundled"] = self.bundled_name
        if self.trainer:
            out["trainer"] = self.trainer
        if self.convert_official is not None:
            out["official_weights"] = str(self.convert_official)
        return out


_MODELS: dict[str, ModelSpec] = {}
_builtin_loaded = False
_load_lock = threading.RLock()


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add a spec (returned, so a family module can keep it as a constant). Registering the
    same name again from the same module (a re-import) replaces it; from another, it is refused."""
    caller = inspect.currentframe().f_back  # type: ignore[union-attr]
    origin = spec.origin or (caller.f_globals.get("__name__", "") if caller else "")
    existing = _MODELS.get(spec.name)
    if existing is not None and existing.origin != origin:
        raise ValueError(f"model name {spec.name!r} is already registered by {existing.origin} (family {existing.family})")
    spec = dataclasses.replace(spec, origin=origin)
    _MODELS[spec.name] = spec
    return spec


def _load_builtin() -> None:
    """Import every `nodes/<family>/models.py` (light modules: specs only), once per process."""
    global _builtin_loaded
    if _builtin_loaded:
        return
    with _load_lock:  # nodes run on threads (--jobs): none may see half the families
        if _builtin_loaded:
            return
        # (found by name, not `import nodes`: a node's code depends on its own family's specs only)
        library = importlib.import_module(__package__)
        for info in pkgutil.iter_modules(library.__path__):
            if info.ispkg and importlib.util.find_spec(f"{__package__}.{info.name}.models") is not None:
                importlib.import_module(f"{__package__}.{info.name}.models")
        _builtin_loaded = True


def model_spec(name: str | ModelSpec) -> ModelSpec:
    if isinstance(name, ModelSpec):
        return name
    _load_builtin()
    try:
        return _MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(list_models())}") from None


def list_models(family: str | None = None) -> list[str]:
    """Registered model names (of one family), sorted."""
    _load_builtin()
    return sorted(n for n, s in _MODELS.items() if family is None or s.family == family)


def model_config(name: str | ModelSpec, preset: str | Mapping[str, Any] | BaseModel) -> BaseModel:
    """The config of a preset name, or a config validated from a dict (e.g. a checkpoint's)."""
    spec = model_spec(name)
    config_class = spec.config_class
    if isinstance(preset, BaseModel):
        return config_class.model_validate(preset.model_dump())
    if isinstance(preset, str):
        if preset not in spec.presets:
            raise KeyError(f"unknown {spec.name} preset {preset!r}; known: {sorted(spec.presets)}")
        return config_class.model_validate(dict(spec.presets[preset]))
    return config_class.model_validate({k: v for k, v in preset.items() if k != "arch"})


def create_model(name: str | ModelSpec, preset: str | Mapping[str, Any] | BaseModel = "tiny") -> nn.Module:
    """A freshly initialised model (inside `with torch.device("meta"):` to count without memory)."""
    spec = model_spec(name)
    _, build = spec.architecture()
    return build(model_config(spec, preset))


def count_parameters(module: nn.Module) -> int:
    """Learned parameters (buffers such as stored statistics excluded)."""
    return sum(p.numel() for p in module.parameters())


def count_preset(name: str | ModelSpec, preset: str) -> dict[str, int]:
    """{"total": n, <part>: n, ...} of a preset, built on the meta device (no memory, no init)."""
    import torch

    spec = model_spec(name)
    with torch.device("meta"):
        model = create_model(spec, preset)
    return {"total": count_parameters(model), **{p: count_parameters(getattr(model, p)) for p in spec.parts}}
