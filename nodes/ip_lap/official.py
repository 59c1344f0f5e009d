"""The official IP_LAP checkpoints (Weizhi-Zhong/IP_LAP, Apache-2.0) -> the project's model exports.

The release has two files, each `{'state_dict': ...}` (optionally with optimizer / step entries
and a `module.` prefix from DataParallel):
- `landmarkgenerator_checkpoint.pth`: models.Landmark_generator(T=5, d_model=512, nlayers=4,
  nhead=4, dim_feedforward=1024) — 435 entries, 13,724,394 parameters;
- `renderer_checkpoint.pth`: models.Renderer() — 284 entries, 38,987,619 parameters, of which
  20,024,384 are the ImageNet VGG-19 `features` of its perceptual loss (`perceptual.model.network.*`).

Conversion renames keys (below), checks every shape, and checks that the two stored positional
tables (`fusion_transformer.position_{v,a}.pe`) are the sinusoids the project computes. The
renderer's VGG-19 is written as a torchvision-layout `features.N.*` file usable as the
`vgg_weights` of the perceptual loss (trainers/vgg.py). Official checkpoints saw BGR images: the
exports record `channels: bgr` and the nodes swap channels for them.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
from pathlib import Path
from typing import Any

import torch

from nodes.weights import WeightsError

CONVERTER_VERSION = 1
GENERATOR, RENDERER = "ip_lap_landmark_generator", "ip_lap_renderer"
FILES = {GENERATOR: "landmarkgenerator_checkpoint.pth", RENDERER: "renderer_checkpoint.pth"}

# (pattern, replacement), applied in order to each official key
_CONV_NORM = [(r"\.conv_block\.0\.", ".conv."), (r"\.conv_block\.1\.", ".norm.")]
_MODULATED = [(r"\.conv_1\.", ".conv1."), (r"\.conv_2\.", ".conv2."),
              (r"\.(spade|adain)_layer_1\.", ".norm1."), (r"\.(spade|adain)_layer_2\.", ".norm2."),
              (r"\.norm(\d)\.conv1\.", r".norm\1.shared."), (r"\.norm(\d)\.mlp_shared\.", r".norm\1.shared."),
              (r"\.norm(\d)\.mlp_gamma\.", r".norm\1.gamma."), (r"\.norm(\d)\.mlp_beta\.", r".norm\1.beta.")]
GENERATOR_RULES = [
    (r"^mel_encoder\.", "audio_encoder."), (r"^ref_encoder\.", "reference_encoder."), *_CONV_NORM,
    (r"^fusion_transformer\.modality\.", "token_type."),
    (r"^fusion_transformer\.transformer_encoder\.layers\.(\d+)\.self_attn\.in_proj_(weight|bias)$", r"layers.\1.qkv.\2"),
    (r"^fusion_transformer\.transformer_encoder\.layers\.(\d+)\.self_attn\.out_proj\.", r"layers.\1.proj."),
    (r"^fusion_transformer\.transformer_encoder\.layers\.(\d+)\.linear(\d)\.", r"layers.\1.ff\2."),
    (r"^fusion_transformer\.transformer_encoder\.layers\.", "layers."),
    (r"^mouse_keypoint_map\.", "lip_head."), (r"^jaw_keypoint_map\.", "jaw_head."), (r"^Norm\.", "embed_norm."),
]
RENDERER_RULES = [
    (r"^flow_module\.conv1\.", "alignment.enc1.0."), (r"^flow_module\.conv1_bn\.", "alignment.enc1.1."),
    (r"^flow_module\.conv2\.", "alignment.enc2.0."), (r"^flow_module\.conv2_bn\.", "alignment.enc2.1."),
    (r"^flow_module\.spade_layer_1\.", "alignment.spade1."), (r"^flow_module\.spade_layer_2\.", "alignment.spade2."),
    (r"^flow_module\.spade_layer_4\.", "alignment.spade3."),
    (r"^flow_module\.conv_4\.", "alignment.flow."), (r"^flow_module\.conv_5\.", "alignment.weight."),
    (r"^translation\.conv1\.", "translation.enc1.0."), (r"^translation\.conv1_bn\.", "translation.enc1.1."),
    (r"^translation\.conv2\.", "translation.enc2.0."), (r"^translation\.conv2_bn\.", "translation.enc2.1."),
    (r"^translation\.(spade|adain)_(\d)\.", lambda m: f"translation.{m[1]}{ {'1': 1, '2': 2, '4': 3}[m[2]] }."),
    (r"^translation\.conv_last\.", "translation.out."), *_CONV_NORM, *_MODULATED,
]
VGG_PREFIX = "perceptual.model.network."
POSITION_KEYS = ("fusion_transformer.position_v.pe", "fusion_transformer.position_a.pe")


class OfficialWeightsError(WeightsError, ValueError):
    """A file that is not (or not a complete) official IP_LAP checkpoint of the expected kind."""


def rename(key: str, rules) -> str:
    for pattern, repl in rules:
        key = re.sub(pattern, repl, key)
    return key


def read_state_dict(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict of an official checkpoint file (safe loading: tensors and plain containers
    only) without a `module.` prefix, and the file's sha256."""
    p = Path(path)
    if not p.is_file():
        raise OfficialWeightsError(f"{p}: no such file")
    raw = p.read_bytes()
    try:
        obj = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, not a torch file, or pickled objects beyond tensors
        raise OfficialWeightsError(f"{p} cannot be read as a PyTorch checkpoint with weights_only=True "
                                   f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise OfficialWeightsError(f"{p} holds no state dict (expected {{'state_dict': {{name: tensor}}}})")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    return state, hashlib.sha256(raw).hexdigest()


def _convert(state: dict[str, torch.Tensor], rules, model: torch.nn.Module, what: str) -> dict[str, torch.Tensor]:
    target = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        name = rename(k, rules)
        if name not in target:
            raise OfficialWeightsError(f"{what}: unexpected entry {k!r} (not an official IP_LAP {what}?)")
        if tuple(v.shape) != tuple(target[name].shape):
            raise OfficialWeightsError(f"{what}: {k!r} has shape {tuple(v.shape)}, expected {tuple(target[name].shape)}")
        out[name] = v.to(target[name].dtype)
    missing = sorted(k for k in target if k not in out)
    if missing:
        raise OfficialWeightsError(f"{what}: {len(missing)} entries missing, e.g. {missing[:3]} (truncated or another model?)")
    return out


def convert_landmark_generator(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official Landmark_generator state -> LandmarkGeneratorNet (`paper` preset) state."""
    from nodes.model_registry import create_model

    from .blocks import sinusoidal_positions

    state = dict(state)
    for k in POSITION_KEYS:
        pe = state.pop(k, None)
        if pe is None:
            raise OfficialWeightsError(f"landmark generator: entry {k!r} missing (not an official IP_LAP landmark generator?)")
        want = sinusoidal_positions(pe.shape[-2], pe.shape[-1])
        if pe.shape[-1] != 512 or (pe.reshape(want.shape) - want).abs().max() > 1e-5:
            raise OfficialWeightsError(f"landmark generator: {k!r} is not the sinusoidal table the architecture computes")
    with torch.device("meta"):
        model = create_model(GENERATOR, "paper")
    return _convert(state, GENERATOR_RULES, model, "landmark generator")


def convert_renderer(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Official Renderer state -> (LandmarkRendererNet `paper` state, VGG-19 features state in torchvision layout)."""
    from nodes.model_registry import create_model

    vgg = {"features." + k[len(VGG_PREFIX):]: v for k, v in state.items() if k.startswith(VGG_PREFIX)}
    rest = {k: v for k, v in state.items() if not k.startswith(VGG_PREFIX)}
    with torch.device("meta"):
        model = create_model(RENDERER, "paper")
    converted = _convert(rest, RENDERER_RULES, model, "renderer")
    if vgg:
        from trainers.vgg import make_features

        with torch.device("meta"):
            _convert(vgg, [], nn_wrap(make_features("vgg19")), "renderer's VGG-19")
    return converted, vgg


def nn_wrap(features: torch.nn.Module) -> torch.nn.Module:
    """`features` as the `.features` attribute of a module (torchvision's key layout)."""
    holder = torch.nn.Module()
    holder.features = features
    return holder


def export_dict(arch: str, state: dict[str, torch.Tensor], source: dict[str, Any],
                official: dict[str, Any] | None = None) -> dict[str, Any]:
    """A model export in the training loop's format (trainers/exports.py MODEL_FORMAT) for `arch`'s paper preset."""
    from nodes.model_registry import model_config
    from trainers.exports import MODEL_FORMAT

    return {"format": MODEL_FORMAT, "task": f"official_{arch}", "model_config": {"arch": arch, **model_config(arch, "paper").model_dump(mode="json")},
            "train_config": {}, "data": {"official": source}, "step": 0, "wall_s": 0.0, "final_losses": {},
            "generator": state, "extra": {"channels": "bgr", "official": True, "converter_version": CONVERTER_VERSION},
            **({"official": official} if official else {})}


def import_official(sources: list[str | os.PathLike], out_dir: str | os.PathLike,
                    source_info: dict[str, Any] | None = None) -> dict[str, Path]:
    """Convert the official files found among `sources` (files, or folders holding them under the
    release names) into `out_dir`: landmark_generator.pt, renderer.pt and vgg19.pt (when the
    renderer carries its VGG-19). Returns {name: path written}."""
    found: dict[str, tuple[Path, dict[str, torch.Tensor] | None]] = {}
    for s in map(Path, sources):
        if s.is_dir():
            found.update({arch: (s / name, None) for arch, name in FILES.items() if (s / name).is_file()})
        else:
            state, sha = read_state_dict(s)
            found[classify(state, s)] = (s, (state, sha))
    if not found:
        raise OfficialWeightsError(f"no official IP_LAP checkpoint among {[str(s) for s in sources]} "
                                   f"(expected {FILES[GENERATOR]} and/or {FILES[RENDERER]})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for arch, (path, loaded) in found.items():
        state, sha = loaded or read_state_dict(path)
        source = {"file": path.name, "sha256": sha, "family": "ip_lap", "converter_version": CONVERTER_VERSION}
        if arch == GENERATOR:
            exports = {"landmark_generator": export_dict(arch, convert_landmark_generator(state), source, source_info)}
        else:
            model_state, vgg = convert_renderer(state)
            exports = {"renderer": export_dict(arch, model_state, source, source_info)}
            if vgg:
                exports["vgg19"] = vgg
        for name, obj in exports.items():
            dest = out / f"{name}.pt"
            tmp = dest.with_suffix(".pt.tmp")
            torch.save(obj, tmp)
            os.replace(tmp, dest)
            written[name] = dest
    return written


def classify(state: dict[str, torch.Tensor], path: Path) -> str:
    """Which official model a state dict is, from its keys (file names may have been changed)."""
    if any(k.startswith("fusion_transformer.") for k in state):
        return GENERATOR
    if any(k.startswith("flow_module.") for k in state):
        return RENDERER
    raise OfficialWeightsError(f"{path} is neither an official IP_LAP landmark generator nor renderer checkpoint")


def convert(files: dict[str, Path], out_dir: Path, source_info: dict[str, Any]) -> list[Path]:
    """`graphrun weights import ip_lap SOURCE`'s converter (nodes/weights.py interface): the release's
    files by name -> landmark_generator.pt, renderer.pt and vgg19.pt in `out_dir`."""
    written = import_official([files[name] for name in sorted(files)], out_dir, source_info)
    return [written[k] for k in ("landmark_generator", "renderer", "vgg19") if k in written]


def main(argv: list[str] | None = None) -> int:
    """`python -m nodes.ip_lap.official SOURCE... [--out DIR]`: the same conversion as
    `graphrun weights import ip_lap`, usable before that command is installed."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("sources", nargs="+", help="the official .pth files, or a folder holding them")
    ap.add_argument("--out", default="weights/ip_lap", help="output folder")
    args = ap.parse_args(argv)
    try:
        written = import_official(args.sources, args.out)
    except OfficialWeightsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, path in written.items():
        print(f"{name}: {path}")
    if "landmark_generator" in written:
        print(f"--set lips.checkpoint={Path(written['landmark_generator']).resolve()}")
    if "renderer" in written:
        print(f"--set render.checkpoint={Path(written['renderer']).resolve()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
