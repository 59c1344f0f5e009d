"""The Zarr cache store: round trips, atomic commits, crashes, concurrency, gc and the CLI."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pytest

import graphcore.arrayio as arrayio
from graphcore import cache_cli
from graphcore.cache import CacheError, CacheMiss, CacheStore, EntryMeta, eviction_order, keep_score
from graphcore.types import (
    ANY,
    ARRAY,
    CHECKPOINT,
    DICT,
    METRICS,
    OBJECT,
    PATH,
    SCALAR,
    STRING,
    CheckpointBlob,
    RecordType,
)

REPO = Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class Clip:
    samples: np.ndarray
    sample_rate: int
    label: str


CLIP = RecordType("TestClip", Clip)
BIG = np.arange(20_000)  # 160 KB: too large to be stored inline in the ref, so it goes to Zarr


def assert_same(a, b):
    """Deep equality that also checks array dtypes/shapes and treats NaN as equal to NaN."""
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b)
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, list) and len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b)
    elif dataclasses.is_dataclass(a):
        assert type(a) is type(b)
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name))
    else:
        assert type(a) is type(b) and a == b


def commit_one(store, key, values, seconds=1.0, node_id="n"):
    with store.writer(key) as w:
        for port, (port_type, value) in values.items():
            w.save(port, port_type, value)
        return w.commit({"node_id": node_id, "node_type": "T", "params": {"k": key}, "seconds": seconds})


def run_python(code: str, *args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


# -- round trips ---------------------------------------------------------------------------

rng = np.random.default_rng(0)
VALUES = {
    "uint8": (ARRAY, rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)),
    "int16": (ARRAY, rng.integers(-300, 300, (7,), dtype=np.int16)),
    "int64": (ARRAY, np.array([-(2**62), 0, 2**62], dtype=np.int64)),
    "uint16": (ARRAY, rng.integers(0, 65535, (3, 3), dtype=np.uint16)),
    "float16": (ARRAY, rng.normal(size=(2, 8)).astype(np.float16)),
    "float32_nan": (ARRAY, np.array([1.5, np.nan, np.inf, -np.inf], dtype=np.float32)),
    "float64": (ARRAY, rng.normal(size=(3, 2, 2))),
    "bool": (ARRAY, rng.random((5, 5)) > 0.5),
    "complex64": (ARRAY, (rng.normal(size=4) + 1j * rng.normal(size=4)).astype(np.complex64)),
    "zero_d": (ARRAY, np.array(3.25)),
    "empty": (ARRAY, np.zeros((0, 3), dtype=np.float32)),
    "fortran": (ARRAY, np.asfortranarray(rng.normal(size=(6, 4)))),
    "noise_frames": (ARRAY, rng.integers(0, 256, (6, 256, 256, 3), dtype=np.uint8)),  # raw path
    "flat_frames": (ARRAY, np.repeat(np.arange(6, dtype=np.uint8), 256 * 256 * 3).reshape(6, 256, 256, 3)),  # lz4 path
    "nested": (ANY, {"a": [1, 2.5, None, "s", True], "b": {"c": {"d": np.eye(2)}, "e": [np.arange(3), {"f": "g"}]},
                     "nan": float("nan"), "inf": float("-inf"), "unicode": "héllo ✓", "empty": {}, "none": None}),
    "list_of_arrays": (ANY, [np.arange(4), np.ones((2, 2), np.float32), "x"]),
    "dict": (DICT, {"weights": np.ones(3), "name": "w", "n": 3}),
    "metrics": (METRICS, {"psnr": 31.5, "ssim": 0.93, "frames": 125}),
    "scalar_int": (SCALAR, 42),
    "scalar_float": (SCALAR, 0.1),
    "scalar_bool": (SCALAR, False),
    "string": (STRING, "a string with / slashes and ünïcode"),
    "path": (PATH, "/data/some file.wav"),
    "checkpoint": (CHECKPOINT, CheckpointBlob(bytes(rng.integers(0, 256, 100_000, dtype=np.uint8)) + b"\x00" * 10,
                                              {"steps": 1000, "losses": [0.5, 0.25], "config": {"size": "tiny"}})),
    "checkpoint_empty": (CHECKPOINT, CheckpointBlob(b"", {})),
    "record": (CLIP, Clip(rng.normal(size=16000).astype(np.float32), 16000, "speech")),
}


@pytest.mark.parametrize("name", list(VALUES))
def test_every_generic_type_round_trips(tmp_path, name):
    port_type, value = VALUES[name]
    store = CacheStore(str(tmp_path / "cache"))
    meta = commit_one(store, "k1", {"out": (port_type, value)})
    assert meta.outputs == {"out": port_type.name} and meta.size_bytes > 0
    assert_same(value, store.load("k1", "out", port_type))


def test_many_ports_and_chunk_boundaries(tmp_path, monkeypatch):
    """Tiny chunks: many chunk files, a partial last chunk, raw and compressed arrays."""
    monkeypatch.setattr(arrayio, "TARGET_CHUNK_BYTES", 250_000)
    noise = rng.integers(0, 256, (37, 200, 200), dtype=np.uint8)  # 6 rows/chunk: 7 chunks, the last partial
    smooth = np.tile(np.linspace(0, 1, 50_000, dtype=np.float32), (23, 1))  # 200 KB rows: 1 row/chunk
    assert not arrayio.compression_pays(noise) and arrayio.compression_pays(smooth)
    store = CacheStore(str(tmp_path / "c"))
    commit_one(store, "multi", {"noise": (ARRAY, noise), "smooth": (ARRAY, smooth), "n": (SCALAR, 7)})
    root = store.open_outputs("multi")
    assert root["noise/value"].chunks[0] == 6 and not root["noise/value"].compressors
    assert root["smooth/value"].chunks[0] == 1 and root["smooth/value"].compressors
    assert_same(noise, store.load("multi", "noise", ARRAY))
    assert_same(smooth, store.load("multi", "smooth", ARRAY))
    assert store.load("multi", "n", SCALAR) == 7


def test_transient_values_are_refused(tmp_path):
    store = CacheStore(str(tmp_path))
    with store.writer("k") as w, pytest.raises(CacheError, match="never cached"):
        w.save("model", OBJECT, object())
    assert not store.has("k")


def test_bad_keys_and_ports(tmp_path):
    store = CacheStore(str(tmp_path))
    for key in ("", "../x", "a/b", ".hidden"):
        with pytest.raises(ValueError, match="invalid cache key"):
            store.writer(key)
    with store.writer("k") as w:
        for port in ("a/b", "__x", ""):
            with pytest.raises(ValueError, match="invalid output port"):
                w.save(port, SCALAR, 1)
        w.save("y", SCALAR, 1)
        with pytest.raises(CacheError, match="already saved"):
            w.save("y", SCALAR, 2)


# -- commit protocol -----------------------------------------------------------------------

def test_entry_without_its_ref_is_never_served(tmp_path):
    store = CacheStore(str(tmp_path))
    w = store.writer("k")  # a writer that dies before commit: saved data, no ref
    w.save("y", ARRAY, BIG)
    assert os.path.isdir(w.path)
    assert not store.has("k") and store.meta("k") is None and store.ls() == []
    with pytest.raises(CacheMiss):
        store.load("k", "y", ARRAY)
    with pytest.raises(CacheMiss):
        store.find("k")
    # a garbled ref (not written by us) is ignored, not served
    (tmp_path / "refs").mkdir(exist_ok=True)
    (tmp_path / "refs" / "k.json").write_text('{"format": 1, "attem')
    assert not store.has("k") and store.ls() == []
    (tmp_path / "refs" / "k.json").write_text('{"format": 1, "attempt": "../../../victim"}')
    victim = tmp_path.parent / "victim"
    victim.mkdir(exist_ok=True)
    assert not store.has("k") and store.ls() == []
    store.delete("k")
    assert victim.exists() and not (tmp_path / "refs" / "k.json").exists()


def test_ref_to_missing_data_is_absent_and_replaced(tmp_path):
    store = CacheStore(str(tmp_path))
    commit_one(store, "k", {"y": (ARRAY, BIG)})
    attempt = store.attempt_of("k")
    import shutil

    shutil.rmtree(tmp_path / "objects" / "k" / attempt)
    assert not store.has("k") and store.meta("k") is None
    with pytest.raises(CacheMiss):
        store.load("k", "y", ARRAY)
    commit_one(store, "k", {"y": (ARRAY, BIG + 1)})  # a recompute replaces the stale ref
    assert_same(BIG + 1, store.load("k", "y", ARRAY))
    shutil.rmtree(tmp_path / "objects" / "k")
    assert [m.key for m in store.ls()] == ["k"]  # ls reads refs only
    assert store.sweep_incomplete() == 0 and [m.key for m in store.ls()] == ["k"]  # committed < 1 h ago
    store.sweep_incomplete(older_than_s=0)
    assert store.ls() == [] and not (tmp_path / "refs" / "k.json").exists()


def test_entry_deleted_while_being_read_is_a_miss(tmp_path):
    store = CacheStore(str(tmp_path))
    commit_one(store, "k", {"y": (ARRAY, BIG)})  # in Zarr: inline values are read in one piece

    class DeletedMidRead(type(ARRAY)):
        def load(self, group):
            value = super().load(group)
            CacheStore(store.url).delete("k")  # another process's gc, between our chunk reads
            return value

    with pytest.raises(CacheMiss, match="deleted while it was being read"):
        store.load("k", "y", DeletedMidRead("Array"))


def test_writer_aborts_on_exception_and_without_commit(tmp_path):
    store = CacheStore(str(tmp_path))
    with pytest.raises(RuntimeError):
        with store.writer("k") as w:
            w.save("y", ARRAY, np.arange(5))
            path = w.path
            raise RuntimeError("node failed")
    assert not os.path.exists(path) and not store.has("k")
    with store.writer("k") as w:
        w.save("y", ARRAY, np.arange(5))
        path = w.path
    assert not os.path.exists(path) and not store.has("k")
    with store.writer("k") as w:
        w.commit({})
        with pytest.raises(CacheError, match="committed"):
            w.save("z", SCALAR, 1)
    assert store.has("k") and store.meta("k").outputs == {}


def test_missing_port_is_a_clear_miss(tmp_path):
    store = CacheStore(str(tmp_path))
    commit_one(store, "k", {"y": (SCALAR, 1)}, node_id="blur")
    with pytest.raises(CacheMiss, match=r"blur.*no output 'z'.*it has: y"):
        store.load("k", "z", SCALAR)


def test_meta_records_everything(tmp_path):
    store = CacheStore(str(tmp_path))
    before = time.time()
    with store.writer("k") as w:
        w.save("y", ARRAY, np.zeros((100, 100)))
        meta = w.commit({"node_id": "n1", "node_type": "Blur", "params": {"sigma": 1.5}, "seconds": 12.5,
                         "files": {"out": {"path": "/o.mp4", "sha256": "ab" * 32}}, "extra": {"a": 1}, "run_id": "r7"})
    assert meta == store.meta("k") == store.find("k")
    assert (meta.node_id, meta.node_type, meta.params, meta.seconds) == ("n1", "Blur", {"sigma": 1.5}, 12.5)
    assert meta.outputs == {"y": "Array"} and meta.files["out"]["path"] == "/o.mp4"
    assert meta.extra == {"a": 1, "run_id": "r7"}  # unknown fields land in extra
    assert before <= meta.created <= meta.last_used <= time.time()
    assert meta.size_bytes == sum(f.stat().st_size for f in (tmp_path / "objects" / "k").rglob("*") if f.is_file())


def test_touch_records_last_use(tmp_path):
    store = CacheStore(str(tmp_path))
    created = commit_one(store, "k", {"y": (SCALAR, 1)}).created
    time.sleep(0.02)
    store.touch("k")
    assert store.meta("k").last_used > created
    assert [m.last_used for m in store.ls()] == [store.meta("k").last_used]
    store.touch("not-there")  # best effort, never raises; an orphan use file is swept
    store.sweep_incomplete()
    assert not (tmp_path / "used" / "not-there").exists()


def test_touch_rewrites_the_stamp_in_place(tmp_path):
    """A cached re-run touches every entry it uses: no new file (inode) per touch."""
    store = CacheStore(str(tmp_path))
    commit_one(store, "k", {"y": (SCALAR, 1)})
    store.touch("k")
    stamp = tmp_path / "used" / "k"
    inode = stamp.stat().st_ino
    stamp.write_text("1000000000.12345678901234")  # an older, longer stamp
    store.touch("k")
    assert stamp.stat().st_ino == inode and abs(float(stamp.read_text()) - time.time()) < 60
    assert os.listdir(tmp_path / "used") == ["k"]


def test_find_by_prefix(tmp_path):
    store = CacheStore(str(tmp_path))
    for key in ("abc111", "abc222", "def333"):
        commit_one(store, key, {"y": (SCALAR, 1)})
    assert store.find("d").key == "def333" and store.find("abc2").key == "abc222"
    with pytest.raises(CacheMiss, match="2 cache entries start with 'abc'"):
        store.find("abc")
    with pytest.raises(CacheMiss, match="no cache entry"):
        store.find("zzz")


KILL_WRITER = """
import sys, numpy as np
import graphcore.arrayio as arrayio
from graphcore.cache import CacheStore
from graphcore.types import ARRAY
arrayio.TARGET_CHUNK_BYTES = 1 << 20   # many chunk files: the kill lands mid-array
frames = np.random.default_rng(0).integers(0, 256, (400, 512, 512, 3), dtype=np.uint8)  # 300 MB
store = CacheStore(sys.argv[1])
with store.writer("bigkey") as w:
    print(w.path, flush=True)
    w.save("frames", ARRAY, frames)
    w.commit({"node_id": "big"})
