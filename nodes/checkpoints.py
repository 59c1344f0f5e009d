"""Checkpoints of the registered models (nodes/model_registry.py): one loader for every
family's exports, and a node's checkpoint input declared in one line.

    class FlowVideoGenerator(Node):
        inputs = {
            "reference": In("Image"),
            "flow": In("FlowField"),
            "checkpoint": CheckpointInput("flow_video_generator"),
        }

        def run(self, ctx, reference, flow, checkpoint=None):
            generator, export = load_checkpoint(self, ctx, "checkpoint", checkpoint)

A trainer's output is `CheckpointOutput(model)` (nodes/training.train_outputs). Both ports add the
model's facts (parameter counts, bundled file, trainer) to the node's schema.

`CheckpointInput` gives the node an optional Checkpoint port, an InputFile parameter (named
after the port; `param=` names another) used when the port is not connected, and the model's
bundled checkpoint when that is empty too. The bundled file is declared as an implicit file
(graphcore FileSource), so its content keys the cache and validation reports it missing.
A checkpoint is the training loop's model export (trainers/loop.py `model.pt`), as a file or
as the CheckpointBlob a Train* node outputs.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from graphcore.node import FileSource, Node, NodeError, Port, RunContext
from graphcore.types import CheckpointBlob
from nodes.model_registry import ModelSpec, create_model, model_spec

if TYPE_CHECKING:
    from torch import nn


@dataclasses.dataclass(frozen=True)
class CheckpointPort(Port):
    """A Checkpoint port that knows which registered model its checkpoints hold; the node's
    schema (`graphrun nodes describe`) shows that model's facts (model_facts)."""

    model: str = ""

    def facts(self) -> dict[str, Any]:
        return model_facts(self.model)


def CheckpointInput(model: str | ModelSpec, doc: str = "", *, param: str = "",
                    bundled: str | os.PathLike | None = None, trainer: str | None = None) -> CheckpointPort:
    """A node's checkpoint input: port + parameter + bundled fallback (see the module doc).

    `bundled`: another bundled file than the model's own (relative to assets/, or a path), e.g.
    an ablation's checkpoint, and `trainer`: what makes that one. A model without a bundled checkpoint makes the input required in
    effect: connect one or name a file."""
    spec = model_spec(model)
    if bundled is not None or trainer is not None:
        spec = dataclasses.replace(spec, bundled=spec.bundled if bundled is None else bundled, trainer=trainer or spec.trainer)
    made_by = f" (made by {spec.trainer})" if spec.trainer else ""
    fallback = spec.bundled_path
    empty = f"empty: the bundled {spec.bundled_name}{made_by}" if fallback else f"required unless connected{made_by}"
    return CheckpointPort("Checkpoint", doc or f"a trained {spec.title} (overrides the checkpoint parameter)", True,
                          FileSource(param=param, fallback=fallback, description=f"{spec.title} checkpoint; {empty}",
                                     extensions=(".pt",)), model=spec.name)


def CheckpointOutput(model: str | ModelSpec, doc: str = "") -> CheckpointPort:
    """A trainer's checkpoint output, holding a `model` export."""
    spec = model_spec(model)
    return CheckpointPort("Checkpoint", doc or f"the trained {spec.title} (weights + config + what it was trained on)",
                          model=spec.name)


def load_checkpoint(node: Node, ctx: RunContext, port: str, value: CheckpointBlob | None = None,
                    device: str | None = None, config: Mapping[str, Any] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode on ctx.device, export) of a node's CheckpointInput `port`: the
    connected checkpoint, else the file its parameter names, else the bundled one. `config`:
    fields that override the checkpoint's model config (merged into nested sections), e.g. a
    node's choice of convention for the same weights."""
    declared = node.inputs[port]
    if not isinstance(declared, CheckpointPort):
        raise TypeError(f"input {port!r} of {node.type_name} is not a CheckpointInput")
    source = node.input_source(ctx, port, value)
    if source is None:
        spec = model_spec(declared.model)
        raise NodeError(f"{node.type_name}: no {spec.title} checkpoint: connect `{port}` or set the parameter "
                        f"`{declared.file.param}`" + (f"; train one with {spec.trainer}" if spec.trainer else ""))
    return load_model(source, declared.model, device or ctx.device, config)


def _merged(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        out[key] = _merged(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) else value
    return out


def load_model(source: str | os.PathLike | CheckpointBlob, model: str | ModelSpec,
               device: str = "cpu", config: Mapping[str, Any] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode on `device`, export dict) from a model export file or blob. A missing,
    unreadable or foreign checkpoint is a NodeError naming the trainer that makes the right one."""
    from trainers.exports import read_model_export

    spec = model_spec(model)
    hint = f"train one with {spec.trainer}" if spec.trainer else f"it must be a {spec.name} export"
    export = read_model_export(source, spec.name, hint)
    what = "the connected checkpoint" if isinstance(source, CheckpointBlob) else f"checkpoint {source}"
    try:
        net = create_model(spec, _merged(export["model_config"], config or {}))
    except ValueError as exc:  # pydantic's ValidationError: a config this code does not know
        raise NodeError(f"{what}: its {spec.name} config does not fit this code ({exc}); {hint}") from None
    try:
        net.load_state_dict(export["generator"])  # float16-stored weights are cast to the model's dtype
    except RuntimeError as exc:
        raise NodeError(f"{what}: its weights do not fit the {spec.name} it describes ({exc}); {hint}") from None
    return net.to(device).eval(), export


def model_facts(*models: str | ModelSpec) -> dict[str, Any]:
    """Schema facts of the models a node runs or trains (what its checkpoint ports add, or an
    `extra_schema` for a model used otherwise): per model its parameter counts per preset, the
    official release's, its paper section, bundled checkpoint and trainer. From the specs: no torch."""
    return {"models": {model_spec(m).name: model_spec(m).describe() for m in models}}
