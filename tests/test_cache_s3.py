"""The cache on object storage: a real S3-compatible server (moto's, on 127.0.0.1), reached
through s3fs with storage options from the command line or the config file; credentials
never in a pickle; an unreachable store is one line and exit code 3."""
from __future__ import annotations

import os
import pickle
import time
import uuid

import numpy as np
import pytest
from engine_helpers import graphrun, subprocess_env, write_workflow
from s3_helpers import CREDENTIALS, free_port, make_bucket, moto_server

from graphcore.cache import CacheStore, DamagedEntry
from graphcore.types import ARRAY, METRICS

pytest.importorskip("s3fs")
pytest.importorskip("moto")

WORKFLOW = """
version: 1
nodes:
  time: {type: Range, params: {num: 20000}}
  wave: {type: Function, params: {fn: sin}, inputs: {x: time.array}}
  stats: {type: Stats, inputs: {x: wave.y}}
"""


@pytest.fixture(scope="module")
def endpoint():
    with moto_server() as url:
        yield url


@pytest.fixture()
def bucket(endpoint, monkeypatch):
    for k, v in CREDENTIALS.items():
        monkeypatch.setenv(k, v)
    name = f"cache-{uuid.uuid4().hex[:12]}"
    make_bucket(endpoint, name)
    return name


def test_entries_round_trip_and_damage_is_quarantined_on_s3(endpoint, bucket):
    store = CacheStore(f"s3://{bucket}/talkgraph", {"endpoint_url": endpoint})
    frames = np.random.default_rng(0).integers(0, 256, (6, 128, 128, 3), dtype=np.uint8)
    with store.writer("k1") as w:
        w.save("frames", ARRAY, frames)
        w.save("m", METRICS, {"a": 1.0})
        w.commit({"node_id": "render"})
    assert np.array_equal(store.load("k1", "frames", ARRAY), frames) and store.load("k1", "m", METRICS) == {"a": 1.0}
    assert store.verify("k1") is None and [m.key for m in store.ls()] == ["k1"]

    fs = store._fs
    [chunk] = [p for p in fs.find(f"{bucket}/talkgraph/objects/k1") if "/frames/value/c/" in p]
    data = bytearray(fs.cat_file(chunk))
    data[100] ^= 0xFF
    fs.pipe_file(chunk, bytes(data))
    assert "content changed" in store.verify("k1")
    with pytest.raises(DamagedEntry, match=r"\(render\) is damaged: output 'frames'"):
        store.load("k1", "frames", ARRAY)
    assert not store.has("k1")
    [record] = store.quarantined()
    assert record["node_id"] == "render" and fs.exists(f"{record['folder']}/data/frames/value/zarr.json")


def test_credentials_never_travel_in_a_pickle(endpoint, bucket, tmp_path, monkeypatch):
    options = {"endpoint_url": endpoint, "key": CREDENTIALS["AWS_ACCESS_KEY_ID"],
               "secret": CREDENTIALS["AWS_SECRET_ACCESS_KEY"], "client_kwargs": {"region_name": "us-east-1"}}
    store = CacheStore(f"s3://{bucket}/c", options)
    with store.writer("k") as w:
        w.save("y", ARRAY, np.arange(10))
        w.commit({"node_id": "n"})
    sent = pickle.dumps(store)
    for secret in (CREDENTIALS["AWS_ACCESS_KEY_ID"], CREDENTIALS["AWS_SECRET_ACCESS_KEY"]):
        assert secret.encode() not in sent
    assert endpoint.encode() in sent and b"us-east-1" in sent  # what is not secret travels

    # the receiving process (a worker) has its own credentials, here in its config file
    for k in CREDENTIALS:
        monkeypatch.delenv(k, raising=False)
    config = tmp_path / "worker.toml"
    config.write_text(f'[cache.storage_options]\nkey = "{CREDENTIALS["AWS_ACCESS_KEY_ID"]}"\n'
                      f'secret = "{CREDENTIALS["AWS_SECRET_ACCESS_KEY"]}"\n')
    monkeypatch.setenv("GRAPHRUN_CONFIG", str(config))
    there = pickle.loads(sent)
    assert there.storage_options["key"] == CREDENTIALS["AWS_ACCESS_KEY_ID"] and there.storage_options["endpoint_url"] == endpoint
    assert there.load("k", "y", ARRAY).tolist() == list(range(10))


def test_graphrun_with_cache_options_and_with_a_config_file(endpoint, bucket, tmp_path):
    wf = write_workflow(tmp_path, WORKFLOW)
    url = f"s3://{bucket}/runs"
    env = subprocess_env(**CREDENTIALS)
    first = graphrun(wf, "--cache", url, "--cache-option", f"endpoint_url={endpoint}", env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "3 ran" in first.stdout and url in first.stdout

    config = tmp_path / "config.toml"
    config.write_text(f'[cache]\nurl = "{url}"\n[cache.storage_options]\nendpoint_url = "{endpoint}"\n')
    env = subprocess_env(**CREDENTIALS, GRAPHRUN_CONFIG=str(config))
    again = graphrun(wf, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "3 cached" in again.stdout and url in again.stdout
    listed = graphrun("cache", "ls", env=env)
    assert listed.returncode == 0 and "3 entries" in listed.stdout, listed.stdout + listed.stderr
    verified = graphrun("cache", "verify", env=env)
    assert verified.returncode == 0 and "verified 3 entries" in verified.stdout and "0 damaged" in verified.stdout


def test_an_unreachable_store_is_one_line_and_exit_3(tmp_path):
    wf = write_workflow(tmp_path, WORKFLOW)
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = subprocess_env(**CREDENTIALS)
    for args in ((wf,), ("cache", "ls")):
        start = time.monotonic()
        proc = graphrun(*args, "--cache", "s3://talkgraph/cache", "--cache-option", f"endpoint_url={dead}", env=env)
        took = time.monotonic() - start
        assert proc.returncode == 3, proc.stdout + proc.stderr
        [line] = proc.stderr.strip().splitlines()
        assert line.startswith("error: cannot reach the cache s3://talkgraph/cache:") and dead.split("//")[1] in line
        assert "Traceback" not in proc.stdout + proc.stderr and took < 90, took
    assert not os.path.exists(tmp_path / "out")
