"""Speed and memory of the geometric nodes at 512x512 (issue 3's benchmark).

    python bench/nodes.py [--frames 250] [--baseline-frames 12] [--skip-memory]

Measures, in one run on this machine: frames per second of DetectLandmarks (MediaPipe),
Fit3DMM, DenseFlowBuilder and WarpImage, and of the whole geometric path (Fit3DMM ->
DenseFlowBuilder -> WarpImage per frame; also with DetectLandmarks in front), against the
official HDTF construction of F_app (code_constructing_Fapp: scipy griddata(method='nearest')
of the projected vertices' displacements over the image, rows below the face set to the mean
displacement, one frame at a time) measured in the same run. Then the peak resident memory of
the streaming geometric path for 10 s and 60 s of frames (25 fps), each in a fresh process.

The inputs are real: the astronaut portrait cropped to 512x512 as HDTF crops its videos
(CropAlign's window), its MediaPipe landmarks and 3DMM fit as the reference, and a synthetic
driving sequence (smooth expressions and head motion) rendered by warping the crop, on which
DetectLandmarks and Fit3DMM then run.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# run as a script, this file's folder comes first on sys.path and "nodes" would be this file
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SIZE = 512
FPS = 25


def driving_coefficients(model, reference, n: int, seed: int = 0):
    """Smooth talking-like expressions and head motion around the reference's pose."""
    from nodes.face.flow import Coefficients

    rng = np.random.default_rng(seed)
    t = np.arange(n) / FPS
    names = model.expression_names
    expr = np.repeat(reference.expression[:1], n, 0).astype(np.float32)
    for name, amp, freq in (("jaw_open", 0.5, 3.1), ("lip_pucker", 0.4, 1.3), ("smile_left", 0.3, 0.4),
                            ("smile_right", 0.3, 0.45), ("brow_inner_up", 0.6, 0.7), ("lower_down_left", 0.3, 2.3)):
        k = names.index(name)
        expr[:, k] = np.clip(expr[:, k] + amp * np.clip(np.sin(2 * np.pi * freq * t + rng.uniform(0, 6)), 0, None), 0, 1.5)
    pose = np.repeat(reference.pose[:1], n, 0).astype(np.float64)
    pose[:, 0] += 0.08 * np.sin(2 * np.pi * 0.3 * t)
    pose[:, 1] += 0.12 * np.sin(2 * np.pi * 0.2 * t + 1)
    pose[:, 2] += 0.05 * np.sin(2 * np.pi * 0.25 * t + 2)
    pose[:, 3] += 6 * np.sin(2 * np.pi * 0.15 * t)
    pose[:, 4] += 4 * np.sin(2 * np.pi * 0.1 * t + 1)
    return Coefficients(reference.shape, expr, pose.astype(np.float32))


def reference_setup():
    """The astronaut portrait cropped as HDTF does (CropAlign's window, resized to 512x512),
    its landmarks (DetectLandmarks' code) and 3DMM fit."""
    from skimage import data

    from nodes.face.crop import crop_frames, crop_window
    from nodes.face.fitting import fit_coefficients
    from nodes.face.flow import Coefficients
    from nodes.face.landmarks import detect_landmarks
    from nodes.face.model import load_face_model

    portrait = data.astronaut()
    model = load_face_model()
    lms, found = detect_landmarks(portrait[None], tracking=False)
    assert found.all(), "no face in the astronaut portrait"
    image = crop_frames(portrait[None], crop_window(lms, portrait.shape[:2], size=SIZE))[0]
    lms, found = detect_landmarks(image[None], tracking=False)
    assert found.all() and image.shape == (SIZE, SIZE, 3)
    fit = fit_coefficients(model, lms)
    return image, model, Coefficients(fit.shape, fit.expression, fit.pose)


def griddata_fapp(ref_pts: np.ndarray, drv_pts: np.ndarray, size: int) -> np.ndarray:
    """The official F_app construction (HDTF code_constructing_Fapp), one frame, as a pixel
    backward flow: nearest-vertex displacement everywhere, the mean below the face."""
    from scipy.interpolate import griddata

    disp = ref_pts - drv_pts
    grid_y, grid_x = np.mgrid[0:size, 0:size]
    fx = griddata(drv_pts[:, [1, 0]], disp[:, 0], (grid_y, grid_x), method="nearest")
    fy = griddata(drv_pts[:, [1, 0]], disp[:, 1], (grid_y, grid_x), method="nearest")
    below = int(np.clip(np.max(drv_pts[:, 1]), 0, size))
    mean = disp.mean(0)
    fx[below:], fy[below:] = mean[0], mean[1]
    return np.stack([fx, fy], -1).astype(np.float32)


