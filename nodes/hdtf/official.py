"""HDTF's released animation-to-video generator (MRzzm/HDTF code_animation2video,
`checkpoint_animation2video.pth`) as a talkgraph export: `graphrun weights import hdtf`.

The file stores `ckpt['state_dict']['net_g']`, keys prefixed `module.` (DataParallel) and with
the names the release's inference.py renames (`dense_motion` -> `foreground_matting`,
`attention_mask` -> `matting_mask`). The network is the `paper` preset of FlowVideoGenerator;
the export switches on its `official` mode (BGR, absolute grids, Gaussian+nearest
downsampling, align_corners=False warps), which reproduces the release's forward.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

ARCH = "flow_video_generator"
KERNELS = {"foreground_matting.down_sample_image.weight": (3, 0.25), "foreground_matting.down_sample_flow.weight": (2, 0.25)}
RULES = [
    (r"encoder\.in_conv\.", "encoder.0."),
    (r"encoder\.down_blocks\.(\d+)\.", lambda m: f"encoder.{int(m[1]) + 1}."),
    (r"foreground_matting\.hourglass\.encoder\.down_blocks\.", "matting.hourglass.down."),
    (r"foreground_matting\.hourglass\.decoder\.up_blocks\.", "matting.hourglass.up."),
    (r"foreground_matting\.(foreground_mask|matting_mask)\.", r"matting.\1."),
    (r"foreground_matting\.matting\.", "matting.matting_image."),
    (r"bottleneck\.bottleneck\.", "bottleneck."),
    (r"decoder\.up_blocks\.", "decoder."),
    (r"decoder\.out_conv\.", lambda m: "decoder.2."),
]


def official_config() -> dict[str, Any]:
    from nodes.model_registry import model_config

    return {**model_config(ARCH, "paper").model_dump(), "official": True}


def release_name(key: str) -> str:
    """A key of the released file -> the name the release's VideoGenerator uses."""
    if not key.startswith("module."):
        raise KeyError(f"{key!r} has no 'module.' prefix (the released checkpoint was saved from DataParallel)")
    return key[len("module."):].replace("dense_motion", "foreground_matting").replace("attention_mask", "matting_mask")


def convert_state(state: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    import torch

    from nodes.model_registry import create_model
    from nodes.weights import check_gaussian_kernel, map_state, rename_by_rules

    state = {release_name(k): v for k, v in state.items()}
    for key, (channels, scale) in KERNELS.items():
        check_gaussian_kernel(state, key, channels, scale, f"net_g.{key}")
    state = {k: v for k, v in state.items() if k not in KERNELS}
    with torch.device("meta"):
        target = create_model(ARCH, cfg).state_dict()
    if cfg["encoder_down"] != 2:  # decoder.2 above is the output conv after two up blocks
        raise ValueError("the release has two encoder down blocks")
    return map_state(state, lambda k: rename_by_rules(RULES, k, f"net_g.{k}"), target, what="checkpoint_animation2video.pth [net_g]")


def convert(files: dict[str, Path], out_dir: Path, source_info: dict[str, Any]) -> list[Path]:
    from nodes.weights import WeightsError, load_official, write_export

    path = files["checkpoint_animation2video.pth"]
    ckpt = load_official(path, "checkpoint_animation2video.pth")
    try:
        state = ckpt["state_dict"]["net_g"]
    except (KeyError, TypeError):
        raise WeightsError(f"{path} is not HDTF's checkpoint_animation2video.pth: no ckpt['state_dict']['net_g'] "
                           f"(top-level keys: {', '.join(map(str, list(ckpt)[:8])) or 'none'})") from None
    cfg = official_config()
    return [write_export(out_dir / "flow_video.pt", ARCH, {"arch": ARCH, **cfg}, convert_state(state, cfg), source_info,
                         "the animation-to-video generator (net_g)")]
