"""The scheduler with the local executor: what runs, what is cached, what a failure does."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from engine_helpers import Recorder, compile_file, write_workflow

from graphcore.cache import CacheStore
from graphcore.events import JsonLinesSink, read_events
from graphcore.scheduler import run_graph

DIAMOND = """
version: 1
nodes:
  src: {type: Range, params: {start: 0, stop: 1, num: 11}}
  left: {type: Math, params: {op: mul, b: 2.0}, inputs: {a: src.array}}
  right: {type: Math, params: {op: add, b: 1.0}, inputs: {a: src.array}}
  join: {type: Math, params: {op: add}, inputs: {a: left.result, b: right.result}}
  stats: {type: Stats, inputs: {x: join.result}}
"""


@pytest.fixture()
def cache(tmp_path):
    return CacheStore(str(tmp_path / "cache"))


def run(path, cache, **kw):
    rec = Recorder()
    report = run_graph(compile_file(path), cache=cache, listeners=[rec], **kw)
    return report, rec


@pytest.mark.parametrize("jobs", [1, 3])
def test_diamond_runs_once_then_comes_from_the_cache(tmp_path, cache, jobs):
    wf = write_workflow(tmp_path, DIAMOND)
    report, rec = run(wf, cache, jobs=jobs)
    assert report.ok and set(report.status.values()) == {"ran"}
    x = np.linspace(0, 1, 11)
    np.testing.assert_allclose(report.load_output("join", "result"), 3 * x + 1)
    assert report.load_output("stats", "metrics")["count"] == 11
    # dependency order: every node started after its upstream finished
    finished_at = {e.node_id: i for i, e in enumerate(rec.events) if e.kind == "finished"}
    started_at = {e.node_id: i for i, e in enumerate(rec.events) if e.kind == "started"}
    for node, ups in {"left": ["src"], "right": ["src"], "join": ["left", "right"], "stats": ["join"]}.items():
        assert all(finished_at[u] < started_at[node] for u in ups)

    again, rec2 = run(wf, cache, jobs=jobs)
    assert again.ok and set(again.status.values()) == {"cached"}
    assert rec2.nodes("started") == set() and rec2.nodes("cached") == set(again.status)
    assert again.keys == report.keys


def test_changing_one_parameter_reruns_only_that_node_and_its_descendants(tmp_path, cache):
    wf = write_workflow(tmp_path, DIAMOND)
    run(wf, cache)
    changed = write_workflow(tmp_path, DIAMOND.replace("op: add, b: 1.0", "op: add, b: 5.0"), "changed.yaml")
    report, rec = run(changed, cache)
    assert rec.nodes("started") == rec.nodes("finished") == {"right", "join", "stats"}
    assert report.ran() == {"right", "join", "stats"}
    assert {n for n, s in report.status.items() if s == "cached"} == {"src", "left"}


def test_wide_dag_runs_independent_branches_concurrently(tmp_path, cache):
    width = 6
    lines = ["version: 1", "nodes:", "  src: {type: Range, params: {num: 4}}"]
    for i in range(width):
        lines.append(f"  b{i}: {{type: Rendezvous, params: {{folder: {tmp_path / 'meet'}, parties: {width}, value: {i}}},"
                     " inputs: {x: src.array}}")
    lines.append("  total: {type: Math, inputs: {a: b0.y, b: b5.y}}")
    wf = write_workflow(tmp_path, "\n".join(lines) + "\n")
    report, rec = run(wf, cache, jobs=width)  # with fewer threads the rendezvous would time out
    assert report.ok, report.errors
    assert report.load_output("total", "result").tolist() == [5.0]


def test_failure_skips_dependents_and_lets_independent_branches_finish(tmp_path, cache):
    text = """
    version: 1
    nodes:
      src: {type: Range, params: {num: 4}}
      bad: {type: Fail, params: {message: "frame 3 has no face"}, inputs: {x: src.array}}
      after_bad: {type: Math, inputs: {a: bad.y}}
      after_after: {type: Stats, inputs: {x: after_bad.result}}
      good: {type: Math, params: {op: mul, b: 2.0}, inputs: {a: src.array}}
      good2: {type: Stats, inputs: {x: good.result}}
    """
    wf = write_workflow(tmp_path, text)
    report, rec = run(wf, cache, jobs=2)
    assert not report.ok
    assert report.status == {"src": "ran", "bad": "failed", "after_bad": "skipped", "after_after": "skipped",
                             "good": "ran", "good2": "ran"}
    [err] = report.errors
    assert (err.node_id, err.node_type, err.message) == ("bad", "Fail", "frame 3 has no face")
    assert err.detail == ""  # a NodeError needs no traceback
    assert rec.nodes("skipped") == {"after_bad", "after_after"} and rec.nodes("failed") == {"bad"}
    assert all(cache.has(report.keys[n]) for n in ("src", "good", "good2"))
    assert not cache.has(report.keys["bad"])

    fixed = write_workflow(tmp_path, text.replace("type: Fail, params: {message: \"frame 3 has no face\"}, inputs: {x: src.array}",
                                                  "type: Function, params: {fn: abs}, inputs: {x: src.array}"), "fixed.yaml")
    report2, rec2 = run(fixed, cache)
    assert report2.ok
    assert report2.ran() == {"bad", "after_bad", "after_after"}  # the rest resumes from the cache


def test_unexpected_exception_carries_a_short_traceback(tmp_path, cache):
    wf = write_workflow(tmp_path, """
    version: 1
    nodes:
      boom: {type: Fail, params: {kind: exception, message: "bad divisor"}}
    """)
    report, _ = run(wf, cache)
    [err] = report.errors
    assert err.message == "ZeroDivisionError: bad divisor" and not err.user_error
    assert "helper_that_breaks" in err.detail and err.detail.count("File ") <= 3


@pytest.mark.parametrize("kind, expected", [
    ("type", "node 'bad' (BadOutput): output 'y' is not a valid Array: expected an ndarray"),
    ("missing", "missing output(s) ['y']"),
    ("extra", "undeclared output(s) ['z']"),
    ("not_a_dict", "run() returned ndarray, expected a dict"),
])
def test_wrong_outputs_are_reported_with_node_port_and_type(tmp_path, cache, kind, expected):
    wf = write_workflow(tmp_path, f"""
    version: 1
    nodes:
      bad: {{type: BadOutput, params: {{kind: {kind}}}}}
    """)
    report, rec = run(wf, cache)
    [err] = report.errors
    assert expected in f"{err}"
    assert not cache.has(report.keys["bad"])


def test_transient_nodes_are_computed_where_needed_and_never_cached(tmp_path, cache):
    text = """
    version: 1
    nodes:
      model: {type: LoadScaler, params: {factor: 3.0}}
      x: {type: Range, params: {start: 1, stop: 3, num: 3}}
      a: {type: ApplyScaler, inputs: {model: model.model, x: x.array}}
      b: {type: ApplyScaler, inputs: {model: model.model, x: a.y}}
    """
    wf = write_workflow(tmp_path, text)
    report, rec = run(wf, cache, jobs=2)
    assert report.ok, report.errors
    assert report.load_output("b", "y").tolist() == [9.0, 18.0, 27.0]
    assert rec.count("started", "model") == 1  # once per process and key
    assert not cache.has(report.keys["model"])
    assert any(e.kind == "log" and e.node_id == "model" and "x3.0" in e.data["message"] for e in rec.events)
    with pytest.raises(ValueError, match="in-memory"):
        report.load_output("model", "model")

    again, rec2 = run(wf, cache)  # everything that needs the model is cached: it is not loaded
    assert again.status["model"] == "cached" and rec2.nodes("started") == set()

    changed = write_workflow(tmp_path, text.replace("num: 3", "num: 4"), "changed.yaml")
    third, rec3 = run(changed, cache)
    assert third.ran() >= {"x", "a", "b"} and third.status["model"] in ("ran", "cached")
    assert third.load_output("b", "y").tolist() == pytest.approx((np.linspace(1, 3, 4) * 9).tolist())


def test_recompute_nodes_run_every_time_unless_seeded(tmp_path, cache):
    wf = write_workflow(tmp_path, """
    version: 1
    nodes:
      fresh: {type: Noise}
      seeded: {type: Noise, params: {seed: 3}}
    """)
    first, _ = run(wf, cache)
    second, _ = run(wf, cache)
    assert first.status == {"fresh": "ran", "seeded": "ran"}
    assert second.status == {"fresh": "ran", "seeded": "cached"}
    assert not np.array_equal(first.load_output("fresh", "y"), second.load_output("fresh", "y"))
    np.testing.assert_array_equal(first.load_output("seeded", "y"), np.random.default_rng(3).standard_normal(4))


def test_input_file_change_invalidates(tmp_path, cache):
    np.save(tmp_path / "in.npy", np.arange(3.0))
    wf = write_workflow(tmp_path, """
    version: 1
    nodes:
      load: {type: LoadArray, params: {path: in.npy}}
      double: {type: Math, params: {op: mul, b: 2.0}, inputs: {a: load.array}}
      other: {type: Range}
    """)
    run(wf, cache)
    np.save(tmp_path / "in.npy", np.arange(4.0))
    report, rec = run(wf, cache)
    assert report.ran() == {"load", "double"}
    assert report.load_output("double", "result").tolist() == [0.0, 2.0, 4.0, 6.0]


def test_output_files_missing_or_changed_are_rewritten(tmp_path, cache):
    wf = write_workflow(tmp_path, """
    version: 1
    nodes:
      x: {type: Range, params: {num: 5}}
      save: {type: SaveArray, params: {path: out/x.npy}, inputs: {array: x.array}}
    """)
    report, _ = run(wf, cache)
    out = tmp_path / "out" / "x.npy"
    assert report.files == {"save": {"path": str(out)}} and out.is_file()
    assert run(wf, cache)[0].status["save"] == "cached"
    out.unlink()
    assert run(wf, cache)[0].ran() == {"save"} and out.is_file()
    np.save(out, np.zeros(2))  # edited by hand: the cache no longer describes it
    assert run(wf, cache)[0].ran() == {"save"}
    np.testing.assert_array_equal(np.load(out), np.linspace(0, 1, 5))
    assert run(wf, cache)[0].status["save"] == "cached"


def test_code_version_change_invalidates(tmp_path, cache):
    from engine_helpers import engine_registry

    import graphcore.builtin_nodes as builtins
    from graphcore.loader import load_workflow
    from graphcore.validation import compile_workflow

    wf = write_workflow(tmp_path, DIAMOND)
    run(wf, cache)
    registry = engine_registry()
    bumped = type("Math", (builtins.Math,), {"version": 2, "__module__": "bumped", "type_name": "Math"})
    registry._nodes["Math"] = bumped  # the same node type at version 2
    rec = Recorder()
    report = run_graph(compile_workflow(load_workflow(wf), registry), cache=cache, listeners=[rec])
    assert report.ran() == {"left", "right", "join", "stats"}


def test_progress_and_events_file(tmp_path, cache):
    wf = write_workflow(tmp_path, """
    version: 1
    nodes:
      steps: {type: Steps, params: {steps: 4}}
    """)
    sink = JsonLinesSink(tmp_path / "events.jsonl")
    run_graph(compile_file(wf), cache=cache, listeners=[sink])
    sink.close()
    events = read_events(tmp_path / "events.jsonl")
    kinds = [e.kind for e in events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert kinds[1:3] == ["queued", "started"] and kinds[-2] == "finished"
    progress = [(e.data["i"], e.data["n"]) for e in events if e.kind == "progress"]
    assert progress[-1] == (4, 4) and progress[0][1] == 4
    assert events[-1].data["ok"] is True and all(e.run_id == events[0].run_id for e in events)


def test_scratch_folder_is_fresh_and_removed(tmp_path, cache):
    wf = write_workflow(tmp_path, """
    version: 1
    nodes:
      a: {type: Scratch}
    """)
    report, _ = run(wf, cache)
    assert report.ok, report.errors
    folder = report.load_output("a", "folder")
    assert report.load_output("a", "content").startswith("seed ") and not Path(folder).exists()


def test_remote_cache_url_memory(tmp_path):
    """An fsspec cache (memory://): lookups made concurrently, same results."""
    import uuid

    cache = CacheStore(f"memory://graphrun-test-{uuid.uuid4().hex}")
    wf = write_workflow(tmp_path, DIAMOND)
    first, _ = run(wf, cache, jobs=2)
    assert first.ok and set(first.status.values()) == {"ran"}
    second, _ = run(wf, cache)
    assert set(second.status.values()) == {"cached"}
    np.testing.assert_allclose(second.load_output("join", "result"), 3 * np.linspace(0, 1, 11) + 1)
