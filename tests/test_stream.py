"""Streamed values (graphcore/stream.py): chunks written to the cache as they come, consumers
reading lazy verified views, whole-array nodes unchanged, crashes leaving nothing served."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from engine_helpers import TEST_NODES, Recorder, compile_file, graphrun, write_workflow
from engine_nodes import ramp_frames
from pydantic import BaseModel

import graphcore.arrayio as arrayio
from graphcore import In, Node, Out
from graphcore.cache import CacheStore
from graphcore.node_check import NodeDefinitionError, check_node
from graphcore.scheduler import run_graph
from graphcore.stream import Chunks

N, H, W = 60, 8, 8
CHAIN = f"""
version: 1
nodes:
  ramp: {{type: Ramp, params: {{n: {N}, height: {H}, width: {W}, chunk: 7}}}}
  scaled: {{type: StreamScale, params: {{factor: 3.0}}, inputs: {{x: ramp.frames}}}}
  smooth: {{type: MovingSum, params: {{radius: 2, rows: 9}}, inputs: {{x: scaled.y}}}}
  sums: {{type: FrameSums, inputs: {{x: smooth.y}}}}
  stats: {{type: Stats, inputs: {{x: smooth.y}}}}
  save: {{type: SaveArray, params: {{path: out/smooth.npy}}, inputs: {{array: smooth.y}}}}
