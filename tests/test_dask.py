"""The dask executor on a LocalCluster of worker processes: same keys and outputs as local,
values exchanged through the cache, events from the workers, failures handled the same way."""
from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest
from engine_helpers import ROOT, TEST_NODES, Recorder, compile_file, engine_registry, write_workflow

from graphcore.cache import CacheStore
from graphcore.executors.dask import DaskExecutor
from graphcore.scheduler import run_graph

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c


class MeasuringDaskExecutor(DaskExecutor):
    """Records how many bytes each task sent back to the client."""

    def __init__(self, address):
        super().__init__(address)
        self.result_sizes = []

    def next_completed(self):
        node_id, outcome = super().next_completed()
        self.result_sizes.append(len(pickle.dumps(outcome)))
        return node_id, outcome


def run(path, cache, executor, **kw):
    rec = Recorder()
    report = run_graph(compile_file(path), cache=cache, executor=executor, listeners=[rec],
                       plugin_paths=[str(TEST_NODES)], **kw)
    return report, rec


def test_same_keys_and_outputs_as_local(tmp_path, cluster):
    wf = tmp_path / "signal.yaml"
    shutil.copy(ROOT / "workflows" / "examples" / "signal.yaml", wf)
    local, _ = run(wf, CacheStore(str(tmp_path / "local")), "local")
    shutil.rmtree(tmp_path / "out")
    executor = MeasuringDaskExecutor(cluster.scheduler_address)
    remote, rec = run(wf, CacheStore(str(tmp_path / "dask")), executor)
    assert remote.ok, remote.errors
    assert remote.keys == local.keys
    for node_id, bound in remote.graph.nodes.items():
        for port in bound.cls.outputs:
            a, b = local.load_output(node_id, port), remote.load_output(node_id, port)
            if isinstance(a, np.ndarray):
                np.testing.assert_array_equal(a, b)
            else:
                assert a == b
    assert (tmp_path / "out" / "smoothed.npy").is_file()
    workers = {e.data.get("worker") for e in rec.events if e.kind == "started"}
    assert workers <= set(cluster.scheduler_info["workers"]) and workers  # nodes ran on the workers
    assert max(executor.result_sizes) < 4096  # tasks return metadata, never arrays

    again, rec2 = run(wf, CacheStore(str(tmp_path / "dask")), cluster.scheduler_address)
    assert set(again.status.values()) == {"cached"} and rec2.nodes("started") == set()

    # the workers wrote the output files to their scratch; the entry holds them, the client
    # wrote them out, and writes them again when they go missing (no node runs)
    record = CacheStore(str(tmp_path / "dask")).meta(remote.keys["save_signal"]).files["path"]
    assert record["stored"] and record["path"] == str(tmp_path / "out" / "smoothed.npy")
    expected = (tmp_path / "out" / "smoothed.npy").read_bytes()
    (tmp_path / "out" / "smoothed.npy").unlink()
    third, rec3 = run(wf, CacheStore(str(tmp_path / "dask")), "local")
    assert set(third.status.values()) == {"cached"} and rec3.nodes("started") == set()
    assert (tmp_path / "out" / "smoothed.npy").read_bytes() == expected
    assert any("written again from its cache entry" in e.data.get("message", "") for e in rec3.events if e.kind == "log")

    # a stored output file is digested like every file of the entry: flipped bytes are never
    # written out; the entry is quarantined and the node runs again
    cache = CacheStore(str(tmp_path / "dask"))
    key = remote.keys["save_signal"]
    [part] = (tmp_path / "dask" / "objects" / key / cache.attempt_of(key) / "__files__" / "path" / "0").iterdir()
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0x5A
    part.write_bytes(bytes(data))
    (tmp_path / "out" / "smoothed.npy").unlink()
    fourth, rec4 = run(wf, cache, "local")
    assert fourth.ok and fourth.status["save_signal"] == "ran", fourth.status
    [event] = [e for e in rec4.events if e.kind == "quarantined"]
    assert event.node_id == "save_signal" and "__files__/path/0/0: content changed" in event.data["reason"], event.data
    assert (tmp_path / "out" / "smoothed.npy").read_bytes() == expected


def test_progress_and_logs_from_workers_reach_the_client(tmp_path, cluster):
    wf = write_workflow(tmp_path, """
    version: 1
    nodes:
      steps: {type: Steps, params: {steps: 4, delay: 0.15}}
      model: {type: LoadScaler, params: {factor: 2.0}}
      scaled: {type: ApplyScaler, inputs: {model: model.model, x: steps.y}}
    """)
    report, rec = run(wf, CacheStore(str(tmp_path / "cache")), cluster.scheduler_address)
    assert report.ok, report.errors
    progress = [(e.data["i"], e.data["n"]) for e in rec.events if e.kind == "progress" and e.node_id == "steps"]
    assert progress and progress[-1] == (4, 4)
    assert any(e.kind == "log" and e.node_id == "model" for e in rec.events)
    # the transient model was built inside the worker that needed it, and never cached
    assert report.status["model"] == "ran" and not report.cache.has(report.keys["model"])
    assert report.load_output("scaled", "y").tolist() == [0.0, 2.0, 4.0, 6.0]
    assert [e.kind for e in rec.events].count("run_finished") == 1 and rec.events[-1].kind == "run_finished"


