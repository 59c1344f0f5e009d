"""Engine benchmark (issue 2): prints figures and ratios against baselines measured in the same run.

(a) per-node overhead on a 1,000-node graph of trivial nodes, cold and fully cached, against
    dask.delayed running the same graph in the same process;
(b) cache write + read of a 125x512x512x3 uint8 frames value against np.save/np.load.

Targets: fully cached 1,000-node re-run < 1 s; cold per-node overhead <= dask.delayed's;
cache write+read within 2x of np.save/np.load.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import cache_io, scheduler_overhead


def main() -> int:
    print("== (a) scheduler overhead, 1,000 trivial nodes")
    a = scheduler_overhead.run()
    print("== (b) cache write+read of 125x512x512x3 uint8 frames")
    b = cache_io.run()
    ok = (
        a["cached_rerun_s"] < 1.0
        and a["ratio_cold_overhead_vs_dask_delayed"] <= 1.0
        and b["ratio_vs_numpy"] <= 2.0
    )
    print("\nsummary:")
    print(f"  fully cached 1,000-node re-run: {a['cached_rerun_s']:.3f} s (target < 1 s)")
    print(f"  cold per-node overhead: {a['cold_overhead_per_node_ms']} ms = "
          f"{a['ratio_cold_overhead_vs_dask_delayed']:.2f}x dask.delayed's (target <= 1)")
    print(f"  cache write+read of 125x512x512x3 uint8: {b['ratio_vs_numpy']:.2f}x np.save/np.load (target <= 2)")
    print("  all targets met" if ok else "  SOME TARGETS MISSED")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
