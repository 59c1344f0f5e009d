"""Audio2Head benchmark (issue 6): KeypointRenderer frames per second, tiny and paper presets at
256 x 256, against the geometric warp-only baseline measured in the same run (WarpImage of the
reference by a dense flow: the floor of any warping renderer), plus the time per frame of the
motion field generator and the head motion predictor (tiny and paper).

    python bench/audio2head.py [--device cpu|cuda] [--frames 16] [--chunk 8] [--threads N]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.hdtf import _sync, warp_fps  # noqa: E402 (the same warp-only baseline as the HDTF benchmark)


def _autocast(device: str):
    import torch

    return torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else torch.autocast("cpu", enabled=False)


def renderer_fps(preset: str, size: int, frames: int, chunk: int, device: str) -> float:
    """Frames/s of KeypointRenderer's work per frame: dense motion + occlusion-aware generator
    (the reference's keypoints are detected once per clip, as in the node, and not timed)."""
    import torch

    from nodes.model_registry import create_model

    torch.manual_seed(0)
    pair = create_model("keypoint_autoencoder", preset).to(device).eval()
    det, ren = pair.detector, pair.renderer
    ref = torch.rand(1, 3, size, size, device=device)
    with torch.no_grad(), _autocast(device):
        kp_s = det(ref)
        kp_s = {k: kp_s[k].expand(chunk, *kp_s[k].shape[1:]) for k in ("value", "jacobian")}
        kp_d = {"value": kp_s["value"] + 0.02 * torch.randn_like(kp_s["value"]), "jacobian": kp_s["jacobian"].clone()}
        refs = ref.expand(chunk, -1, -1, -1)
        ren(refs, kp_s, kp_d)  # warm-up
        _sync(device)
        t0, done = time.perf_counter(), 0
        while done < frames:
            ren(refs, kp_s, kp_d)
            done += chunk
        _sync(device)
    return done / (time.perf_counter() - t0)


def motion_field_ms_per_frame(preset: str, device: str) -> float:
    import torch

    from nodes.model_registry import create_model

    mf = create_model("motion_field", preset).to(device).eval()
    t, s = mf.cfg.window, mf.cfg.size
    args = (torch.rand(1, 3, 256, 256, device=device), torch.randn(1, t, 4, 41, device=device), torch.rand(1, t, s, s, device=device))
    with torch.no_grad(), _autocast(device):
        mf(*args)
        _sync(device)
        t0 = time.perf_counter()
        mf(*args)
        _sync(device)
    # windows overlap by half: each frame costs half a window's share in a long clip
    return (time.perf_counter() - t0) / (t / 2) * 1000


def head_motion_ms_per_frame(preset: str, device: str, frames: int = 100) -> float:
    import torch

    from nodes.model_registry import create_model

    hm = create_model("head_motion", preset).to(device).eval()
    args = (torch.rand(1, 3, 256, 256, device=device), torch.randn(1, frames, 4, 41, device=device))
    with torch.no_grad(), _autocast(device):
        hm(args[0], args[1][:, :4])
        _sync(device)
        t0 = time.perf_counter()
        hm(*args)
        _sync(device)
    return (time.perf_counter() - t0) / frames * 1000


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--frames", type=int, default=16, help="frames timed per renderer measurement")
    ap.add_argument("--chunk", type=int, default=8, help="frames per forward pass")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    size = 256
    print(f"== KeypointRenderer frames/s at {size}x{size} on {args.device} (chunk {args.chunk}, "
          f"{'bf16' if args.device.startswith('cuda') else 'fp32'}, {torch.get_num_threads()} threads)")
    print(f"{'preset':<8}{'renderer fps':>14}{'warp fps':>10}{'renderer/warp time':>20}")
    base = warp_fps(size, max(args.frames, args.chunk), args.chunk, args.device)
    for preset in ("tiny", "paper"):
        fps = renderer_fps(preset, size, args.frames, args.chunk, args.device)
        print(f"{preset:<8}{fps:>14.2f}{base:>10.1f}{base / fps:>19.1f}x", flush=True)
    print("== per-frame cost of the audio-driven stages (ms/frame)")
    print(f"{'preset':<8}{'motion field':>14}{'head motion':>13}")
    for preset in ("tiny", "paper"):
        print(f"{preset:<8}{motion_field_ms_per_frame(preset, args.device):>14.1f}{head_motion_ms_per_frame(preset, args.device):>13.1f}",
              flush=True)


if __name__ == "__main__":
    main()
