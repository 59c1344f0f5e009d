"""A learned node with a checkpoint: one registry entry and the nodes that use it.

`Denoise` runs the denoiser of denoiser.py; `TrainDenoiser` trains it with talkgraph's training
loop and outputs the checkpoint, which can feed `Denoise` directly. Without a connected or named
checkpoint, `Denoise` uses the one this package ships (made by `TrainDenoiser`: train_denoiser.yaml).
"""
from __future__ import annotations

import importlib.resources
from typing import Any

import numpy as np
from pydantic import Field

from graphcore import In, Node, NodeError, Out, RunContext
from nodes.checkpoints import CheckpointInput, load_checkpoint
from nodes.model_registry import ModelSpec, model_config, register_model
from nodes.training import TrainParams, run_training, train_outputs


def _architecture():  # imported when a model is first built: listing nodes needs no torch
    from .denoiser import DenoiserConfig, DenoiserNet

    return DenoiserConfig, DenoiserNet


DENOISER = register_model(ModelSpec(
    name="example_denoiser", family="graphrun-example", title="example signal denoiser",
    architecture=_architecture,
    presets={"paper": {}, "tiny": {"width": 8, "layers": 4}},  # overrides of DenoiserConfig's defaults
    parameters={"paper": 20_961, "tiny": 745},  # pinned: talkgraph's tests build every registered preset
    bundled=importlib.resources.files(__package__) / "checkpoints" / "denoiser_tiny.pt",
    trainer="the TrainDenoiser node (train_denoiser.yaml of graphrun-example-nodes)",
))


class Denoise(Node):
    """Remove noise from a 1-D signal with the learned denoiser."""

    category = "example"
    inputs = {
        "signal": In("Array", "a noisy 1-D signal"),
        "checkpoint": CheckpointInput(DENOISER),  # port + `checkpoint` parameter + the bundled file + its facts
    }
    outputs = {"denoised": Out("Array", "the signal without its noise")}

    def run(self, ctx: RunContext, signal: np.ndarray, checkpoint: Any = None) -> dict[str, Any]:
        from .denoiser import denoise

        if signal.ndim != 1:
            raise NodeError(f"Denoise: expected a 1-D signal, got shape {signal.shape}")
        model, export = load_checkpoint(self, ctx, "checkpoint", checkpoint)  # connected > file > bundled
        ctx.log(f"denoiser trained for {export['step']} steps")
        return {"denoised": denoise(model, signal, ctx.device).astype(np.float32)}


class TrainDenoiser(Node):
    """Train the denoiser on synthetic noisy sines (talkgraph's training loop: seeded, resumable)."""

    category = "example"
    outputs = train_outputs(DENOISER)  # checkpoint (a DENOISER export), metrics, loss_curve

    class Params(TrainParams):  # preset, steps, batch_size, lr_g, seed, work_dir, save_to, ...
        steps: int = Field(600, ge=1, le=1_000_000, description="updates")
        lr_g: float = Field(2e-3, gt=0, le=1)
        window: int = Field(512, ge=16, le=65536, description="samples per training window")

    def run(self, ctx: RunContext) -> dict[str, Any]:
        from .denoiser import DenoiseTask

        p = self.params
        return run_training(ctx, "TrainDenoiser", lambda: DenoiseTask(DENOISER.name, model_config(DENOISER, p.preset), p.window), p)
