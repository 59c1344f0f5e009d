"""Verified reads: damage to any stored file of a committed entry (a chunk, a ref, an inline
value) never changes a workflow's output. The run moves the entry to quarantine, says so,
recomputes it and succeeds."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from engine_helpers import TEST_NODES, Recorder, compile_file, graphrun, write_workflow

import graphcore.arrayio as arrayio
from graphcore import cache_cli
from graphcore.cache import CacheStore, DamagedEntry
from graphcore.scheduler import run_graph
from graphcore.types import ARRAY

# `noise` is incompressible uint8 (stored raw), `time` compresses (Blosc), the stats are small
# (inline in their refs). Every entry is read by a dependent.
WORKFLOW = """
version: 1
nodes:
  noise: {type: BigRandom, params: {megabytes: 1, seed: 3}}
  nstats: {type: Stats, inputs: {x: noise.y}}
  time: {type: Range, params: {start: 0.0, stop: 50.0, num: 262144}}
  wave: {type: Function, params: {fn: sin}, inputs: {x: time.array}}
  save: {type: SaveArray, params: {path: out/wave.npy}, inputs: {array: wave.y}}
  report: {type: SaveJSON, params: {path: out/stats.json}, inputs: {data: nstats.metrics}}
"""
OUTPUTS = ("out/wave.npy", "out/stats.json")


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(arrayio, "TARGET_CHUNK_BYTES", 256 * 1024)  # several chunks per array


def run(wf: Path, cache: CacheStore):
    rec = Recorder()
    report = run_graph(compile_file(wf), cache=cache, listeners=[rec])
    assert report.ok, report.errors
    return report, rec


def outputs(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in OUTPUTS}


def entry_files(cache: CacheStore, key: str, port: str) -> list[Path]:
    """The chunk files of one output of an entry."""
    folder = Path(cache.root) / "objects" / key / cache.attempt_of(key) / port
    return sorted(p for p in folder.rglob("*") if p.is_file() and "/c/" in p.as_posix())


def flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at % len(data)] ^= 0x5A
    path.write_bytes(bytes(data))


def damage_chunk(cache, key, port, how):
    chunks = entry_files(cache, key, port)
    assert len(chunks) >= 2, chunks
    target = chunks[1]
    if how == "delete":
        target.unlink()
    elif how == "flip":
        flip(target, target.stat().st_size // 2)
    elif how == "truncate":
        os.truncate(target, target.stat().st_size // 3)
    return target


@pytest.fixture()
def baseline(tmp_path):
    """The workflow run once into a cache: (workflow, cache, report, output bytes)."""
    wf = write_workflow(tmp_path, WORKFLOW)
    cache = CacheStore(str(tmp_path / "cache"))
    report, _ = run(wf, cache)
    root = cache.open_outputs(report.keys["noise"])
    assert not root["y/value"].compressors and root["y/value"].nchunks >= 2  # raw chunks
    assert cache.open_outputs(report.keys["time"])["array/value"].compressors  # Blosc chunks
    assert cache.attempt_of(report.keys["nstats"]) is None  # all inline
    return wf, cache, report, outputs(tmp_path)


def rerun_reading(wf, cache, report, damaged: str, readers: list[str]):
    """Make `readers` run again (their entries and output files gone), so they read the
    damaged entry of `damaged`; return the new report and events."""
    for node in readers:
        cache.delete(report.keys[node])
    for name in OUTPUTS:
        (wf.parent / name).unlink()
    return run(wf, cache)


def assert_recomputed(cache, report, rec, node_id, reason_part):
    assert report.status[node_id] == "ran", report.status
    [event] = [e for e in rec.events if e.kind == "quarantined"]
    assert event.node_id == node_id and reason_part in event.data["reason"], event.data
    assert event.data["key"] == report.keys[node_id] and os.path.isdir(event.data["moved_to"])
    [record] = cache.quarantined()
    assert record["node_id"] == node_id and record["key"] == report.keys[node_id] and reason_part in record["reason"]
    assert cache.verify(report.keys[node_id]) is None  # the recomputed entry is sound


@pytest.mark.parametrize("how, reason", [("delete", "missing"), ("flip", "content changed"),
                                         ("truncate", "content changed")])
def test_damaged_raw_chunk(baseline, how, reason):
    wf, cache, report, expected = baseline
    damage_chunk(cache, report.keys["noise"], "y", how)
    again, rec = rerun_reading(wf, cache, report, "noise", ["nstats"])
    assert_recomputed(cache, again, rec, "noise", reason)
    assert again.status["nstats"] == "ran" and outputs(wf.parent) == expected


@pytest.mark.parametrize("how", ["flip", "truncate", "delete"])
def test_damaged_blosc_chunk(baseline, how):
    wf, cache, report, expected = baseline
    damage_chunk(cache, report.keys["time"], "array", how)
    again, rec = rerun_reading(wf, cache, report, "time", ["wave"])
    assert_recomputed(cache, again, rec, "time", "missing" if how == "delete" else "content changed")
    assert outputs(wf.parent) == expected


def test_changed_inline_value_in_a_ref(baseline):
    wf, cache, report, expected = baseline
    ref_path = Path(cache.root) / "refs" / f"{report.keys['nstats']}.json"
    ref = ref_path.read_bytes()
    count = json.loads(ref)["inline"]["metrics"]  # {"d": [[name, value], ...]}
    assert ["count", 2**20] in count["d"]
    ref_path.write_bytes(ref.replace(b'["count",1048576]', b'["count",1048577]'))  # still valid JSON
    again, rec = rerun_reading(wf, cache, report, "nstats", ["report"])
    assert_recomputed(cache, again, rec, "nstats", "does not match its digest")
    assert outputs(wf.parent) == expected


def test_changed_zarr_metadata_is_caught(baseline):
    """Attributes live in zarr.json files: they are digested like chunks."""
    wf, cache, report, expected = baseline
    meta = Path(cache.root) / "objects" / report.keys["noise"] / cache.attempt_of(report.keys["noise"]) / "y" / "value" / "zarr.json"
    doc = json.loads(meta.read_text())
    assert doc["shape"] == [4, 512, 512]
    meta.write_text(json.dumps({**doc, "shape": [4, 512, 511]}))
    again, rec = rerun_reading(wf, cache, report, "noise", ["nstats"])
    assert_recomputed(cache, again, rec, "noise", "y/value/zarr.json: content changed")
    assert outputs(wf.parent) == expected


def test_data_folder_gone_is_found_before_running(baseline):
    wf, cache, report, expected = baseline
    shutil.rmtree(Path(cache.root) / "objects" / report.keys["time"])
    again, rec = rerun_reading(wf, cache, report, "time", [])
    assert again.status["time"] == "ran" and again.status["wave"] == "cached"
    [event] = [e for e in rec.events if e.kind == "quarantined"]
    assert event.node_id == "time" and "is missing" in event.data["reason"]
    kinds = [e.kind for e in rec.events if e.node_id == "time"]
    assert kinds.index("quarantined") < kinds.index("queued") and "cached" not in kinds
    assert outputs(wf.parent) == expected


def test_damage_in_an_entry_nobody_reads_is_left_for_verify(baseline, capsys):
    """A fully cached run reads nothing: it does not notice; `cache verify` does, and
    `--repair` moves the entry aside so the next run that needs it recomputes it."""
    wf, cache, report, expected = baseline
    damage_chunk(cache, report.keys["noise"], "y", "flip")
    again, _ = run(wf, cache)
    assert set(again.status.values()) == {"cached"} and outputs(wf.parent) == expected

    assert cache_cli.main(["cache", "verify", "--cache", cache.url]) == 1
    out = capsys.readouterr().out
    assert "1 damaged" in out and report.keys["noise"][:12] in out and "noise" in out and "content changed" in out
    assert cache.has(report.keys["noise"])  # nothing moved without --repair
    assert cache_cli.main(["cache", "verify", "--repair", "--cache", cache.url]) == 0
    out = capsys.readouterr().out
    assert "moved 1 damaged entry to quarantine" in out
    assert not cache.has(report.keys["noise"]) and cache.quarantined()[0]["node_id"] == "noise"
    assert cache_cli.main(["cache", "verify", "--cache", cache.url]) == 0
    assert "0 damaged" in capsys.readouterr().out
    third, _ = run(wf, cache)  # the entry moved aside is made again; nothing else runs
    assert third.status == {**{n: "cached" for n in third.status}, "noise": "ran"}, third.status
    assert cache.verify(report.keys["noise"]) is None and outputs(wf.parent) == expected


def test_gc_frees_quarantined_data_and_keeps_the_record(baseline, capsys):
    wf, cache, report, _ = baseline
    damage_chunk(cache, report.keys["noise"], "y", "flip")
    with pytest.raises(DamagedEntry, match=r"\(noise\) is damaged: output 'y': y/value/c/1/0/0: content changed"):
        cache.load(report.keys["noise"], "y", ARRAY)
    [record] = cache.quarantined()
    assert os.path.isdir(os.path.join(record["folder"], "data"))
    assert cache_cli.main(["cache", "gc", "--max-size", "1G", "--cache", cache.url]) == 0
    assert "freed 1 quarantined entries" in capsys.readouterr().out
    assert not os.path.exists(os.path.join(record["folder"], "data"))
    assert [r["key"] for r in cache.quarantined()] == [report.keys["noise"]]


def test_the_cli_says_it_recomputed(tmp_path):
    wf = write_workflow(tmp_path, WORKFLOW.replace("megabytes: 1", "megabytes: 2"))
    cache_dir = tmp_path / "cache"
    first = graphrun(wf, "--cache", cache_dir, "--plugins", TEST_NODES)
    assert first.returncode == 0, first.stdout + first.stderr
    expected = outputs(tmp_path)
    cache = CacheStore(str(cache_dir))
    key = {m.node_id: m.key for m in cache.ls()}
    [chunk] = entry_files(cache, key["noise"], "y")  # 2 MB: one chunk at the default size
    chunk.unlink()
    cache.delete(key["nstats"])
    for name in OUTPUTS:
        (tmp_path / name).unlink()
    second = graphrun(wf, "--cache", cache_dir, "--plugins", TEST_NODES)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "noise (BigRandom): its cache entry is damaged (output 'y': y/value/c/0/0/0: missing)" in second.stdout
    assert "recomputing" in second.stdout and "done:" in second.stdout and second.stderr == ""
    assert outputs(tmp_path) == expected
