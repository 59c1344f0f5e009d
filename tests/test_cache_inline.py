"""Small outputs stored inline in the cache entry's ref: round trips, the size threshold,
mixed entries, crashes mid-commit and racing writers."""
from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from test_cache import BIG, VALUES, assert_same, commit_one, race, run_python

import graphcore.cache as cache_mod
from graphcore import cache_cli
from graphcore.cache import CacheStore
from graphcore.liveness import writer_tag
from graphcore.types import ANY, ARRAY, SCALAR, ArrayType, stores_inline

LIMIT = cache_mod.INLINE_MAX_BYTES
ZARR_ONLY = {"noise_frames", "flat_frames", "checkpoint"}  # over 64 KiB: stored in Zarr
SMALL = {
    **{name: v for name, v in VALUES.items() if name not in ZARR_ONLY},
    "big_endian": (ARRAY, np.arange(6, dtype=">i4").reshape(2, 3)),
    "strided_view": (ARRAY, np.arange(20.0)[::3]),
    "numpy_scalars": (ANY, {"f": np.float32(1.5), "i": np.int64(-3), "b": np.bool_(True)}),
    "tuple": (ANY, (1, "two", 3.0)),
    "bytes": (ANY, b"\x00\x01binary\xff"),
    "key_order": (ANY, {"z": 1, "a": 2, "m": {"y": 1, "b": 2}}),
}


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def is_inline(store: CacheStore, key: str) -> bool:
    return store.has(key) and store.attempt_of(key) is None


@pytest.mark.parametrize("name", list(SMALL))
def test_small_values_are_one_file_and_round_trip(tmp_path, name):
    port_type, value = SMALL[name]
    store = CacheStore(str(tmp_path))
    meta = commit_one(store, "k", {"out": (port_type, value)})
    assert files_under(tmp_path) == ["refs/k.json"] and not (tmp_path / "objects").exists()
    assert is_inline(store, "k") and meta.size_bytes > 0
    back = store.load("k", "out", port_type)
    expected = ([*value] if isinstance(value, tuple) else
                {k: v.item() for k, v in value.items()} if name == "numpy_scalars" else value)
    assert_same(expected, back)
    if isinstance(back, np.ndarray):
        assert back.flags.writeable and back.flags.c_contiguous


