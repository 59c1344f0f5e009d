"""Crash safety: a `graphrun` killed with SIGKILL while writing leaves nothing that is served
later; two `graphrun` processes sharing one cache both succeed."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
from engine_helpers import TEST_NODES, compile_file, graphrun, subprocess_env, write_workflow

from graphcore.cache import CacheStore
from graphcore.events import read_events
from graphcore.keys import compute_keys
from graphcore.types import ARRAY, METRICS

BIG = """
version: 1
nodes:
  small: {{type: Range, params: {{num: 10}}}}
  big: {{type: BigRandom, params: {{megabytes: {mb}, seed: 5}}}}
  stats: {{type: Stats, inputs: {{x: big.y}}}}
"""


def folder_bytes(root) -> int:
    total = 0
    for dirpath, _, files in os.walk(root):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, f))
            except OSError:
                pass  # renamed or removed while we looked
    return total


def test_kill_during_cache_write_then_clean_recompute(tmp_path):
    wf = write_workflow(tmp_path, BIG.format(mb=128))
    cache_dir = tmp_path / "cache"
    keys = compute_keys(compile_file(wf), "unused: no node here is salted")
    proc = subprocess.Popen(
        [sys.executable, "-m", "graphcore.cli", str(wf), "--cache", str(cache_dir), "--plugins", str(TEST_NODES)],
        env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        # BigRandom's output is 128 MB of incompressible bytes: kill once part of it is on disk.
        while folder_bytes(cache_dir) < 24 * 2**20:
            assert proc.poll() is None, "graphrun finished before it could be interrupted"
            assert time.monotonic() < deadline, "the cache write never started"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    cache = CacheStore(str(cache_dir))
    assert not cache.has(keys["big"]), "the write finished before the kill; the test did not test anything"
    assert not cache.has(keys["stats"])

    rerun = graphrun(wf, "--cache", cache_dir, "--plugins", TEST_NODES, "--events", tmp_path / "ev.jsonl")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    ran = {e.node_id for e in read_events(tmp_path / "ev.jsonl") if e.kind == "started"}
    assert {"big", "stats"} <= ran
    expected = np.random.default_rng(5).integers(0, 256, size=(128 * 4, 512, 512), dtype=np.uint8)
    assert np.array_equal(CacheStore(str(cache_dir)).load(keys["big"], "y", ARRAY), expected)


def test_two_concurrent_runs_on_one_cache_both_succeed(tmp_path):
    wf = write_workflow(tmp_path, BIG.format(mb=16))
    cache_dir = tmp_path / "cache"
    cmd = [sys.executable, "-m", "graphcore.cli", str(wf), "--cache", str(cache_dir), "--plugins", str(TEST_NODES)]
    procs = [subprocess.Popen(cmd, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=180) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, out + err
    keys = compute_keys(compile_file(wf), "unused")
    cache = CacheStore(str(cache_dir))
    assert all(cache.has(k) for k in keys.values())
    stats = cache.load(keys["stats"], "metrics", METRICS)
    assert stats["count"] == 16 * 2**20
    third = graphrun(wf, "--cache", cache_dir, "--plugins", TEST_NODES)
    assert third.returncode == 0 and "3 cached" in third.stdout
