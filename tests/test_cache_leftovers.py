"""Clean aborts: a failed or interrupted write leaves nothing behind for long. An aborted
attempt waits for its writes in flight before it is deleted (disk full), and what a killed
writer leaves (attempt, temp file, `.part` output file) is swept by the next run on the host
once its process is gone, and by `cache gc` after an hour when it came from another host."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from engine_helpers import TEST_NODES, compile_file, graphrun, subprocess_env, write_workflow

import graphcore.arrayio as arrayio
from graphcore import cache_cli
from graphcore.cache import CacheStore
from graphcore.liveness import writer_tag
from graphcore.outputs import part_files, part_path
from graphcore.scheduler import run_graph
from graphcore.types import ARRAY, ArrayType


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def dead_pid() -> int:
    """The pid of a process that has ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture()
def small_disk(tmp_path):
    """A 20 MiB tmpfs (as root; skipped where mounting is not allowed)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mount)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_leaves_nothing_of_the_attempt(small_disk, tmp_path, monkeypatch):
    monkeypatch.setattr(arrayio, "TARGET_CHUNK_BYTES", 1 << 20)  # many chunk writes in flight at once
    wf = write_workflow(tmp_path, """
    version: 1
    nodes:
      small: {type: Range, params: {num: 10}}
      big: {type: BigRandom, params: {megabytes: 64, seed: 1}}
      stats: {type: Stats, inputs: {x: big.y}}
    """)
    cache = CacheStore(str(small_disk / "cache"))
    report = run_graph(compile_file(wf), cache=cache)
    assert report.status == {"small": "ran", "big": "failed", "stats": "skipped"}
    [err] = report.errors
    assert "cannot write its outputs to the cache" in err.message and "No space left on device" in err.message
    for _ in range(2):  # and nothing comes back later from a write that was still in flight
        assert files_in(small_disk / "cache" / "objects") == [] and files_in(small_disk / "cache" / "pending") == []
        assert files_in(small_disk / "cache" / "tmp") == []
        time.sleep(0.5)
    assert cache.has(report.keys["small"])  # completed work stays
    used = os.statvfs(small_disk)
    assert (used.f_blocks - used.f_bfree) * used.f_frsize < 1 << 20
    assert cache.gc(10**9).sweep.total == 0


def test_writes_in_flight_are_waited_for_before_the_abort_deletes(tmp_path, monkeypatch):
    """Simulated ENOSPC on one chunk while the others are still being written."""
    import zarr.storage._local as zarr_local

    monkeypatch.setattr(arrayio, "TARGET_CHUNK_BYTES", 64 * 1024)
    real_put = zarr_local._put
    started = []

    def put(path, value, exclusive=False):
        if "/c/" in str(path):
            parts = Path(path).parts
            index = int(parts[parts.index("c") + 1])  # c/<row>/0/0
            started.append(index)
            if index == 1:
                raise OSError(errno.ENOSPC, "No space left on device (simulated)")
            time.sleep(0.2)
        return real_put(path, value, exclusive=exclusive)

    monkeypatch.setattr(zarr_local, "_put", put)
    store = CacheStore(str(tmp_path))
    with pytest.raises(OSError, match="simulated"):
        with store.writer("k") as w:
            w.save("y", ARRAY, np.random.default_rng(0).integers(0, 256, (40, 128, 128), dtype=np.uint8))
    assert len(started) >= 2
    for _ in range(3):
        assert files_in(tmp_path / "objects") == [] and files_in(tmp_path / "pending") == []
        time.sleep(0.3)


class LateWriter(ArrayType):
    """Saves through a thread that goes on writing after save() returned (a stand-in for
    background writes the engine does not know about)."""

    def save(self, group, value):
        arr = group.create_array("value", shape=value.shape, dtype=value.dtype, chunks=(1,))

        def later():
            time.sleep(0.3)
            try:
                arr[1] = value[1]
            except Exception as exc:  # refused: the attempt was aborted meanwhile
                self.refused = exc

        self.thread = threading.Thread(target=later)
        self.thread.start()
        arr[0] = value[0]


def test_a_write_after_the_abort_is_refused(tmp_path):
    store = CacheStore(str(tmp_path))
    late = LateWriter("Late")
    with pytest.raises(RuntimeError, match="node failed"):
        with store.writer("k") as w:
            w.save("y", late, np.arange(4.0))
            raise RuntimeError("node failed")
    late.thread.join()
    assert "after the cache attempt was closed" in str(late.refused)
    assert files_in(tmp_path / "objects") == []


SLOW = """
version: 1
nodes:
  slow: {type: SlowFile, params: {path: out/slow.bin, blocks: 200, delay: 0.05}}