class Clock:
    """Wall-clock and process CPU seconds of a call (CPU time is what the process itself used:
    on a shared machine it shows the cost without the waiting for a core)."""

    def __init__(self):
        self.wall, self.cpu = {}, {}

    def run(self, name, fn, *args, **kw):
        w, c = time.perf_counter(), time.process_time()
        out = fn(*args, **kw)
        self.wall[name] = time.perf_counter() - w
        self.cpu[name] = time.process_time() - c
        return out


def speed(args) -> dict:
    import torch

    from nodes.face.fitting import FitSettings, fit_coefficients
    from nodes.face.flow import Coefficients, FlowBuilder
    from nodes.face.landmarks import detect_landmarks
    from nodes.warp import warp_frames

    image, model, ref = reference_setup()
    n = args.frames
    drv = driving_coefficients(model, ref, n)
    builder = FlowBuilder(model)
    builder.build(ref, Coefficients(drv.shape, drv.expression[:2], drv.pose[:2]), SIZE, SIZE)  # warm-up
    clock = Clock()
    flow, _ = clock.run("DenseFlowBuilder", builder.build, ref, drv, SIZE, SIZE)
    frames = clock.run("WarpImage", warp_frames, image, flow)
    n_detect = min(n, args.detect_frames)
    lms, found = clock.run("DetectLandmarks", detect_landmarks, frames[:n_detect], tracking=True)
    # Fit3DMM on landmark tracks of the full length: the detected ones, repeated
    tracks = np.concatenate([lms] * int(np.ceil(n / n_detect)))[:n]
    fit = clock.run("Fit3DMM", fit_coefficients, model, tracks, FitSettings())

    def path():  # the whole geometric path on fresh objects
        f = fit_coefficients(model, tracks, FitSettings())
        fl = FlowBuilder(model).build(ref, Coefficients(ref.shape, f.expression, f.pose), SIZE, SIZE)[0]
        return warp_frames(image, fl)

    clock.run("geometric path", path)
    # the official F_app construction on the same driving meshes
    nb = min(n, args.baseline_frames)
    ref_pts = builder.project(ref.shape, ref.expression[:1], ref.pose[:1])[0][0].numpy().astype(np.float64)
    drv_pts = builder.project(drv.shape, drv.expression[:nb], drv.pose[:nb])[0].numpy().astype(np.float64)
    clock.run("griddata F_app (official)", lambda: [griddata_fapp(ref_pts, drv_pts[i], SIZE) for i in range(nb)])
    count = {"DetectLandmarks": n_detect, "griddata F_app (official)": nb}
    rows = {}
    for name in clock.wall:
        k = count.get(name, n)
        rows[name] = {"wall_fps": k / clock.wall[name], "cpu_fps": k / max(clock.cpu[name], 1e-9)}
    for kind in ("wall_fps", "cpu_fps"):
        rows.setdefault("geometric path incl. DetectLandmarks", {})[kind] = 1.0 / (
            1.0 / rows["geometric path"][kind] + 1.0 / rows["DetectLandmarks"][kind])
    ratios = {}
    for kind in ("wall_fps", "cpu_fps"):
        grid = rows["griddata F_app (official)"][kind]
        with_grid = 1.0 / (1.0 / rows["Fit3DMM"][kind] + 1.0 / grid + 1.0 / rows["WarpImage"][kind])
        ratios[kind] = {"DenseFlowBuilder / griddata": rows["DenseFlowBuilder"][kind] / grid,
                        "geometric path / path with griddata F_app": rows["geometric path"][kind] / with_grid}
    return {
        "frames": n, "detect_frames": n_detect, "baseline_frames": nb, "torch_threads": torch.get_num_threads(),
        "cpus": os.cpu_count(), "load_avg_at_end": [round(x, 2) for x in os.getloadavg()],
        "rows": rows, "ratios": ratios, "fit_error_px": float(fit.error.mean()),
    }


