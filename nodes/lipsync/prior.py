"""The `mouth_prior: rules` option shared by the learned audio -> mouth generators (HDTF's
AnimationGenerator, Yi et al.'s AudioToExpressionPose; docs/lipsync.md "Rules prior + learned
residual"). A departure from every paper, off in every preset.

The rule-based mouth of the phonetic features (`features_rule_mouth`, which alone scores 0.713 on
the held-out voices) is an extra input of the network, and its mouth output is that prior plus a
learned residual whose last layer starts at zero (an untrained model gives the rules' mouth) and
whose size the trainer penalises (L2 on the standardised residual). Why: trained on a few
synthetic voices, the papers' mouth decoders read phones worse than the viseme table on voices
they never heard; the residual only has to learn what the table gets wrong, and in silence the
prior closes the mouth.

One function computes the prior for trainers (from a dataset's stored features) and nodes (from
AudioFeatures at inference): the same input in both places.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

PRIOR_DIM = 28  # the face model's mouth coefficients (nodes/face/model.py), the first 28 of its 33 expression ones


def rules_mouth_prior(features: np.ndarray, fps: float = 25.0) -> np.ndarray:
    """The prior (T, 28), float32: the rules mouth of phonetic features (T, 44) on a neutral face."""
    from .rules import features_rule_mouth

    return features_rule_mouth(features, fps).astype(np.float32)


def zero_residual_(layer: nn.Module, rows: slice = slice(None)) -> None:
    """Zero the output rows `rows` (weight and bias) of the residual's last layer (a Linear or a
    1x1 Conv1d): the residual then starts at exactly zero whatever it reads."""
    with torch.no_grad():
        layer.weight[rows].zero_()
        if layer.bias is not None:
            layer.bias[rows].zero_()


def residual_penalty(mouth_n: torch.Tensor, prior_n: torch.Tensor) -> torch.Tensor:
    """The trainers' L2 term: mean squared residual in standardised mouth units."""
    return (mouth_n - prior_n).pow(2).mean()


def warm_start(model: nn.Module, path: str) -> None:
    """Seed a `mouth_prior: rules` model from an export of the same family without the prior: every
    tensor of the same shape is copied; the input layers the model names in `prior_input_layers`
    (whose extra input columns are the prior's, after the features') keep the old columns and get
    zeros for the prior; then the model's `zero_residual()` restarts the residual at zero."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    src = state.get("generator", state) if isinstance(state, dict) else state
    grow = set(getattr(model, "prior_input_layers", ()))
    own = model.state_dict()
    for key, value in own.items():
        old = src.get(key)
        if old is None:
            continue
        if old.shape == value.shape:
            own[key] = old
        elif key in grow and old.shape[0] == value.shape[0] and old.shape[2:] == value.shape[2:] and old.shape[1] < value.shape[1]:
            grown = torch.zeros_like(value)
            grown[:, :old.shape[1]] = old
            own[key] = grown
    model.load_state_dict(own)
    model.zero_residual()
