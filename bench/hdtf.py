"""HDTF benchmark (issue 4): prints figures and ratios against baselines measured in the same run.

(a) FlowVideoGenerator frames per second, tiny and paper presets at 256 and 512, batched
    (`--chunk` frames per forward pass), against the geometric warp-only path (WarpImage of the
    reference by F_app, the same frames) as the baseline; on CUDA with bf16 autocast.
(b) `graphrun workflows/hdtf.yaml` cold (empty cache), then a re-run after changing only
    SaveVideo's crf, then after changing only FlowVideoGenerator's chunk (and, for contrast,
    its matting switch, which changes the frames): seconds and ratios to the cold run.
    Target: a re-run after a change to the last node costs under 5 % of the cold run.

    python bench/hdtf.py [--device cuda] [--frames 16] [--skip-workflow] [--skip-fps]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def generator_fps(preset: str, size: int, frames: int, chunk: int, device: str) -> float:
    import torch

    from nodes.model_registry import create_model

    g = create_model("flow_video_generator", preset).to(device).eval()
    ref = torch.rand(1, 3, size, size, device=device)
    flow = torch.randn(chunk, 2, size, size, device=device) * 0.02
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else torch.autocast("cpu", enabled=False)
    with torch.no_grad(), autocast:
        enc = g.encode_reference(ref)
        g(ref, flow, encoded=enc)  # warm-up
        _sync(device)
        t0 = time.perf_counter()
        done = 0
        while done < frames:
            g(ref, flow, encoded=enc)
            done += chunk
        _sync(device)
    return done / (time.perf_counter() - t0)


def warp_fps(size: int, frames: int, chunk: int, device: str) -> float:
    import numpy as np

    from nodes.warp import warp_frames

    ref = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    flow = np.random.default_rng(1).normal(0, 2, (frames, size, size, 2)).astype(np.float32)
    warp_frames(ref, flow[:chunk], chunk=chunk, device=device)
    t0 = time.perf_counter()
    warp_frames(ref, flow, chunk=chunk, device=device)
    return frames / (time.perf_counter() - t0)


def bench_fps(args) -> None:
    print(f"== (a) FlowVideoGenerator frames/s on {args.device} (chunk {args.chunk}{', bf16' if args.device.startswith('cuda') else ', fp32'})")
    print(f"{'preset':<8}{'size':>6}{'gen fps':>10}{'warp fps':>10}{'gen/warp time':>15}")
    for size in (256, 512):
        base = warp_fps(size, args.frames, args.chunk, args.device)
        for preset in ("tiny", "paper"):
            n = args.frames if preset == "tiny" or size == 256 else max(args.chunk, args.frames // 2)
            fps = generator_fps(preset, size, n, args.chunk, args.device)
            print(f"{preset:<8}{size:>6}{fps:>10.2f}{base:>10.1f}{base / fps:>14.1f}x", flush=True)


def _graphrun(workflow: Path, cache: Path, *sets: str) -> float:
    cmd = [sys.executable, "-m", "graphcore.cli", str(workflow), "--cache", str(cache)]
    for s in sets:
        cmd += ["--set", s]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"graphrun failed ({' '.join(sets) or 'cold'}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return seconds


def bench_workflow(args) -> None:
    workflow = ROOT / "workflows" / "hdtf.yaml"
    print(f"\n== (b) graphrun {workflow.relative_to(ROOT)}: cold run vs re-runs after one parameter change")
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        out = Path(tmp) / "out.mp4"
        base = [f"save.path={out}"]
        cold = _graphrun(workflow, cache, *base)
        runs = {
            "fully cached": _graphrun(workflow, cache, *base),
            "SaveVideo.crf changed": _graphrun(workflow, cache, *base, "save.crf=20"),
            "FlowVideoGenerator.chunk changed": _graphrun(workflow, cache, *base, "save.crf=20", "video.chunk=4"),
            "FlowVideoGenerator.matting changed": _graphrun(workflow, cache, *base, "save.crf=20", "video.chunk=4", "video.matting=false"),
        }
    print(f"{'run':<38}{'seconds':>9}{'vs cold':>9}")
    print(f"{'cold (empty cache)':<38}{cold:>9.2f}{1:>9.3f}")
    for name, s in runs.items():
        print(f"{name:<38}{s:>9.2f}{s / cold:>9.3f}")
    ratio = runs["SaveVideo.crf changed"] / cold
    print(f"target: re-run after a change to the last node < 5% of the cold run -> {ratio:.1%} "
          f"({'met' if ratio < 0.05 else 'NOT met'})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--frames", type=int, default=16, help="frames timed per configuration")
    ap.add_argument("--chunk", type=int, default=4, help="frames per forward pass")
    ap.add_argument("--skip-fps", action="store_true")
    ap.add_argument("--skip-workflow", action="store_true")
    args = ap.parse_args()
    if not args.skip_fps:
        bench_fps(args)
    if not args.skip_workflow:
        bench_workflow(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
