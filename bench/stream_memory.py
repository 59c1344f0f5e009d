"""Flat memory in clip length: the streamed chain ToyCoeffs -> DenseFlowBuilder -> WarpImage ->
SaveVideo (tests/stream_nodes.py gives the coefficients and the portrait) against the same
workflow run whole in memory (`run_graph(stream=False)`: the same keys and bytes), each run
in a fresh process, across clip lengths.

Per run it measures the peak resident memory above what the process held before the run
started (VmHWM after resetting it, Linux) and the wall time per frame. Prints, per length,
both peaks, the whole-array bytes of the chain's values (flow + regions + frames), and the
ratios the issue asks for: streamed peak at N / at the shortest length (target <= 1.3x),
streamed time per frame at N / at the shortest (target <= 1.2x), streamed / whole peak.

    PYTHONPATH=$PWD python bench/stream_memory.py [--size 128] [--frames 250,1000,4000]
    PYTHONPATH=$PWD python bench/stream_memory.py --workflows hdtf.yaml,audio2head.yaml,memorygan_image.yaml \
        --seconds 30,180,600 [--whole-up-to 60]

`--workflows` runs those workflows (at their default sizes) on the bundled speech repeated to
each length instead of the toy chain, streamed; also whole (stream=False) for lengths up to
`--whole-up-to` seconds (whole runs of minutes of video need more memory than the machine has).
It prints the peak RSS of the process (absolute: the issue's "under 3 GB") and above the
pre-run RSS, per-frame time, the cache's peak size on disk, and each length's ratios to the
shortest. `--drop-streamed` runs with `keep_streamed=False` (streamed intermediates deleted
after use, unread streamed outputs never written). A child prints a progress line (node,
frames done, RSS, peak so far) to stderr every `--progress-every` seconds, so a run stopped
early still tells how far it got and what it peaked at.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # before bench/ itself: bench/nodes.py would shadow the nodes package
PLUGIN = ROOT / "tests" / "stream_nodes.py"
WORKFLOW = """
version: 1
nodes:
  portrait: {{type: ToyPortrait, params: {{size: {size}}}}}
  reference: {{type: ToyCoeffs, params: {{n: 1, size: {size}}}}}
  driving: {{type: ToyCoeffs, params: {{n: {frames}, size: {size}}}}}
  fapp: {{type: DenseFlowBuilder, inputs: {{reference: reference.coeffs, driving: driving.coeffs}}}}
  warp: {{type: WarpImage, inputs: {{image: portrait.image, flow: fapp.flow}}}}
  save: {{type: SaveVideo, params: {{path: out.mp4, preset: ultrafast}}, inputs: {{frames: warp.frames}}}}
"""


def whole_bytes(frames: int, size: int) -> int:
    """What the chain's values take whole: flow (float32 x2), regions (float32), frames (uint8 x3)."""
    return frames * size * size * (8 + 4 + 3)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def speech_of(seconds: float, path: Path) -> None:
    """The bundled speech sample repeated to `seconds` (for hdtf.yaml on longer clips)."""
    import soundfile as sf

    x, rate = sf.read(ROOT / "assets" / "samples" / "speech.wav", dtype="float32")
    n = int(seconds * rate)
    sf.write(path, np.resize(x, n), rate)


