"""The shipped HDTF workflow against a damaged cache (slow: each run of hdtf.yaml takes
30-60 s on 2 cores). Deleting a chunk of the generated frames used to make the next run
write an all-black video with exit 0."""
from __future__ import annotations

from pathlib import Path

import pytest
from engine_helpers import ROOT, graphrun

from graphcore.cache import CacheStore

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]


def hdtf_copy(folder: Path) -> Path:
    """workflows/hdtf.yaml in `folder`, reading the shipped assets, writing to folder/out."""
    text = (ROOT / "workflows" / "hdtf.yaml").read_text(encoding="utf-8")
    path = folder / "hdtf.yaml"
    path.write_text(text.replace("../assets/", f"{ROOT / 'assets'}/"), encoding="utf-8")
    return path


def test_a_deleted_chunk_of_the_frames_is_recomputed_and_the_video_unchanged(tmp_path):
    wf = hdtf_copy(tmp_path)
    cache_dir = tmp_path / "cache"
    first = graphrun(wf, "--cache", cache_dir, timeout=900)
    assert first.returncode == 0, first.stdout + first.stderr
    video = (tmp_path / "out" / "hdtf.mp4").read_bytes()

    cache = CacheStore(str(cache_dir))
    key = {m.node_id: m.key for m in cache.ls()}["video"]
    chunks = sorted((cache_dir / "objects" / key / cache.attempt_of(key) / "frames").rglob("c/*/0/0/0"))
    assert chunks, "the frames are stored in Zarr chunks"
    chunks[0].unlink()
    (tmp_path / "out" / "hdtf.mp4").unlink()  # so that `save` reads the frames again

    second = graphrun(wf, "--cache", cache_dir, timeout=900)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "video (FlowVideoGenerator): its cache entry is damaged" in second.stdout and "recomputing" in second.stdout
    assert (tmp_path / "out" / "hdtf.mp4").read_bytes() == video
    assert cache.verify(key) is None and [r["node_id"] for r in cache.quarantined()] == ["video"]


def stored_content(cache_dir: Path) -> dict[str, tuple]:
    """Node id -> (key, chunk digests by path, inline values, output files' sha256): the entry's
    data, without the per-attempt attributes (attempt id, write times) of its zarr.json files."""
    import json

    out = {}
    for ref_path in sorted((cache_dir / "refs").glob("*.json")):
        ref = json.loads(ref_path.read_text())
        chunks = {path: d for path, d in ref["digests"].items() if "/c/" in path and not path.startswith("__files__/")}
        files = {param: record["sha256"] for param, record in ref["files"].items()}  # (dask stores a copy too)
        out[ref["node_id"]] = (ref["key"], chunks, ref["inline"], files)
    return out


def test_local_jobs_and_dask_give_the_same_keys_and_bytes(tmp_path):
    wf = hdtf_copy(tmp_path)
    found = {}
    for name, args in (("local", ()), ("jobs2", ("--jobs", "2")), ("dask", ("--executor", "dask", "--jobs", "2"))):
        cache_dir = tmp_path / f"cache-{name}"
        proc = graphrun(wf, "--cache", cache_dir, *args, timeout=1500)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        video = (tmp_path / "out" / "hdtf.mp4").read_bytes()
        (tmp_path / "out").rename(tmp_path / f"out-{name}")
        found[name] = (stored_content(cache_dir), video)
    (local, video), *others = found.values()
    assert len(local) == 11
    for content, other_video in others:
        assert {n: c[0] for n, c in content.items()} == {n: c[0] for n, c in local.items()}  # the same keys
        for node in local:
            assert content[node] == local[node], node  # the same bytes under them
        assert other_video == video