"""


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(arrayio, "TARGET_CHUNK_BYTES", 4 * H * W * 4)  # 4 frames a storage chunk


def expected_smooth(radius: int = 2) -> np.ndarray:
    x = ramp_frames(0, N, H, W) * np.float32(3.0)
    csum = np.concatenate([np.zeros_like(x[:1]), np.cumsum(x, axis=0)])
    idx = np.arange(N)
    return csum[np.minimum(idx + radius + 1, N)] - csum[np.maximum(idx - radius, 0)]


def run(wf: Path, cache: CacheStore, **kw):
    rec = Recorder()
    report = run_graph(compile_file(wf), cache=cache, listeners=[rec], **kw)
    return report, rec


def test_chain_streams_through_the_cache_and_matches_the_whole_array_path(tmp_path):
    wf = write_workflow(tmp_path, CHAIN)
    streamed, _ = run(wf, CacheStore(tmp_path / "c1"))
    assert streamed.ok, streamed.errors
    smooth = np.load(tmp_path / "out/smooth.npy")
    np.testing.assert_allclose(smooth, expected_smooth(), rtol=1e-6)
    assert streamed.load_output("ramp", "count") == N
    np.testing.assert_array_equal(streamed.load_output("ramp", "frames"), ramp_frames(0, N, H, W))
    # the streamed entry is chunked along time as it was written: 4 frames a chunk
    group = streamed.cache.open_outputs(streamed.keys["ramp"])
    assert group["frames/value"].chunks[0] == 4 and group["frames/value"].shape == (N, H, W)

    whole, _ = run(wf, CacheStore(tmp_path / "c2"), stream=False)
    assert whole.ok, whole.errors
    assert whole.keys == streamed.keys  # streaming is not part of what a value is
    for node, port in (("smooth", "y"), ("scaled", "y"), ("sums", "sums")):
        a, b = streamed.load_output(node, port), whole.load_output(node, port)
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), node
    assert streamed.load_output("stats", "metrics") == whole.load_output("stats", "metrics")


def test_a_streaming_consumer_gets_a_lazy_view_backed_by_the_entry(tmp_path):
    wf = write_workflow(tmp_path, CHAIN)
    report, _ = run(wf, CacheStore(tmp_path / "c"))
    view = report.cache.open_chunks(report.keys["scaled"], "y", compile_file(wf).nodes["scaled"].cls.outputs["y"].port_type)
    assert isinstance(view, Chunks) and view.shape == (N, H, W) and view.chunk_rows == 4
    x = ramp_frames(0, N, H, W) * np.float32(3.0)
    np.testing.assert_array_equal(view[5:18], x[5:18])
    np.testing.assert_array_equal(view[[0, 13, 59, 14]], x[[0, 13, 59, 14]])
    np.testing.assert_array_equal(view[-1], x[-1])
    np.testing.assert_array_equal(np.concatenate(list(view.chunks(11))), x)


def test_unaligned_reads_read_each_stored_chunk_once():
    """Stepping through a view in steps that do not match its stored chunks (two inputs
    stored with different chunk lengths) reads each stored chunk once."""
    x = np.arange(50 * 2, dtype=np.float32).reshape(50, 2)
    reads = []

    def read(a, b):
        reads.append((a, b))
        return x[a:b].copy()

    view = Chunks(x.shape, x.dtype, 7, read, hold_last=True)
    got = [view.rows(a, a + 5) for a in range(0, 50, 5)]
    np.testing.assert_array_equal(np.concatenate(got), x)
    assert reads == [(a, min(50, a + 7)) for a in range(0, 50, 7)]
    np.testing.assert_array_equal(view.rows(14, 28), x[14:28])  # aligned: read directly
    assert reads[-1] == (14, 28)


def test_chunks_windows_cover_each_row_once_with_context():
    x = np.arange(23 * 2, dtype=np.int32).reshape(23, 2)
    view = Chunks.of(x)
    windows = list(view.windows(5, before=2, after=3))
    assert [w.rows for w in windows] == [slice(s, min(23, s + 5)) for s in range(0, 23, 5)]
    for w in windows:
        lo = max(0, w.rows.start - 2)
        np.testing.assert_array_equal(w.data, x[lo:min(23, w.rows.stop + 3)])
        np.testing.assert_array_equal(w.data[w.core], x[w.rows])
    np.testing.assert_array_equal(np.asarray(view), x)
    np.testing.assert_array_equal(view[3:20:4, 1], x[3:20:4, 1])


def test_a_node_failing_mid_stream_leaves_nothing_served(tmp_path):
    wf = write_workflow(tmp_path, CHAIN.replace("chunk: 7}", "chunk: 7, fail_after: 5}"))
    cache = CacheStore(tmp_path / "c")
    report, _ = run(wf, cache)
    assert not report.ok and report.status["ramp"] == "failed" and "failing after 5 chunks" in report.errors[0].message
    assert not cache.has(report.keys["ramp"])
    objects = tmp_path / "c" / "objects"
    assert not objects.exists() or not any(objects.iterdir())  # the attempt's chunks are deleted
    assert not list((tmp_path / "c" / "pending").glob("*"))


def test_a_cancelled_run_stops_a_streaming_node_between_chunks(tmp_path):
    import threading

    wf = write_workflow(tmp_path, CHAIN.replace("chunk: 7}", "chunk: 7, log: true}"))
    cache = CacheStore(tmp_path / "c")
    cancel = threading.Event()
    rec = Recorder()

    def listen(event):
        rec(event)
        if event.kind == "log" and event.data.get("message") == "chunk 2 done":
            cancel.set()

    report = run_graph(compile_file(wf), cache=cache, listeners=[listen], cancel=cancel)
    assert report.status["ramp"] == "cancelled"
    logged = [e.data["message"] for e in rec.events if e.kind == "log" and e.node_id == "ramp"]
    assert logged == ["chunk 0 done", "chunk 1 done", "chunk 2 done"]  # the next step did not run
    assert not cache.has(report.keys["ramp"]) and not any((tmp_path / "c" / "objects").glob("*/*"))


def test_a_damaged_chunk_read_lazily_reruns_its_producer(tmp_path):
    wf = write_workflow(tmp_path, CHAIN)
    cache = CacheStore(tmp_path / "c")
    first, _ = run(wf, cache)
    assert first.ok
    key = first.keys["scaled"]
    chunk = sorted((tmp_path / "c/objects" / key / cache.attempt_of(key) / "y").rglob("c/*/*/*"))[7]
    data = bytearray(chunk.read_bytes())
    data[5] ^= 0x33
    chunk.write_bytes(bytes(data))
    # a new consumer of the damaged entry (a different radius), reading it chunk by chunk
    wf2 = write_workflow(tmp_path, CHAIN.replace("radius: 2", "radius: 1"), "wf2.yaml")
    second, rec = run(wf2, cache)
    assert second.ok, second.errors
    assert "scaled" in second.ran() and "ramp" not in second.ran()
    assert rec.nodes("quarantined") == {"scaled"}
    np.testing.assert_allclose(second.load_output("smooth", "y"), expected_smooth(1), rtol=1e-6)


def test_streamed_values_not_kept_are_dropped_after_use_and_not_rerun(tmp_path):
    wf = write_workflow(tmp_path, CHAIN)
    cache = CacheStore(tmp_path / "c")
    first, _ = run(wf, cache, keep_streamed=False)
    assert first.ok, first.errors
    np.testing.assert_allclose(np.load(tmp_path / "out/smooth.npy"), expected_smooth(), rtol=1e-6)
    # the streaming intermediates are gone once their readers committed; the rest is kept
    assert [n for n in ("ramp", "scaled", "smooth") if cache.has(first.keys[n])] == []
    assert all(cache.has(first.keys[n]) for n in ("sums", "stats", "save"))

    again, rec = run(wf, cache, keep_streamed=False)  # every reader is cached: nothing runs
    assert again.ok and again.ran() == set() and set(again.status.values()) == {"cached"}
    assert {e.node_id for e in rec.events if e.kind == "log" and "not needed" in e.data["message"]} == {
        "ramp", "scaled", "smooth"}

    (tmp_path / "out/smooth.npy").unlink()  # a reader must run again: so must what it reads
    third, _ = run(wf, cache, keep_streamed=False)
    assert third.ok and third.ran() == {"ramp", "scaled", "smooth", "save"}
    np.testing.assert_allclose(np.load(tmp_path / "out/smooth.npy"), expected_smooth(), rtol=1e-6)

    kept, _ = run(wf, cache)  # keeping them (the default) writes them again, readers stay cached
    assert kept.ok and kept.ran() == {"ramp", "scaled", "smooth"}
    assert all(cache.has(kept.keys[n]) for n in ("ramp", "scaled", "smooth"))


PAIR = """
version: 1
nodes:
  ramp: {type: Ramp, params: {n: 30, height: 4, width: 4, chunk: 7}}
  pair: {type: StreamPair, inputs: {x: ramp.frames}}
  sums: {type: FrameSums, inputs: {x: pair.a}}