def test_threshold_boundary(tmp_path):
    store = CacheStore(str(tmp_path))
    at_limit, over = np.zeros(LIMIT, np.uint8), np.zeros(LIMIT + 1, np.uint8)
    commit_one(store, "at", {"y": (ARRAY, at_limit)})
    commit_one(store, "over", {"y": (ARRAY, over)})
    assert is_inline(store, "at") and store.attempt_of("over") is not None
    assert_same(at_limit, store.load("at", "y", ARRAY))
    assert_same(over, store.load("over", "y", ARRAY))
    # the budget is per entry: the port that would overflow it goes to Zarr, the rest stay inline
    part = np.ones(LIMIT // 2 + 1, np.uint8)
    commit_one(store, "two", {"a": (ARRAY, part), "b": (ARRAY, part), "n": (SCALAR, 3)})
    ref = json.loads((tmp_path / "refs" / "two.json").read_bytes())
    assert sorted(ref["inline"]) == ["a", "n"] and ref["attempt"] is not None
    assert sorted(os.listdir(tmp_path / "objects" / "two" / ref["attempt"])) == ["b", "zarr.json"]
    for port in ("a", "b"):
        assert_same(part, store.load("two", port, ARRAY))
    assert store.load("two", "n", SCALAR) == 3


def test_threshold_is_configurable(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_mod, "INLINE_MAX_BYTES", 0)
    store = CacheStore(str(tmp_path))
    commit_one(store, "k", {"y": (SCALAR, 1)})
    assert store.attempt_of("k") is not None and store.load("k", "y", SCALAR) == 1


def test_mixed_entry_sizes_cli_and_delete(tmp_path, capsys):
    url = str(tmp_path)
    store = CacheStore(url)
    commit_one(store, "mix", {"frames": (ARRAY, BIG), "pose": (ARRAY, np.arange(4.0)),
                              "info": (ANY, {"fps": 25, "name": "clip"})}, node_id="mixer")
    commit_one(store, "tiny", {"y": (ARRAY, np.arange(4.0))}, node_id="tiny")
    ref = json.loads((tmp_path / "refs" / "mix.json").read_bytes())
    assert ref["format"] == 3 and sorted(ref["inline"]) == ["info", "pose"]
    attempt_bytes = sum(f.stat().st_size for f in (tmp_path / "objects" / "mix").rglob("*") if f.is_file())
    inline_bytes = len(json.dumps(ref["inline"], separators=(",", ":")))
    assert store.meta("mix").size_bytes == attempt_bytes + inline_bytes
    assert 0 < store.meta("tiny").size_bytes < (tmp_path / "refs" / "tiny.json").stat().st_size

    assert cache_cli.main(["cache", "info", "mix", "--cache", url]) == 0
    out = capsys.readouterr().out
    for text in ("20000 int64 (", "value: 4 float64 (inline, 32 B)", "value/fps = 25", 'value/name = "clip"'):
        assert text in out, text
    assert cache_cli.main(["cache", "info", "tiny", "--cache", url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stored"] == {"y": ["value: 4 float64 (inline, 32 B)"]}
    assert cache_cli.main(["cache", "ls", "--cache", url]) == 0
    assert "2 entries" in capsys.readouterr().out

    assert store.delete("mix") and store.delete("tiny")
    assert files_under(tmp_path) == [] and store.ls() == []


def test_types_with_their_own_zarr_layout_stay_in_zarr(tmp_path):
    class OwnLayout(ArrayType):  # overrides how values are saved, not how they are inlined
        def save(self, group, value):
            super().save(group, value[::-1])

        def load(self, group):
            return super().load(group)[::-1].copy()

    class OwnInline(OwnLayout):  # overrides both: may be inlined
        def to_inline(self, value, max_bytes):
            return super().to_inline(value * 2, max_bytes)

        def from_inline(self, doc):
            return super().from_inline(doc) // 2

    assert stores_inline(ARRAY) and not stores_inline(OwnLayout("A")) and stores_inline(OwnInline("B"))
    store = CacheStore(str(tmp_path))
    commit_one(store, "own", {"y": (OwnLayout("A"), np.arange(5))})
    commit_one(store, "both", {"y": (OwnInline("B"), np.arange(5))})
    assert store.attempt_of("own") is not None and is_inline(store, "both")
    assert_same(np.arange(5), store.load("own", "y", OwnLayout("A")))
    assert_same(np.arange(5), store.load("both", "y", OwnInline("B")))


def test_refs_of_earlier_formats_are_not_served_and_a_commit_replaces_them(tmp_path):
    """Refs written before digests were recorded cannot be verified: they are a miss (not
    damage: nothing is quarantined), a new commit replaces them and gc removes them."""
    store = CacheStore(str(tmp_path))
    commit_one(store, "old", {"y": (ARRAY, BIG)})
    ref_path = tmp_path / "refs" / "old.json"
    ref = json.loads(ref_path.read_bytes())
    for field in ("check", "digests"):
        del ref[field]
    for fmt in (1, 2):
        ref_path.write_text(json.dumps({**ref, "format": fmt}))  # as earlier versions wrote it
        assert not store.has("old") and store.ls() == [] and store.quarantined() == []
    commit_one(store, "old", {"y": (ARRAY, BIG + 1)})
    assert_same(BIG + 1, store.load("old", "y", ARRAY))
    ref_path.write_text(json.dumps({**ref, "format": 2}))
    assert store.sweep(older_than_s=3600).refs == 1 and not ref_path.exists()


def test_refs_that_fail_their_check_are_quarantined(tmp_path):
    store = CacheStore(str(tmp_path))
    commit_one(store, "bad", {"y": (ARRAY, np.arange(4.0))}, node_id="tiny")
    ref_path = tmp_path / "refs" / "bad.json"
    good = ref_path.read_bytes()
    for damaged in (good.replace(b'"node_id":"tiny"', b'"node_id":"tinY"'), good[:-20], b"{}", b"\x00" * 10):
        ref_path.write_bytes(damaged)
        assert store.ls() == []  # listing never moves anything
        found = store.lookup("bad")
        assert found.ref is None and "is damaged" in found.damage and not ref_path.exists()
        record = store.quarantined()[-1]
        assert record["key"] == "bad" and record["folder"] == found.moved_to
        assert (Path(found.moved_to) / "ref.json").read_bytes() == damaged
    assert len(store.quarantined()) == 4


@pytest.mark.parametrize("make_url", [lambda p: "memory://inline-test", lambda p: (p / "c").as_uri()],
                         ids=["memory", "file-url"])
def test_inline_entries_on_fsspec_urls(tmp_path, make_url):
    store = CacheStore(make_url(tmp_path))
    store.clear()
    value = {"pose": np.arange(6.0).reshape(2, 3), "n": 7}
    commit_one(store, "k", {"y": (ANY, value)})
    assert is_inline(store, "k") and [m.key for m in store.ls()] == ["k"]
    assert_same(value, store.load("k", "y", ANY))
    a, b = store.writer("j"), store.writer("j")  # a second committer keeps the first entry
    a.save("y", SCALAR, 1)
    b.save("y", SCALAR, 2)
    assert a.commit({"extra": {"who": "a"}}) == b.commit({"extra": {"who": "b"}})
    assert store.load("j", "y", SCALAR) == 1 and store.meta("j").extra == {"who": "a"}
    assert store.clear() == 2 and store.ls() == []


# -- crashes -------------------------------------------------------------------------------

STALLED_COMMIT = """
import os, sys, time
import graphcore.cache_files as cf
from graphcore.cache import CacheStore
from graphcore.types import ARRAY
import numpy as np
where = sys.argv[2]
real_open = open
if where == "mid-temp":  # the temp file is half written when the process dies
    class Stall:
        def __init__(self, f): self.f = f
        def __enter__(self): return self
        def __exit__(self, *a): return self.f.__exit__(*a)
        def write(self, data):
            self.f.write(data[: len(data) // 2]); self.f.flush()
            print("stalled", flush=True); time.sleep(60)
    cf.open = lambda path, mode="r", *a, **k: Stall(real_open(path, mode, *a, **k)) if path.startswith(os.path.join(sys.argv[1], "tmp", "")) else real_open(path, mode, *a, **k)
else:  # the temp file is complete, the ref not yet published
    def stall(src, dst):
        print("stalled", flush=True); time.sleep(60)
    cf.os.link = stall
store = CacheStore(sys.argv[1])
with store.writer("k") as w:
    w.save("y", ARRAY, np.arange(1000.0))
    w.commit({"node_id": "n"})
print("finished", flush=True)
"""


@pytest.mark.parametrize("where", ["mid-temp", "before-publish"])
def test_kill_9_during_an_inline_commit(tmp_path, where):
    proc = run_python(STALLED_COMMIT, str(tmp_path), where)
    try:
        assert proc.stdout.readline().strip() == "stalled", proc.stderr.read()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "refs").exists() or os.listdir(tmp_path / "refs") == []
    [leftover] = os.listdir(tmp_path / "tmp")  # only the temp file, named by its writer
    assert leftover.startswith(f"{writer_tag(proc.pid)}-")
    store = CacheStore(str(tmp_path))
    assert not store.has("k") and store.meta("k") is None and store.ls() == []
    commit_one(store, "k", {"y": (ARRAY, np.arange(1000.0))})  # the clean recompute
    assert_same(np.arange(1000.0), store.load("k", "y", ARRAY))
    assert store.sweep_dead_writers().temp_files == 1  # the next run sweeps it: its writer is gone
    assert os.listdir(tmp_path / "refs") == ["k.json"] and os.listdir(tmp_path / "tmp") == []


COMMIT_FOREVER = """
import sys, numpy as np
from graphcore.cache import CacheStore
from graphcore.types import ANY
store = CacheStore(sys.argv[1])
i = 0
while True:
    with store.writer(f"k{i}") as w:
        w.save("y", ANY, {"i": i, "a": np.full(1000, i, dtype=np.int32)})
        w.commit({"node_id": f"n{i}"})
    i += 1
"""


def test_kill_9_at_a_random_moment_of_many_inline_commits(tmp_path):
    """Whatever the moment of the kill, every ref present is complete and served correctly."""
    proc = run_python(COMMIT_FOREVER, str(tmp_path))
    refs = tmp_path / "refs"
    deadline = time.monotonic() + 60
    try:
        while len(os.listdir(refs) if refs.exists() else []) < 200:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the writer committed too slowly"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    store = CacheStore(str(tmp_path))
    entries = store.ls()
    committed = [n for n in os.listdir(refs) if not n.startswith(".")]
    assert len(entries) == len(committed) >= 200  # no torn ref anywhere
    for meta in entries:
        i = int(meta.key[1:])
        assert meta.node_id == f"n{i}"
        assert_same({"i": i, "a": np.full(1000, i, dtype=np.int32)}, store.load(meta.key, "y", ANY))


# -- concurrency ---------------------------------------------------------------------------

INLINE_RACER = """
import json, os, sys, time
from graphcore.cache import CacheStore
from graphcore.types import ARRAY
import numpy as np
store, go, keys = CacheStore(sys.argv[1]), sys.argv[2], sys.argv[3:]
while not os.path.exists(go):
    time.sleep(0.001)
report = {}
for key in keys:
    with store.writer(key) as w:
        w.save("y", ARRAY, np.arange(64.0) + int(key[4:]))
        report[key] = w.commit({"node_id": "racer", "extra": {"pid": os.getpid()}}).extra["pid"]
print(json.dumps(report))
"""


def test_two_processes_committing_the_same_inline_keys(tmp_path):
    cache_dir = str(tmp_path / "cache")
    keys = [f"race{i}" for i in range(100)]
    reports = race(INLINE_RACER, cache_dir, keys, str(tmp_path / "go"))
    store = CacheStore(cache_dir)
    assert sorted(m.key for m in store.ls()) == sorted(keys)
    assert sorted(os.listdir(Path(cache_dir) / "refs")) == sorted(f"{k}.json" for k in keys)  # no temp files left
    assert not (Path(cache_dir) / "objects").exists()
    for key in keys:
        assert reports[0][key] == reports[1][key] == store.meta(key).extra["pid"]  # both got the winner's entry
        assert_same(np.arange(64.0) + int(key[4:]), store.load(key, "y", ARRAY))


def test_threads_committing_the_same_inline_keys(tmp_path):
    store = CacheStore(str(tmp_path))

    def work(i):
        key = f"t{i % 4}"
        meta = commit_one(store, key, {"y": (ARRAY, np.arange(8) * (i % 4))}, node_id=f"n{i}")
        return key, meta.node_id, store.load(key, "y", ARRAY)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(64)))
    winners = {m.key: m.node_id for m in store.ls()}
    assert sorted(winners) == ["t0", "t1", "t2", "t3"]
    for key, node_id, back in results:
        assert node_id == winners[key]
        assert_same(np.arange(8) * int(key[1:]), back)
    assert sorted(os.listdir(tmp_path / "refs")) == [f"t{i}.json" for i in range(4)]