def test_independent_branches_run_on_both_workers_at_once(tmp_path, cluster):
    wf = write_workflow(tmp_path, f"""
    version: 1
    nodes:
      a: {{type: Rendezvous, params: {{folder: {tmp_path / 'meet'}, parties: 2, value: 1}}}}
      b: {{type: Rendezvous, params: {{folder: {tmp_path / 'meet'}, parties: 2, value: 2}}}}
      s: {{type: Math, inputs: {{a: a.y, b: b.y}}}}
    """)
    report, _ = run(wf, CacheStore(str(tmp_path / "cache")), cluster.scheduler_address)
    assert report.ok, report.errors
    assert report.load_output("s", "result").tolist() == [3.0]


def test_failures_on_workers(tmp_path, cluster):
    wf = write_workflow(tmp_path, """
    version: 1
    nodes:
      src: {type: Range, params: {num: 3}}
      bad: {type: Fail, params: {kind: exception, message: "worker-side bug"}, inputs: {x: src.array}}
      after: {type: Stats, inputs: {x: bad.y}}
      fine: {type: Stats, inputs: {x: src.array}}
    """)
    report, rec = run(wf, CacheStore(str(tmp_path / "cache")), cluster.scheduler_address)
    assert report.status == {"src": "ran", "bad": "failed", "after": "skipped", "fine": "ran"}
    [err] = report.errors
    assert err.message == "ZeroDivisionError: worker-side bug" and "helper_that_breaks" in err.detail


def test_node_type_unknown_to_workers_is_a_clear_error(tmp_path, cluster):
    from graphcore import Node, Out
    from graphcore.loader import load_workflow
    from graphcore.validation import compile_workflow

    class OnlyHere(Node):
        outputs = {"y": Out("Array")}

        def run(self, ctx):
            return {"y": np.zeros(1)}

    registry = engine_registry()
    registry.register(OnlyHere, "test")
    wf = write_workflow(tmp_path, """
    version: 1
    nodes:
      here: {type: OnlyHere}
    """)
    report = run_graph(compile_workflow(load_workflow(wf), registry), cache=CacheStore(str(tmp_path / "c")),
                       executor=cluster.scheduler_address)
    [err] = report.errors
    assert err.node_id == "here" and "'OnlyHere' is not installed on this worker" in err.message


def test_unreachable_scheduler_is_a_clear_error(tmp_path, monkeypatch):
    import graphcore.executors.dask as dask_executor
    from graphcore.executors import ExecutorError

    monkeypatch.setattr(dask_executor, "CONNECT_TIMEOUT_S", 1)
    wf = write_workflow(tmp_path, "version: 1\nnodes:\n  x: {type: Range}\n")
    with pytest.raises(ExecutorError, match="cannot connect to the dask scheduler at tcp://127.0.0.1:1"):
        run_graph(compile_file(wf), cache=CacheStore(str(tmp_path / "c")), executor="dask://127.0.0.1:1")


PROBES = """
version: 1
nodes:
  a: {type: ThreadProbe, params: {seed: 0}}
  b: {type: ThreadProbe, params: {seed: 1}}
"""


def test_same_bytes_under_the_same_key_on_every_executor(tmp_path, cluster):
    """torch reductions differ in their last bits between 1 and 2 threads; the engine pins
    every node run to graphcore.threads.NODE_THREADS, so local (inline or --jobs 2, in a
    process whose torch has more threads) and dask workers give the same bytes."""
    import torch

    wf = write_workflow(tmp_path, PROBES)
    saved = torch.get_num_threads()
    torch.set_num_threads(2)  # what a local process has by default on 2 cores
    try:
        runs = {name: run(wf, CacheStore(str(tmp_path / name)), executor, jobs=jobs)[0]
                for name, executor, jobs in (("inline", "local", 1), ("threads", "local", 2),
                                             ("dask", cluster.scheduler_address, 1))}
    finally:
        torch.set_num_threads(saved)
    for report in runs.values():
        assert report.ok, report.errors
    assert runs["inline"].keys == runs["threads"].keys == runs["dask"].keys
    for node in ("a", "b"):
        sums = {name: r.load_output(node, "sums").tobytes() for name, r in runs.items()}
        assert len(set(sums.values())) == 1, sums
        settings = {name: r.load_output(node, "settings") for name, r in runs.items()}
        for seen in settings.values():
            assert seen["torch"] == "1" and seen["OMP_NUM_THREADS"] == "1", settings


def test_streamed_values_travel_as_cache_entries(tmp_path, cluster):
    """A streaming chain on the workers: each chunk goes to the shared cache as it is made, each
    consumer reads its input lazily from there; the same keys and bytes as a local run."""
    from test_stream import CHAIN

    wf = write_workflow(tmp_path, CHAIN)
    local, _ = run(wf, CacheStore(str(tmp_path / "local")), "local")
    executor = MeasuringDaskExecutor(cluster.scheduler_address)
    remote, _ = run(wf, CacheStore(str(tmp_path / "dask")), executor)
    assert remote.ok, remote.errors
    assert remote.keys == local.keys
    for node, port in (("ramp", "frames"), ("scaled", "y"), ("smooth", "y"), ("sums", "sums")):
        assert remote.load_output(node, port).tobytes() == local.load_output(node, port).tobytes()
    assert max(executor.result_sizes) < 4096  # tasks return metadata, never arrays