class PeakRSS:
    """Samples this process's resident memory every 5 ms in a thread and keeps the maximum
    (ru_maxrss is no use here: after fork + exec it still holds the parent's peak)."""

    def __init__(self):
        import threading

        import psutil

        self._proc = psutil.Process()
        self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def stream(seconds: float) -> dict:
    """The geometric path streamed chunk by chunk (what a long clip needs), in this process:
    Fit3DMM over all frames (chunked), then DenseFlowBuilder chunks warped and handed on."""
    import psutil

    from nodes.face.camera import project
    from nodes.face.fitting import FitSettings, fit_coefficients
    from nodes.face.flow import Coefficients, FlowBuilder
    from nodes.warp import warp_frames

    image, model, ref = reference_setup()
    n = int(round(seconds * FPS))
    drv = driving_coefficients(model, ref, n)
    # landmark tracks for the fit: the driving meshes projected (MediaPipe's 478 layout)
    pts, z = project(model.vertices(drv.shape, drv.expression), drv.pose)
    tracks = np.zeros((n, 478, 3), np.float32)
    tracks[:, :468, :2], tracks[:, :468, 2] = pts, z
    del pts, z
    # warm-up on two frames so that lazily initialised libraries count as set-up, not as work
    FlowBuilder(model).build(ref, Coefficients(drv.shape, drv.expression[:2], drv.pose[:2]), SIZE, SIZE)
    base = psutil.Process().memory_info().rss
    t0 = time.perf_counter()
    checksum = 0.0
    with PeakRSS() as mem:
        fit = fit_coefficients(model, tracks, FitSettings(chunk=256))
        coeffs = Coefficients(ref.shape, fit.expression, fit.pose)
        for _sl, flow, _ in FlowBuilder(model).chunks(ref, coeffs, SIZE, SIZE):
            frames = warp_frames(image, flow)
            checksum += float(frames[:, ::64, ::64].mean())  # a consumer (e.g. the encoder) reads them
    elapsed = time.perf_counter() - t0
    mb = 1 << 20
    return {"seconds": seconds, "frames": n, "fps": round(n / elapsed, 2), "rss_before_mb": round(base / mb, 1),
            "peak_rss_mb": round(mem.peak / mb, 1), "growth_mb": round((mem.peak - base) / mb, 1),
            "checksum": round(checksum, 3)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=250, help="driving frames for the speed figures (10 s)")
    ap.add_argument("--detect-frames", type=int, default=100, help="frames DetectLandmarks runs on")
    ap.add_argument("--baseline-frames", type=int, default=12, help="frames of the griddata baseline")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--stream", type=float, help=argparse.SUPPRESS)  # child process: one memory figure
    args = ap.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.stream is not None:
        print(json.dumps(stream(args.stream)))
        return 0
    res = speed(args)
    print(f"geometric nodes at {SIZE}x{SIZE}, {res['cpus']} CPUs, torch threads {res['torch_threads']}, "
          f"{res['frames']} frames (DetectLandmarks {res['detect_frames']}, griddata baseline {res['baseline_frames']})")
    print(f"  {'':50s} {'wall fps':>9s} {'CPU fps':>9s}")
    for name, r in res["rows"].items():
        print(f"  {name:50s} {r['wall_fps']:9.2f} {r['cpu_fps']:9.2f}")
    for name in ("DenseFlowBuilder / griddata", "geometric path / path with griddata F_app"):
        w, c = res["ratios"]["wall_fps"][name], res["ratios"]["cpu_fps"][name]
        print(f"  ratio {name:44s} {w:8.1f}x {c:8.1f}x")
    print(f"  Fit3DMM mean reprojection error on the detected frames: {res['fit_error_px']:.3f} px")
    print(f"  load average at the end: {res['load_avg_at_end']} — the machine is shared: wall fps include waiting "
          "for a core; CPU fps = frames / CPU seconds this process used")
    if not args.skip_memory:
        print("streaming geometric path (fresh process each): resident memory while it runs")
        for seconds in (10.0, 60.0):
            out = subprocess.run([sys.executable, __file__, "--stream", str(seconds)], capture_output=True, text=True,
                                 env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
            if out.returncode != 0:
                print(out.stderr[-2000:])
                return 1
            m = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"  {seconds:4.0f} s of frames ({m['frames']:5d}): peak {m['peak_rss_mb']:7.1f} MB, "
                  f"{m['growth_mb']:+6.1f} MB over the {m['rss_before_mb']:.1f} MB before it started; {m['fps']:.1f} fps")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
