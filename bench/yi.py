"""Yi et al. benchmark (issue 7): frames per second at 256 px, with ratios against baselines
measured in the same run.

(a) Render3DMM: the SH-lit, z-buffered render of the 3DMM (detailed texture and low-frequency
    albedo) over a background, against DenseFlowBuilder's F_app on the same coefficients (the
    same projection and rasteriser, a different per-pixel payload) as the baseline.
(b) MemoryGAN, tiny and paper presets (random weights: speed does not depend on them): the full
    node path (memory retrieval with the key encoder, temporal smoothing, G over 3-frame windows)
    against G alone on the same windows as the baseline (the memory network's overhead).

    python bench/yi.py [--device cuda] [--frames 16] [--chunk 4] [--threads N]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _clip(frames: int, size: int):
    """A face model, a target 'video' (a drawn background) and coefficients that talk and turn."""
    import numpy as np

    from nodes.face.model import load_face_model
    from nodes.types import MorphCoeffs

    model = load_face_model()
    t = np.arange(frames)
    expression = np.zeros((frames, 33), np.float32)
    expression[:, 0] = 0.5 + 0.5 * np.sin(t / 3)
    pose = np.zeros((frames, 6), np.float32)
    pose[:, 1] = 0.2 * np.sin(t / 10)
    pose[:, 3:5] = size / 2
    pose[:, 5] = np.log(0.55 * size / 150)
    coeffs = MorphCoeffs(np.zeros(60, np.float32), expression, pose, np.zeros(frames, np.float32), (size, size))
    rng = np.random.default_rng(0)
    target = (rng.random((frames, size, size, 3)) * 60 + 120).astype(np.uint8)
    return model, coeffs, target


def _timed(fn, frames: int, device: str) -> float:
    fn()  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return frames / (time.perf_counter() - t0)


def render_fps(frames: int, size: int, device: str, chunk: int) -> dict[str, float]:
    import numpy as np

    from nodes.face.flow import Coefficients, FlowBuilder, FlowSettings
    from nodes.yi import render3dmm as r3

    model, coeffs, target = _clip(frames, size)
    app = r3.fit_appearance(model, target[:4], type(coeffs)(coeffs.shape, coeffs.expression[:4], coeffs.pose[:4],
                                                             coeffs.error[:4], coeffs.image_size), device=device)
    bg = lambda sl: target[sl].astype(np.float32) / 255.0  # noqa: E731
    out = {}
    for albedo in ("detailed", "low"):
        renderer = r3.FaceRenderer(model, app, albedo, device)

        def run():
            for _ in r3.render_sequence(renderer, coeffs.shape, coeffs.expression, coeffs.pose, size, size, bg, chunk=chunk):
                pass

        out[f"render_{albedo}"] = _timed(run, frames, device)
    builder = FlowBuilder(model, FlowSettings(chunk=chunk), device=device)
    ref = Coefficients(coeffs.shape, coeffs.expression[:1], coeffs.pose[:1])
    drv = Coefficients(coeffs.shape, coeffs.expression, coeffs.pose)
    out["dense_flow_baseline"] = _timed(lambda: builder.build(ref, drv, size, size), frames, device)
    return out


def gan_fps(preset: str, frames: int, size: int, device: str, chunk: int) -> dict[str, float]:
    import numpy as np
    import torch

    from nodes.model_registry import create_model
    from nodes.yi.inference import refine

    torch.manual_seed(0)
    gan = create_model("yi_memory_gan", preset).to(device).eval()
    with torch.no_grad():  # a full memory of random items, as after training
        m = gan.memory
        m.keys.copy_(torch.nn.functional.normalize(torch.randn_like(m.keys), dim=1))
        m.values.copy_(torch.nn.functional.normalize(torch.randn_like(m.values), dim=1))
        m.filled.fill_(True)
    rendered = (np.random.default_rng(0).random((frames, size, size, 3)) * 255).astype(np.uint8)
    full = _timed(lambda: refine(gan, rendered, chunk=chunk, device=device), frames, device)
    window = torch.rand(chunk, 9, size, size, device=device) * 2 - 1
    ident = gan.mean_identity[None].expand(chunk, -1)

    def g_only():
        with torch.no_grad():
            for _ in range(0, frames, chunk):
                gan(window, ident)

    return {"memory_gan": full, "generator_only_baseline": _timed(g_only, frames, device)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--paper-frames", type=int, default=4, help="frames for the paper preset (slow on a CPU)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--chunk", type=int, default=4)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"device {args.device}, {torch.get_num_threads()} threads, {args.size}x{args.size}")
    r = render_fps(args.frames, args.size, args.device, max(args.chunk, 8))
    base = r["dense_flow_baseline"]
    for k, v in r.items():
        print(f"Render3DMM  {k:24s} {v:8.2f} fps   x{v / base:.2f} of DenseFlowBuilder")
    for preset, n in (("tiny", args.frames), ("paper", args.paper_frames)):
        g = gan_fps(preset, n, args.size, args.device, min(args.chunk, n))
        print(f"MemoryGAN   {preset:5s} full {g['memory_gan']:8.2f} fps   G only {g['generator_only_baseline']:8.2f} fps   "
              f"memory overhead x{g['generator_only_baseline'] / g['memory_gan']:.2f}")


if __name__ == "__main__":
    main()