def folder_bytes(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_blocks * 512
            except OSError:  # deleted meanwhile
                pass
    return total


class Watcher:
    """Samples the cache's size on disk (its peak) and prints progress lines to stderr."""

    def __init__(self, cache: Path, every: float) -> None:
        self.cache, self.every, self.peak_disk = cache, every, 0
        self.where = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._start = time.perf_counter()

    def __call__(self, event) -> None:  # a run listener
        if event.kind == "progress":
            self.where = f"{event.node_id} {event.data.get('i')}/{event.data.get('n')}"
        elif event.kind == "started":
            self.where = f"{event.node_id} started"

    def _loop(self) -> None:
        last = time.perf_counter()
        while not self._stop.wait(5.0):
            self.peak_disk = max(self.peak_disk, folder_bytes(self.cache))
            if self.every and time.perf_counter() - last >= self.every:
                last = time.perf_counter()
                print(f"  [{time.perf_counter() - self._start:6.0f} s] {self.where}: RSS {_status_kib('VmRSS') / 1024:.0f} MiB, "
                      f"peak so far {_status_kib('VmHWM') / 1024:.0f} MiB, cache {self.peak_disk / 2**30:.2f} GiB peak; "
                      f"load average {_load()}", file=sys.stderr, flush=True)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_disk = max(self.peak_disk, folder_bytes(self.cache))


def child(frames: int, size: int, stream: bool, chunk_bytes: int, folder: str, workflow: str = "",
          seconds: float = 0.0, keep_streamed: bool = True, progress_every: float = 0.0) -> dict:
    """One run in this (fresh) process; returns the figures. `workflow`: run workflows/<workflow>
    on `seconds` of speech instead of the toy chain."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import graphcore.arrayio as arrayio
    from graphcore.cache import CacheStore
    from graphcore.loader import load_workflow
    from graphcore.registry import build_registry
    from graphcore.scheduler import run_graph
    from graphcore.validation import check_workflow_file, compile_workflow

    if chunk_bytes:
        arrayio.TARGET_CHUNK_BYTES = chunk_bytes
    if workflow:
        import yaml

        registry = build_registry(env=False)
        speech = Path(folder) / "speech.wav"
        speech_of(seconds, speech)
        frames = int(round(seconds * 25))
        doc = yaml.safe_load((ROOT / "workflows" / workflow).read_text())
        sets = [f"speech.path={speech}"] + [  # every file a workflow writes goes to the temporary folder
            f"{n}.path={Path(folder) / (n + Path(str(spec['params']['path'])).suffix)}"
            for n, spec in doc["nodes"].items() if "path" in (spec.get("params") or {}) and n not in ("speech", "portrait")]
        wf, problems = check_workflow_file(ROOT / "workflows" / workflow, registry, sets)
        if problems or wf is None:
            raise SystemExit(f"{workflow}: {problems}")
        graph = compile_workflow(wf, registry, validated=True)
    else:
        wf_path = Path(folder) / "wf.yaml"
        wf_path.write_text(WORKFLOW.format(size=size, frames=frames))
        registry = build_registry([PLUGIN], env=False)
        graph = compile_workflow(load_workflow(wf_path), registry)
    import torch  # noqa: F401

    import nodes.face.flow
    import nodes.warp  # noqa: F401

    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    before = _status_kib("VmRSS")
    start = time.perf_counter()
    with Watcher(Path(folder) / "cache", progress_every) as watcher:
        report = run_graph(graph, cache=CacheStore(Path(folder) / "cache"), stream=stream, keep_streamed=keep_streamed,
                           listeners=[watcher])
        elapsed = time.perf_counter() - start
    if not report.ok:
        raise SystemExit(f"run failed: {report.errors}")
    peak = _status_kib("VmHWM")
    return {"frames": frames, "size": size, "stream": stream, "workflow": workflow or "toy chain", "before_mib": before / 1024,
            "peak_mib": peak / 1024, "peak_above_mib": (peak - before) / 1024, "seconds": elapsed,
            "per_frame_ms": 1000 * elapsed / frames, "whole_mib": None if workflow else whole_bytes(frames, size) / 2**20,
            "peak_disk_gib": watcher.peak_disk / 2**30, "final_disk_gib": folder_bytes(Path(folder) / "cache") / 2**30}


def measure(frames: int, size: int, stream: bool, chunk_bytes: int = 0, workflow: str = "", seconds: float = 0.0,
            keep_streamed: bool = True, progress_every: float = 0.0) -> dict:
    """`child` in a fresh interpreter (its own peak), in a temporary folder. Its stderr
    (progress lines, and the traceback if it fails) goes to ours as it comes."""
    with tempfile.TemporaryDirectory(prefix="stream-bench-") as folder:
        cmd = [sys.executable, __file__, "--child", "--frames", str(frames), "--size", str(size),
               "--chunk-bytes", str(chunk_bytes), "--folder", folder, "--workflow", workflow, "--seconds", str(seconds),
               "--progress-every", str(progress_every)] + \
              ([] if stream else ["--whole"]) + ([] if keep_streamed else ["--drop-streamed"])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed (exit {done.returncode}; its stderr is above)")
        return json.loads(done.stdout.strip().splitlines()[-1])


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def bench_workflow(workflow: str, lengths: list[float], whole_up_to: float, chunk_bytes: int, keep_streamed: bool = True,
                   progress_every: float = 0.0) -> None:
    """The issue's comparison for one workflow: streamed runs across lengths of speech."""
    print(f"workflows/{workflow} on the bundled speech repeated, streamed"
          f"{'' if keep_streamed else ', streamed intermediates not kept'}; load average {_load()}", flush=True)
    runs = []
    for seconds in lengths:
        s = measure(0, 0, True, chunk_bytes, workflow, seconds, keep_streamed, progress_every)
        runs.append(s)
        line = (f"{seconds:>6.0f} s ({s['frames']} frames): peak RSS {s['peak_mib']:.0f} MiB "
                f"({s['peak_above_mib']:.0f} MiB above the {s['before_mib']:.0f} MiB before the run), "
                f"{s['per_frame_ms']:.1f} ms/frame, cache on disk {s['peak_disk_gib']:.2f} GiB at most, "
                f"{s['final_disk_gib']:.2f} GiB after")
        if seconds <= whole_up_to:
            w = measure(0, 0, False, chunk_bytes, workflow, seconds)
            line += f"; whole: peak RSS {w['peak_mib']:.0f} MiB, {w['per_frame_ms']:.1f} ms/frame"
        print(f"{line}; load average {_load()}", flush=True)
    for s in runs[1:]:
        print(f"{workflow} {s['frames']} vs {runs[0]['frames']} frames: peak RSS {s['peak_mib'] / runs[0]['peak_mib']:.2f}x "
              f"(target <= 1.3x, and under 3 GB: {s['peak_mib'] / 1024:.2f} GiB), time per frame "
              f"{s['per_frame_ms'] / runs[0]['per_frame_ms']:.2f}x (target <= 1.2x)", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--frames", default="250,1000,4000")
    ap.add_argument("--chunk-bytes", type=int, default=0, help="storage chunk target (0: the engine's 32 MiB)")
    ap.add_argument("--workflows", default="", help="run these workflows/ files instead of the toy chain, e.g. hdtf.yaml")
    ap.add_argument("--seconds", default="30,180", help="with --workflows: lengths of speech in seconds")
    ap.add_argument("--whole-up-to", type=float, default=0.0, help="with --workflows: also run whole up to this length")
    ap.add_argument("--drop-streamed", action="store_true", help="run with keep_streamed=False")
    ap.add_argument("--progress-every", type=float, default=0.0, help="seconds between a child's progress lines (0: none)")
    ap.add_argument("--workflow", default="", help=argparse.SUPPRESS)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--whole", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(int(args.frames), args.size, not args.whole, args.chunk_bytes, args.folder,
                               args.workflow, float(args.seconds) if args.workflow else 0.0, not args.drop_streamed,
                               args.progress_every)))
        return 0
    if args.workflows:
        for workflow in args.workflows.split(","):
            bench_workflow(workflow, [float(x) for x in args.seconds.split(",")], args.whole_up_to, args.chunk_bytes,
                           not args.drop_streamed, args.progress_every)
        return 0
    lengths = [int(n) for n in args.frames.split(",")]
    print(f"chain ToyCoeffs -> DenseFlowBuilder -> WarpImage -> SaveVideo at {args.size}x{args.size}; "
          f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")
    print(f"{'frames':>7} {'whole values':>13} {'peak streamed':>14} {'peak whole':>11} {'stream/whole':>12} "
          f"{'ms/frame str':>12} {'ms/frame whole':>14}")
    rows = []
    for n in lengths:
        s, w = measure(n, args.size, True, args.chunk_bytes), measure(n, args.size, False, args.chunk_bytes)
        rows.append((s, w))
        print(f"{n:>7} {s['whole_mib']:>9.0f} MiB {s['peak_above_mib']:>10.0f} MiB {w['peak_above_mib']:>7.0f} MiB "
              f"{s['peak_above_mib'] / max(w['peak_above_mib'], 1e-9):>11.2f}x {s['per_frame_ms']:>12.2f} "
              f"{w['per_frame_ms']:>14.2f}", flush=True)
    s0 = rows[0][0]
    for s, w in rows[1:]:
        print(f"{s['frames']} vs {s0['frames']} frames: streamed peak {s['peak_above_mib'] / max(s0['peak_above_mib'], 1e-9):.2f}x "
              f"(target <= 1.3x), whole peak {w['peak_above_mib'] / max(rows[0][1]['peak_above_mib'], 1e-9):.2f}x; "
              f"streamed time per frame {s['per_frame_ms'] / s0['per_frame_ms']:.2f}x (target <= 1.2x)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
