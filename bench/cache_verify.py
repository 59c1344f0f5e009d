"""The cost of verified cache reads: `CacheStore.load` (every file checked against the
digest recorded at commit) against the same `load` with the digest checks taken out (its Zarr
group opened on the plain store, so chunks are read as before verification existed), in the
same process, interleaved round by round.

Contents as in bench/cache_io.py: 125x512x512x3 uint8 frames of
* video - a moving photo with sensor noise (stored raw: read straight into the array),
* noise - uniform random bytes (raw),
* flat  - posterised frames (Blosc/LZ4: read through zarr's codec pipeline).

Prints best-of-N seconds of both reads, the ratio verified/unverified per content (target
<= 1.15x), the same ratio of the process's CPU time (which other processes' load disturbs
less than wall time) and the load average beside them.

    PYTHONPATH=$PWD python bench/cache_verify.py [--rounds 9] [--dir /some/disk]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cache_io import SHAPE, video_frames
from graphcore.cache import CacheStore
from graphcore.types import ARRAY

TARGET = 1.15


class UnverifiedStore(CacheStore):
    """The same store with the digest checks taken out (the baseline)."""

    def _verified_store(self, key: str, ref: dict):
        return self.zarr_store(key, ref["attempt"], read_only=True)


def _unverified_read(store: CacheStore, key: str) -> np.ndarray:
    return UnverifiedStore(store.url).load(key, "frames", ARRAY)


def measure(name: str, arr: np.ndarray, folder: str, rounds: int) -> dict:
    store = CacheStore(os.path.join(folder, f"cache-{name}"))
    with store.writer(name) as writer:
        writer.save("frames", ARRAY, arr)
        writer.commit({"node_id": "bench"})
    if not (np.array_equal(store.load(name, "frames", ARRAY), arr) and np.array_equal(_unverified_read(store, name), arr)):
        raise AssertionError("a read changed the frames")
    reads = {"verified": lambda: store.load(name, "frames", ARRAY), "plain": lambda: _unverified_read(store, name)}
    wall: dict[str, list[float]] = {k: [] for k in reads}
    cpu: dict[str, list[float]] = {k: [] for k in reads}
    for i in range(rounds):
        for kind in (("verified", "plain") if i % 2 == 0 else ("plain", "verified")):  # neither always goes first
            t0, c0 = time.perf_counter(), time.process_time()
            reads[kind]()
            wall[kind].append(time.perf_counter() - t0)
            cpu[kind].append(time.process_time() - c0)  # every thread of this process: less sensitive to load
    compressed = bool(store.open_outputs(name)["frames/value"].compressors)
    return {"content": name, "codec": "lz4" if compressed else "raw", "verified_best_s": min(wall["verified"]),
            "plain_best_s": min(wall["plain"]), "ratio_best": min(wall["verified"]) / min(wall["plain"]),
            "ratio_median": statistics.median(wall["verified"]) / statistics.median(wall["plain"]),
            "cpu_ratio_best": min(cpu["verified"]) / min(cpu["plain"])}


def run(rounds: int = 9, folder: str | None = None) -> dict:
    work = tempfile.mkdtemp(prefix="cache-verify-bench-", dir=folder)
    print(f"verified vs unverified cache reads, {SHAPE} uint8 ({np.prod(SHAPE) / 1e6:.0f} MB), {rounds} rounds, "
          f"in {work}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    try:
        contents = {
            "video": lambda: video_frames(noise_sigma=2.0),
            "noise": lambda: np.random.default_rng(1).integers(0, 256, SHAPE, dtype=np.uint8),
            "flat": lambda: video_frames(noise_sigma=0.0) // 32 * 32,
        }
        results = []
        for name, make in contents.items():
            r = measure(name, make(), work, rounds)
            results.append(r)
            print(f"  {name:<6} ({r['codec']})  unverified {r['plain_best_s']:.3f}s  verified {r['verified_best_s']:.3f}s  "
                  f"ratio {r['ratio_best']:.3f}x best-of-{rounds}, {r['ratio_median']:.3f}x median, "
              f"CPU time {r['cpu_ratio_best']:.3f}x best-of-{rounds}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    worst = max(r["ratio_best"] for r in results)
    worst_cpu = max(r["cpu_ratio_best"] for r in results)
    print(f"  verified reads: {worst:.3f}x unverified (worst content, target <= {TARGET}), CPU time {worst_cpu:.3f}x; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    return {"results": results, "ratio": worst, "cpu_ratio": worst_cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--dir", default=None, help="folder on the disk to measure (default: the temp dir)")
    args = parser.parse_args()
    run(args.rounds, args.dir)


if __name__ == "__main__":
    main()