"""


def test_a_killed_runs_leftovers_are_swept_by_the_next_run(tmp_path):
    wf = write_workflow(tmp_path, SLOW)
    cache_dir = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, "-m", "graphcore.cli", str(wf), "--cache", str(cache_dir), "--plugins",
                             str(TEST_NODES)], env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:  # after the run's own first lines
            if line.strip() == "writing":
                break
    finally:
        proc.kill()
        proc.wait(timeout=30)
    [(part, writer)] = part_files(tmp_path / "out" / "slow.bin")
    assert part == part_path(tmp_path / "out" / "slow.bin", writer_tag(proc.pid)) and part.stat().st_size >= 65536
    [marker] = os.listdir(cache_dir / "pending")
    assert json.loads((cache_dir / "pending" / marker).read_text())["files"] == [str(tmp_path / "out" / "slow.bin")]

    again = graphrun(wf, "--cache", cache_dir, "--plugins", TEST_NODES, "--set", "slow.delay=0", "--events", tmp_path / "ev.jsonl")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "removed what interrupted runs left: 1 .part files" in again.stdout
    assert os.listdir(tmp_path / "out") == ["slow.bin"] and os.listdir(cache_dir / "pending") == []
    assert (tmp_path / "out" / "slow.bin").stat().st_size == 200 * 65536


def test_gc_sweeps_another_hosts_leftovers_only_after_an_hour(tmp_path, capsys):
    store = CacheStore(str(tmp_path))
    old, now = time.time() - 7200, time.time()
    for name, started in (("stale", old), ("recent", now)):
        w = store.writer(name)  # an attempt as another host's writer left it
        w.save("y", ARRAY, np.arange(20_000))
        w._recorder.close_writes()
        marker = {"key": name, "attempt": w.attempt, "writer": f"0badc0de-{os.getpid()}", "started": started, "files": []}
        (tmp_path / "pending" / f"{name}.{w.attempt}.json").write_text(json.dumps(marker))
        root = tmp_path / "objects" / name / w.attempt / "zarr.json"
        doc = json.loads(root.read_text())
        doc["attributes"]["talkgraph"].update(started=started, active=started)
        root.write_text(json.dumps(doc))
        temp = tmp_path / "tmp" / f"0badc0de-{os.getpid()}-{name}-x.json"
        temp.write_text("{}")
        os.utime(temp, (started, started))
    mine_dead = tmp_path / "tmp" / f"{writer_tag(dead_pid())}-0123-y.json"
    mine_dead.write_text("{}")

    assert store.sweep_dead_writers().temp_files == 1 and not mine_dead.exists()  # this host's dead writer: at once
    assert len(os.listdir(tmp_path / "pending")) == 2  # other hosts' writers cannot be asked: kept for now
    assert cache_cli.main(["cache", "gc", "--max-size", "1G", "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "removed what interrupted writers left: 1 unfinished attempts, 1 temp files" in out
    assert [n.split(".")[0] for n in os.listdir(tmp_path / "pending")] == ["recent"]
    assert os.listdir(tmp_path / "objects") == ["recent"]
    assert [n for n in os.listdir(tmp_path / "tmp")] == [f"0badc0de-{os.getpid()}-recent-x.json"]
