"""Cache write + read of a 125x512x512x3 uint8 frames value against np.save / np.load.

Both run on the same disk in the same process, interleaved round by round so that load
from other processes hits both alike. Cache = EntryWriter.save + commit, then
CacheStore.load; baseline = np.save, then np.load. Prints best-of-N and median seconds and
the ratio cache/numpy (target: within 2x). Contents:

* video  - the astronaut photo resized to 512, drifting and rotating slowly, plus sensor-like
           noise (sigma 2): what decoded camera frames look like;
* noise  - uniform random bytes (incompressible);
* flat   - the same video without noise, posterised to 8 levels per channel (like renders,
           masks, sketches): compressible, so the cache compresses it (a different trade:
           much smaller on disk, more CPU than a raw np.save).

Also times `CacheStore.ls()` over many small entries.

    PYTHONPATH=$PWD python bench/cache_io.py [--rounds 7] [--dir /some/disk] [--ls-entries 1000]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from graphcore.cache import CacheStore
from graphcore.types import ARRAY, SCALAR

SHAPE = (125, 512, 512, 3)


def video_frames(noise_sigma: float = 2.0, seed: int = 0) -> np.ndarray:
    """A slowly moving, rotating portrait with per-frame noise."""
    from skimage import data, transform

    image = transform.resize(data.astronaut(), SHAPE[1:3], preserve_range=True, anti_aliasing=True).astype(np.float32)
    rng = np.random.default_rng(seed)
    frames = np.empty(SHAPE, np.uint8)
    for t in range(SHAPE[0]):
        angle = 4.0 * np.sin(t / 20)
        frame = transform.rotate(image, angle, mode="edge", preserve_range=True, order=1)
        frame = np.roll(frame, (int(10 * np.sin(t / 15)), int(8 * np.cos(t / 11))), axis=(0, 1))
        if noise_sigma:
            frame = frame + rng.normal(0, noise_sigma, frame.shape).astype(np.float32)
        frames[t] = np.clip(frame, 0, 255).astype(np.uint8)
    return frames


# The three kinds of frames both cache benchmarks read: realistic video, incompressible noise,
# and flat frames that compress well (made on demand: each is ~100 MB).
CONTENTS: dict[str, Callable[[], np.ndarray]] = {
    "video": lambda: video_frames(noise_sigma=2.0),
    "noise": lambda: np.random.default_rng(1).integers(0, 256, SHAPE, dtype=np.uint8),
    "flat": lambda: video_frames(noise_sigma=0.0) // 32 * 32,
}


def _numpy_round(arr: np.ndarray, folder: str) -> tuple[float, float]:
    path = os.path.join(folder, "frames.npy")
    t0 = time.perf_counter()
    np.save(path, arr)
    t1 = time.perf_counter()
    back = np.load(path)
    t2 = time.perf_counter()
    assert back.shape == arr.shape
    os.remove(path)
    return t1 - t0, t2 - t1


def _cache_round(arr: np.ndarray, store: CacheStore, key: str) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    with store.writer(key) as writer:
        writer.save("frames", ARRAY, arr)
        meta = writer.commit({"node_id": "bench", "node_type": "Bench", "seconds": 1.0})
    t1 = time.perf_counter()
    back = store.load(key, "frames", ARRAY)
    t2 = time.perf_counter()
    if not np.array_equal(back, arr):
        raise AssertionError("cache round trip changed the frames")
    store.delete(key)
    return t1 - t0, t2 - t1, meta.size_bytes


def measure(name: str, arr: np.ndarray, folder: str, rounds: int) -> dict:
    store = CacheStore(os.path.join(folder, "cache"))
    np_runs, cache_runs, stored = [], [], 0
    for i in range(rounds):
        np_runs.append(_numpy_round(arr, folder))
        *times, stored = _cache_round(arr, store, f"bench-{name}-{i}")
        cache_runs.append(tuple(times))
    np_tot = [w + r for w, r in np_runs]
    cache_tot = [w + r for w, r in cache_runs]
    return {
        "content": name,
        "numpy_best_s": min(np_tot), "cache_best_s": min(cache_tot),
        "numpy_median_s": statistics.median(np_tot), "cache_median_s": statistics.median(cache_tot),
        "cache_write_best_s": min(w for w, _ in cache_runs), "cache_read_best_s": min(r for _, r in cache_runs),
        "ratio_best": min(cache_tot) / min(np_tot),
        "ratio_median": statistics.median(cache_tot) / statistics.median(np_tot),
        "stored_fraction": stored / arr.nbytes,
    }


def measure_ls(folder: str, n: int) -> dict:
    store = CacheStore(os.path.join(folder, "ls-cache"))
    for i in range(n):
        with store.writer(f"entry{i:06d}") as writer:
            writer.save("x", SCALAR, i)
            writer.commit({"node_id": f"n{i}", "node_type": "Tiny", "seconds": 0.01})
    t0 = time.perf_counter()
    entries = store.ls()
    seconds = time.perf_counter() - t0
    assert len(entries) == n
    return {"entries": n, "ls_s": seconds}


def _print_result(r: dict, rounds: int) -> None:
    print(
        f"  {r['content']:<6}  numpy {r['numpy_best_s']:.3f}s  cache {r['cache_best_s']:.3f}s "
        f"(write {r['cache_write_best_s']:.3f} + read {r['cache_read_best_s']:.3f})  "
        f"ratio {r['ratio_best']:.2f}x best-of-{rounds}, {r['ratio_median']:.2f}x median  "
        f"stored {100 * r['stored_fraction']:.0f}% of raw",
        flush=True,
    )


def run(rounds: int = 7, folder: str | None = None, ls_entries: int = 1000) -> dict:
    """Measure, print the figures, return them.

    `ratio_vs_numpy` (the figure the 2x target is about) is the worse of the video and noise
    best-of-N ratios; best-of-N keeps other processes' load on this machine out of it, and
    the medians are printed beside it.
    """
    work = tempfile.mkdtemp(prefix="cache-bench-", dir=folder)
    print(f"cache write+read vs np.save+np.load, {SHAPE} uint8 ({np.prod(SHAPE) / 1e6:.0f} MB), "
          f"{rounds} rounds, in {work}", flush=True)
    try:
        results = []
        for name, make in CONTENTS.items():
            results.append(measure(name, make(), work, rounds))
            _print_result(results[-1], rounds)
        ls = measure_ls(work, ls_entries)
        print(f"  ls of {ls['entries']} entries: {1000 * ls['ls_s']:.0f} ms", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    by_name = {r["content"]: r for r in results}
    ratio = max(by_name["video"]["ratio_best"], by_name["noise"]["ratio_best"])
    print(f"  cache write+read: {ratio:.2f}x np.save+np.load (worse of video/noise, target <= 2)", flush=True)
    return {"shape": SHAPE, "rounds": rounds, "results": results, "ls": ls, "ratio_vs_numpy": ratio}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--dir", default=None, help="folder on the disk to measure (default: the temp dir)")
    parser.add_argument("--ls-entries", type=int, default=1000)
    args = parser.parse_args()
    run(args.rounds, args.dir, args.ls_entries)


if __name__ == "__main__":
    main()
