"""Flat memory: a long clip at a small frame size streams through DenseFlowBuilder -> WarpImage
-> SaveVideo in far less memory than its values take whole (peak RSS of a fresh process,
measured by bench/stream_memory.py's child; bench/stream_memory.py prints the ratios); a run
caps glibc's malloc arenas and trims the heap between nodes (graphcore/heap.py)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from engine_helpers import ROOT, subprocess_env

FRAMES, SIZE = 6000, 64  # 4 minutes at 25 fps; flow + regions + frames take 352 MiB whole


def test_streamed_chain_peak_memory_stays_well_below_the_whole_values(tmp_path):
    cmd = [sys.executable, str(ROOT / "bench" / "stream_memory.py"), "--child", "--frames", str(FRAMES),
           "--size", str(SIZE), "--chunk-bytes", str(256 * 1024), "--folder", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=subprocess_env(OMP_NUM_THREADS="1"), timeout=600,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["whole_mib"] > 350
    # measured: 80 MiB at 1,000 frames, 82 at 4,000 (the same run whole: 467 MiB at 4,000)
    assert figures["peak_above_mib"] < 0.5 * figures["whole_mib"], figures
    assert (tmp_path / "out.mp4").stat().st_size > 10_000


ARENA_PROBE = """
import ctypes, sys, threading
if sys.argv[1] == "run":  # what a run does first
    from engine_helpers import compile_file, write_workflow
    from graphcore.cache import CacheStore
    from graphcore.scheduler import run_graph
    from pathlib import Path
    folder = Path(sys.argv[2])
    wf = write_workflow(folder, "version: 1\\nnodes:\\n  ramp: {type: Ramp, params: {n: 10}}\\n")
    assert run_graph(compile_file(wf), cache=CacheStore(folder / "c")).ok
threads = 6
barrier = threading.Barrier(threads + 1)
def work():  # each thread mallocs (200 kB: not pymalloc's) while all are alive
    blocks = [bytearray(200_000) for _ in range(4)]
    barrier.wait(); barrier.wait()
ts = [threading.Thread(target=work) for _ in range(threads)]
[t.start() for t in ts]; barrier.wait()
ctypes.CDLL("libc.so.6").malloc_stats()  # one "Arena N:" block per arena, on stderr
barrier.wait(); [t.join() for t in ts]
"""


def _arenas(tmp_path, mode: str, **env: str) -> int:
    script = tmp_path / "probe.py"
    script.write_text(ARENA_PROBE)
    base = subprocess_env(**env)
    if "MALLOC_ARENA_MAX" not in env:  # (an earlier run in this test process set it for its children)
        base.pop("MALLOC_ARENA_MAX", None)
    base["PYTHONPATH"] = f"{ROOT / 'tests'}:{base['PYTHONPATH']}"
    done = subprocess.run([sys.executable, str(script), mode, str(tmp_path)], capture_output=True, text=True, env=base,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return sum(1 for line in done.stderr.splitlines() if line.startswith("Arena "))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_a_run_caps_malloc_arenas_unless_the_user_set_them(tmp_path):
    assert _arenas(tmp_path, "plain") >= 5  # glibc: an arena per thread that allocates alongside others
    assert _arenas(tmp_path, "run") <= 2  # after a run in this process: at most graphcore.heap.ARENAS
    assert _arenas(tmp_path, "run", MALLOC_ARENA_MAX="8") >= 5  # the user's setting stands


MMAP_PROBE = """
import ctypes, sys
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                                               "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "configured":
    from graphcore import heap
    heap.configure_malloc()
big = bytearray(8 << 20)
del big  # freeing it raises glibc's dynamic mmap threshold to 8 MiB
mapped = libc.mallinfo2().hblks
block = bytearray(2 << 20)
print("mapped" if libc.mallinfo2().hblks > mapped else "heap")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_big_blocks_stay_mapped_once_malloc_is_configured(tmp_path):
    script = tmp_path / "mmap_probe.py"
    script.write_text(MMAP_PROBE)
    env = subprocess_env()
    # any of these fixes glibc's threshold too; dask's Nanny leaves MALLOC_TRIM_THRESHOLD_ in this
    # process's environment after a LocalCluster test, which made "plain" mapped in the full suite
    for var in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_"):
        env.pop(var, None)
    out = {mode: subprocess.run([sys.executable, str(script), mode], capture_output=True, text=True, env=env, timeout=60,
                                check=True).stdout.strip() for mode in ("plain", "configured")}
    assert out == {"plain": "heap", "configured": "mapped"}  # 2 MiB: from the heap after an 8 MiB free, unless fixed


def test_the_scheduler_trims_the_heap_after_each_node(tmp_path, monkeypatch):
    from engine_helpers import compile_file, write_workflow

    from graphcore import heap
    from graphcore.cache import CacheStore
    from graphcore.scheduler import run_graph

    trims: list[int] = []
    monkeypatch.setattr(heap, "trim", lambda: trims.append(1) or True)
    wf = write_workflow(tmp_path, "version: 1\nnodes:\n  ramp: {type: Ramp, params: {n: 10}}\n"
                                  "  sums: {type: FrameSums, inputs: {x: ramp.frames}}\n")
    assert run_graph(compile_file(wf), cache=CacheStore(tmp_path / "c")).ok
    assert len(trims) == 2
