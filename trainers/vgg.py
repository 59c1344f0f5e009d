"""VGG-16/19 layer stacks defined here (torchvision is unusable in this environment), laid out
like torchvision's `features` Sequential so its state dicts load as they are.

Pretrained weights cannot be downloaded here: the user points to a state-dict file
(torchvision's `vgg19-*.pth`, or a VGG-Face conversion for `vgg16`). `load_vgg_state` accepts
any naming that lists the conv/linear layers in network order, checking every shape.
"""
from __future__ import annotations

import os
from collections.abc import Iterable

import torch
from torch import nn

# "M" is a 2x2 max-pool; numbers are conv widths (3x3, padding 1, each followed by ReLU).
CONFIGS: dict[str, list[int | str]] = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def make_features(arch: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    c_in = 3
    for v in CONFIGS[arch]:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c_in, int(v), 3, padding=1), nn.ReLU(inplace=False)]
            c_in = int(v)
    return nn.Sequential(*layers)


def relu_indices(arch: str) -> dict[str, int]:
    """Layer names 'relu{block}_{i}' -> index of that ReLU in `make_features(arch)`."""
    out, block, i, idx = {}, 1, 0, 0
    for v in CONFIGS[arch]:
        if v == "M":
            block, i = block + 1, 0
            idx += 1
        else:
            i += 1
            out[f"relu{block}_{i}"] = idx + 1
            idx += 2
    return out


def _weight_pairs(state: dict[str, torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, bias) pairs of conv/linear layers in the order they appear in the file."""
    weights = [k for k, v in state.items() if k.endswith("weight") and v.ndim in (2, 4)]
    return [(state[k], state[k[: -len("weight")] + "bias"]) for k in weights]


def load_vgg_state(modules: Iterable[nn.Module], path: str | os.PathLike) -> int:
    """Copy the conv/linear weights of a VGG state dict into `modules`' conv/linear layers, in order.

    Returns the number of layers loaded. Raises ValueError naming the file on a shape mismatch.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    pairs = _weight_pairs(state)
    targets = [m for mod in modules for m in mod.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    if len(pairs) < len(targets):
        raise ValueError(f"{path}: has {len(pairs)} conv/linear layers, expected at least {len(targets)}")
    for n, (layer, (w, b)) in enumerate(zip(targets, pairs)):
        if tuple(w.shape) != tuple(layer.weight.shape):
            raise ValueError(f"{path}: layer {n} has weight shape {tuple(w.shape)}, expected {tuple(layer.weight.shape)}")
        with torch.no_grad():
            layer.weight.copy_(w)
            layer.bias.copy_(b)
    return len(targets)


class VGGFeatures(nn.Module):
    """Frozen VGG feature extractor returning the activations at the named ReLU layers.

    Input: RGB in [0, 1], normalised here with ImageNet statistics.
    """

    def __init__(self, arch: str = "vgg19", layers: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")) -> None:
        super().__init__()
        idx = relu_indices(arch)
        unknown = [name for name in layers if name not in idx]
        if unknown:
            raise ValueError(f"unknown {arch} layers {unknown}; choose from {sorted(idx)}")
        self.cut = [idx[name] for name in layers]
        self.features = make_features(arch)[: max(self.cut) + 1]
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.activations((x - self.mean) / self.std)

    def activations(self, h: torch.Tensor) -> list[torch.Tensor]:
        """The named layers' activations for an input already normalised with ImageNet statistics."""
        out = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.cut:
                out.append(h)
        return out


class VGGFace(nn.Module):
    """VGG-Face (VGG-16 + fc6/fc7) identity embedding: the 4096-d fc7 activation, L2-normalised.

    Input: RGB face crops in [0, 1]; resized to 224x224 and mean-subtracted as the original
    (RGB means 129.19, 104.76, 93.59 on a 0-255 scale).
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = make_features("vgg16")
        self.fc6 = nn.Linear(512 * 7 * 7, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.register_buffer("mean", torch.tensor([129.186, 104.762, 93.594]).view(1, 3, 1, 1) / 255.0)
        self.requires_grad_(False)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> VGGFace:
        model = cls()
        load_vgg_state([model.features, model.fc6, model.fc7], path)
        return model.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
        h = self.features((x - self.mean) * 255.0).flatten(1)
        h = torch.relu(self.fc7(torch.relu(self.fc6(h))))
        return nn.functional.normalize(h, dim=1)