print("finished", flush=True)
"""


def test_kill_9_during_a_large_write_leaves_nothing_served(tmp_path):
    cache_dir = str(tmp_path / "cache")
    proc = run_python(KILL_WRITER, cache_dir)
    attempt_dir = Path(proc.stdout.readline().strip())
    chunk_dir = attempt_dir / "frames" / "value" / "c"
    deadline = time.time() + 60
    while time.time() < deadline and len(list(chunk_dir.iterdir()) if chunk_dir.exists() else []) < 5:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, (out, err)
    assert "finished" not in out
    n_chunks = len(list(chunk_dir.iterdir()))
    assert 5 <= n_chunks < 400, n_chunks  # killed mid-write

    store = CacheStore(cache_dir)
    assert not store.has("bigkey") and store.meta("bigkey") is None and store.ls() == []
    with pytest.raises(CacheMiss):
        store.load("bigkey", "frames", ARRAY)
    assert os.listdir(Path(cache_dir) / "pending") == [f"bigkey.{attempt_dir.name}.json"]  # who was writing

    commit_one(store, "bigkey", {"frames": (ARRAY, BIG)})  # the clean recompute
    assert_same(BIG, store.load("bigkey", "frames", ARRAY))
    swept = store.sweep_dead_writers()  # what every run does first: the writer's process is gone
    assert swept.attempts == 1 and swept.bytes >= 2**20 and not attempt_dir.exists()
    assert os.listdir(Path(cache_dir) / "objects" / "bigkey") == [store.attempt_of("bigkey")]
    assert os.listdir(Path(cache_dir) / "pending") == []
    assert_same(BIG, store.load("bigkey", "frames", ARRAY))


def test_a_live_writers_attempt_is_never_swept(tmp_path):
    store = CacheStore(str(tmp_path))
    w = store.writer("busy")  # this process: alive
    w.save("y", ARRAY, BIG)
    assert store.sweep_dead_writers().total == 0 and store.sweep_incomplete() == 0
    assert os.path.isdir(w.path)
    meta = w.commit({"node_id": "busy"})
    assert meta.size_bytes > 0 and os.listdir(tmp_path / "pending") == []


RACER = """
import json, os, sys, time, numpy as np
from graphcore.cache import CacheStore
from graphcore.types import ARRAY
store, go, keys = CacheStore(sys.argv[1]), sys.argv[2], sys.argv[3:]
value = np.arange(3 * 1024 * 1024, dtype=np.float32).reshape(3, 1024, 1024)  # 12 MB, same in both
while not os.path.exists(go):
    time.sleep(0.001)