"""


def test_a_streamed_output_nothing_reads_is_not_written_and_a_partial_entry_is_never_served(tmp_path, monkeypatch):
    from graphcore.scheduler import Scheduler

    wf = write_workflow(tmp_path, PAIR)
    cache = CacheStore(tmp_path / "c")
    # as if the run stopped between its reader's commit and the deletion: the entry stays
    monkeypatch.setattr(Scheduler, "drop_if_used", lambda self, node_id: None)
    first, _ = run(wf, cache, keep_streamed=False)
    assert first.ok, first.errors
    key = first.keys["pair"]
    assert sorted(cache.open_outputs(key).group_keys()) == ["a"]  # `b` was never written
    x = ramp_frames(0, 30, 4, 4)
    np.testing.assert_allclose(first.load_output("sums", "sums"), (2 * x).reshape(30, -1).sum(axis=1), rtol=1e-6)

    wf2 = write_workflow(tmp_path, PAIR + "  bsums: {type: FrameSums, inputs: {x: pair.b}}\n", "wf2.yaml")
    second, rec = run(wf2, cache)  # needs `b`: the entry without it is not a hit
    assert second.ok, second.errors
    assert second.ran() == {"pair", "bsums"}
    assert any("lacks output(s) ['b']" in e.data["message"] for e in rec.events if e.kind == "log")
    np.testing.assert_allclose(second.load_output("bsums", "sums"), (x + 1).reshape(30, -1).sum(axis=1), rtol=1e-6)
    assert sorted(cache.open_outputs(key).group_keys()) == ["a", "b"]


def test_describe_says_which_nodes_stream(tmp_path):
    streaming = graphrun("nodes", "describe", "StreamScale", "--plugins", TEST_NODES)
    assert streaming.returncode == 0, streaming.stderr
    assert "x: Array (streamed)" in streaming.stdout and "y: Array (streamed)" in streaming.stdout
    assert "streams yes: reads x chunk by chunk; writes y chunk by chunk" in " ".join(streaming.stdout.split())
    whole = graphrun("nodes", "describe", "Stats", "--json")
    assert json.loads(whole.stdout)["streams"] == {"inputs": [], "outputs": []}


def test_only_array_types_can_stream():
    class DictStream(Node):
        outputs = {"d": Out("Dict", stream=True)}

        class Params(BaseModel):
            pass

        def run(self, ctx):
            yield {"d": {}}

    with pytest.raises(NodeDefinitionError, match=r"output 'd': declared stream=True, but port type 'Dict' cannot"):
        check_node(DictStream)

    class ArrayIn(Node):
        inputs = {"x": In("Array", stream=True)}
        outputs = {"y": Out("Array")}

        def run(self, ctx, x):
            return {"y": x.read()}

    check_node(ArrayIn)


def test_appender_reads_back_exactly_what_was_appended(tmp_path):
    group = zarr.open_group(str(tmp_path / "z"), mode="w")
    writer = arrayio.ArrayAppender(group, "value")
    x = np.random.default_rng(0).integers(0, 255, size=(37, 3, 5), dtype=np.uint8)
    for a, b in ((0, 1), (1, 9), (9, 9), (9, 30), (30, 37)):
        writer.append(x[a:b])
    z = writer.close()
    assert z.shape == x.shape
    np.testing.assert_array_equal(arrayio.read_array(z), x)
    for a, b in ((0, 37), (3, 4), (4, 8), (5, 33), (36, 37)):
        np.testing.assert_array_equal(arrayio.read_rows(z, a, b), x[a:b])
    empty = arrayio.ArrayAppender(group, "empty")
    empty.append(x[:0])
    assert empty.close().shape == (0, 3, 5)
    other = arrayio.ArrayAppender(group, "other")
    other.append(x[:2])
    with pytest.raises(ValueError, match="does not continue"):
        other.append(x[:2, :2])


def test_the_documented_streaming_node_runs(tmp_path):
    """docs/custom-nodes.md's Brighten example, checked and run as written."""
    import re

    from engine_helpers import ROOT, ctx_for
    from pydantic import Field

    from graphcore import RunContext
    from graphcore.stream import run_whole

    text = (ROOT / "docs" / "custom-nodes.md").read_text()
    code = re.search(r"```python\n(class Brighten\(Node\):.*?)```", text, re.S).group(1)
    scope = {"Node": Node, "In": In, "Out": Out, "BaseModel": BaseModel, "Field": Field, "RunContext": RunContext, "np": np}
    exec(code, scope)
    brighten = scope["Brighten"]
    import nodes.types  # noqa: F401  (registers Frames)

    check_node(brighten)
    frames = np.random.default_rng(1).integers(0, 256, size=(9, 4, 5, 3), dtype=np.uint8)
    out = run_whole(brighten({"amount": 20}), ctx_for(tmp_path), frames=frames)
    expected = np.minimum(frames.astype(np.int16) + 20, 255).astype(np.uint8)
    np.testing.assert_array_equal(out["frames"], expected)
    assert out["mean"] == pytest.approx(expected.mean())