report = []
for key in keys:
    with store.writer(key) as w:
        w.save("y", ARRAY, value)
        meta = w.commit({"node_id": "racer", "seconds": 1.0, "extra": {"pid": os.getpid()}})
    report.append({"key": key, "mine": w.attempt, "live": store.attempt_of(key), "pid": meta.extra["pid"]})
print(json.dumps(report))
"""


def race(script: str, cache_dir: str, keys: list[str], go: str) -> list:
    """Start two processes running `script` on the same keys, release them at once (by
    creating `go`), and return what each printed, parsed as JSON."""
    procs = [run_python(script, cache_dir, go, *keys) for _ in range(2)]
    time.sleep(1.5)  # let both import and get ready
    Path(go).touch()
    reports = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        reports.append(json.loads(out))
    return reports


def test_two_processes_writing_the_same_key(tmp_path):
    cache_dir = str(tmp_path / "cache")
    keys = [f"race{i}" for i in range(4)]
    reports = [{r["key"]: r for r in report} for report in race(RACER, cache_dir, keys, str(tmp_path / "go"))]
    store = CacheStore(cache_dir)
    expected = np.arange(3 * 1024 * 1024, dtype=np.float32).reshape(3, 1024, 1024)
    assert sorted(m.key for m in store.ls()) == keys
    for key in keys:
        a, b = reports[0][key], reports[1][key]
        live = store.attempt_of(key)
        assert a["live"] == b["live"] == live and live in (a["mine"], b["mine"])
        assert a["pid"] == b["pid"]  # both got the winner's metadata
        assert os.listdir(Path(cache_dir) / "objects" / key) == [live]  # the loser cleaned up
        assert_same(expected, store.load(key, "y", ARRAY))


def test_threads_sharing_a_store(tmp_path):
    """What `--jobs N` does: several threads writing (some the same key) and reading at once."""
    from concurrent.futures import ThreadPoolExecutor

    store = CacheStore(str(tmp_path))
    frames = rng.integers(0, 256, (20, 256, 256, 3), dtype=np.uint8)

    def work(i):
        key = f"t{i % 4}"
        commit_one(store, key, {"frames": (ARRAY, frames), "i": (SCALAR, i % 4)})
        return store.load(key, "frames", ARRAY), store.load(key, "i", SCALAR)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(16)))
    for i, (back, j) in enumerate(results):
        assert_same(frames, back)
        assert j == i % 4
    assert sorted(m.key for m in store.ls()) == ["t0", "t1", "t2", "t3"]
    for key in ("t0", "t1", "t2", "t3"):
        assert os.listdir(tmp_path / "objects" / key) == [store.attempt_of(key)]


def test_second_committer_keeps_the_first_entry_on_an_object_store():
    store = CacheStore("memory://race-test")
    store.clear()
    a, b = store.writer("k"), store.writer("k")
    a.save("y", ARRAY, BIG)
    b.save("y", ARRAY, BIG)
    meta_a = a.commit({"extra": {"who": "a"}})
    meta_b = b.commit({"extra": {"who": "b"}})
    assert meta_a == meta_b and meta_b.extra == {"who": "a"}
    assert store.attempt_of("k") == a.attempt and not store._files.exists(b.path)


def test_racing_puts_on_an_object_store_leave_a_complete_entry(monkeypatch):
    """No create-if-absent on object stores: if both writers pass the existence check, the
    later PUT wins, and both attempts are complete, so the entry is valid either way."""
    store = CacheStore("memory://race-test-2")
    store.clear()
    a, b = store.writer("k"), store.writer("k")
    a.save("y", ARRAY, BIG)
    b.save("y", ARRAY, BIG)
    monkeypatch.setattr(store, "_live_ref", lambda key: None)  # both saw no ref yet
    monkeypatch.setattr(type(store._files), "exists", lambda self, path: "/refs/" not in path and self.fs.exists(path))
    a.commit({})
    b.commit({})
    monkeypatch.undo()
    assert store.attempt_of("k") == b.attempt
    assert_same(BIG, store.load("k", "y", ARRAY))
    assert store.sweep_incomplete(older_than_s=0) == 1  # a's attempt, now unreferenced
    assert_same(BIG, store.load("k", "y", ARRAY))


# -- gc ------------------------------------------------------------------------------------

def test_eviction_policy_prefers_cheap_per_byte_and_stale():
    now = 1_000_000.0
    mib = 2**20
    cheap_big = EntryMeta("cheap_big", seconds=1, size_bytes=100 * mib, created=now, last_used=now)
    costly_big = EntryMeta("costly_big", seconds=3600, size_bytes=100 * mib, created=now, last_used=now)
    cheap_small = EntryMeta("cheap_small", seconds=1, size_bytes=mib, created=now, last_used=now)
    stale_twin = EntryMeta("stale_twin", seconds=1, size_bytes=mib, created=now - 10 * 86400, last_used=now - 10 * 86400)
    order = [e.key for e in eviction_order([costly_big, cheap_small, stale_twin, cheap_big], now)]
    assert order == ["cheap_big", "stale_twin", "cheap_small", "costly_big"]
    assert keep_score(stale_twin, now) == pytest.approx(keep_score(cheap_small, now) / 11)


def test_gc_keeps_expensive_entries_and_respects_max_size(tmp_path):
    store = CacheStore(str(tmp_path))
    payload = rng.integers(0, 256, (2, 512, 512), dtype=np.uint8)  # ~0.5 MB, stored raw
    seconds = {"e0": 0.1, "e1": 500.0, "e2": 0.2, "e3": 900.0, "e4": 0.3, "e5": 60.0}
    for key, s in seconds.items():
        commit_one(store, key, {"y": (ARRAY, payload)}, seconds=s)
    sizes = {m.key: m.size_bytes for m in store.ls()}
    total = sum(sizes.values())
    limit = sizes["e1"] + sizes["e3"] + sizes["e5"]  # room for exactly the three expensive ones

    dry = store.gc(limit, dry_run=True)
    assert dry.dry_run and len(store.ls()) == 6  # nothing deleted
    report = store.gc(limit)
    assert [e.key for e in report.evicted] == [e.key for e in dry.evicted] == ["e0", "e2", "e4"]
    kept = {m.key for m in store.ls()}
    assert kept == {"e1", "e3", "e5"}
    assert report.total_before == total and report.total_after == sum(sizes[k] for k in kept) <= limit
    assert report.freed_bytes == total - report.total_after and report.kept == 3
    for key in ("e0", "e2", "e4"):
        assert not store.has(key) and not (tmp_path / "objects" / key).exists()
    assert store.gc(10**12).evicted == []
    assert store.gc(0).total_after == 0 and store.ls() == []


def test_gc_sweeps_old_orphans(tmp_path):
    store = CacheStore(str(tmp_path))
    w = store.writer("dead")
    w.save("y", SCALAR, 1)
    old = time.time() - 7200
    store._files.write_atomic(os.path.join(w.path, "zarr.json"), json.dumps(
        {"zarr_format": 3, "node_type": "group", "attributes": {"talkgraph": {"started": old, "active": old}}}).encode())
    assert store.gc(10**9).swept == 1 and not os.path.exists(w.path)


# -- other stores, pickling ------------------------------------------------------------------

@pytest.mark.parametrize("make_url", [lambda p: "memory://cache-test-store", lambda p: (p / "c").as_uri()],
                         ids=["memory", "file-url"])
def test_fsspec_urls(tmp_path, make_url):
    store = CacheStore(make_url(tmp_path))
    store.clear()
    frames = rng.integers(0, 256, (5, 128, 128, 3), dtype=np.uint8)  # in Zarr; the metrics inline
    commit_one(store, "k1", {"frames": (ARRAY, frames), "m": (METRICS, {"a": 1.0})}, seconds=5)
    commit_one(store, "k2", {"y": (SCALAR, 2)}, seconds=0.001)
    assert_same(frames, store.load("k1", "frames", ARRAY))
    assert store.load("k1", "m", METRICS) == {"a": 1.0}
    assert {m.key for m in store.ls()} == {"k1", "k2"} and store.has("k1")
    store.touch("k2")
    again = pickle.loads(pickle.dumps(store))
    assert again.url == store.url and again.meta("k2") == store.meta("k2")
    assert [e.key for e in store.gc(store.meta("k1").size_bytes).evicted] == ["k2"]
    assert store.clear() == 1 and store.ls() == []


def _load_in_child(store: CacheStore, key: str) -> list:
    return store.load(key, "y", ARRAY).tolist()


def test_store_survives_pickling_into_another_process(tmp_path):
    store = CacheStore(str(tmp_path))
    commit_one(store, "k", {"y": (ARRAY, np.arange(5))})
    assert CacheStore(store.url).has("k")
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        assert pool.submit(_load_in_child, store, "k").result(timeout=120) == [0, 1, 2, 3, 4]


def test_durable_mode_fsyncs_and_survives_pickling(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    fast = CacheStore(str(tmp_path / "fast"))
    commit_one(fast, "k", {"y": (ARRAY, BIG)})
    assert not fast.durable and synced == []
    monkeypatch.setenv("GRAPHRUN_CACHE_DURABLE", "1")
    durable = CacheStore(str(tmp_path / "durable"))
    commit_one(durable, "k", {"y": (ARRAY, BIG)})
    files = [f for f in (tmp_path / "durable" / "objects").rglob("*") if f.is_file()]
    assert durable.durable and len(synced) > len(files)  # every data file, the folders and the ref
    assert pickle.loads(pickle.dumps(durable)).durable
    assert_same(BIG, durable.load("k", "y", ARRAY))


def test_default_url_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("GRAPHRUN_CACHE", str(tmp_path / "env-cache"))
    assert CacheStore().url == str(tmp_path / "env-cache")
    monkeypatch.delenv("GRAPHRUN_CACHE")
    assert CacheStore().url.endswith(os.path.join("talkgraph", "cache"))


# -- CLI -----------------------------------------------------------------------------------

def test_parse_and_format_sizes():
    assert cache_cli.parse_size("500M") == 500 * 2**20
    assert cache_cli.parse_size("10G") == 10 * 2**30
    assert cache_cli.parse_size("1.5GiB") == int(1.5 * 2**30)
    assert cache_cli.parse_size("2kb") == 2048 and cache_cli.parse_size("123") == 123
    for bad in ("", "M", "10X", "-5M", "1e3"):
        with pytest.raises(Exception, match="invalid size"):
            cache_cli.parse_size(bad)
    assert cache_cli.format_size(1536) == "1.5 KiB" and cache_cli.format_size(12) == "12 B"


def test_cli_ls_info_gc_clear(tmp_path, capsys, monkeypatch):
    url = str(tmp_path / "cache")
    store = CacheStore(url)
    frames = np.zeros((50, 32, 32, 3), np.uint8)
    commit_one(store, "aaa111", {"frames": (ARRAY, frames), "info": (ANY, {"fps": 25})}, seconds=300, node_id="render")
    commit_one(store, "bbb222", {"y": (ARRAY, rng.normal(size=(300, 300)))}, seconds=0.01, node_id="blur")

    assert cache_cli.main(["cache", "ls", "--cache", url]) == 0
    out = capsys.readouterr().out
    assert "aaa111" in out and "render" in out and "blur" in out and "2 entries" in out

    assert cache_cli.main(["cache", "ls", "--cache", url, "--json", "--sort", "size"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [e["key"] for e in listed] == ["bbb222", "aaa111"]

    assert cache_cli.main(["cache", "info", "aaa", "--cache", url]) == 0
    out = capsys.readouterr().out
    for text in ("aaa111", "render (T)", '"k": "aaa111"', "300.000", "frames", "Array", "50x32x32x3 uint8",
                 "fps = 25", "created", "last used"):
        assert text in out, text

    assert cache_cli.main(["cache", "info", "zzz", "--cache", url]) == 1
    assert "no cache entry with a key starting with 'zzz'" in capsys.readouterr().err

    size_b = store.meta("bbb222").size_bytes
    assert cache_cli.main(["cache", "gc", "--max-size", "1K", "--dry-run", "--cache", url]) == 0
    assert "would evict 2 entries" in capsys.readouterr().out and len(store.ls()) == 2
    limit = store.meta("aaa111").size_bytes + size_b // 2
    assert cache_cli.main(["cache", "gc", "--max-size", str(limit), "--cache", url]) == 0
    assert "evicted 1 entries" in capsys.readouterr().out
    assert [m.key for m in store.ls()] == ["aaa111"]

    monkeypatch.setattr(sys, "stdin", open(os.devnull))
    assert cache_cli.main(["cache", "clear", "--cache", url]) == 1
    assert "without --yes" in capsys.readouterr().err and store.has("aaa111")
    assert cache_cli.main(["cache", "clear", "--yes", "--cache", url]) == 0
    assert "deleted 1 entries" in capsys.readouterr().out and store.ls() == []
    assert cache_cli.main(["cache", "ls", "--cache", url]) == 0
    assert "is empty" in capsys.readouterr().out


def test_cli_rm_and_env_default(tmp_path, capsys, monkeypatch):
    url = str(tmp_path / "c")
    monkeypatch.setenv("GRAPHRUN_CACHE", url)
    store = CacheStore(url)
    commit_one(store, "abc", {"y": (SCALAR, 1)})
    commit_one(store, "abd", {"y": (SCALAR, 1)})
    assert cache_cli.main(["cache", "rm", "ab"]) == 1  # ambiguous: nothing deleted
    assert "2 cache entries" in capsys.readouterr().err and len(store.ls()) == 2
    assert cache_cli.main(["cache", "rm", "abc"]) == 0
    assert [m.key for m in store.ls()] == ["abd"]


def test_cli_bad_size_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cache_cli.main(["cache", "gc", "--max-size", "lots", "--cache", str(tmp_path)])
    assert exc.value.code == 2 and "invalid size 'lots'" in capsys.readouterr().err


def test_cli_as_a_real_process(tmp_path):
    url = str(tmp_path / "c")
    commit_one(CacheStore(url), "k123", {"y": (SCALAR, 1)}, node_id="proc")
    proc = subprocess.run([sys.executable, "-m", "graphcore.cache_cli", "cache", "ls", "--cache", url],
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "k123" in proc.stdout and "proc" in proc.stdout
