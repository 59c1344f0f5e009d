"""What a node writes or reads outside its ports: folder outputs (OutputFolder) are checked on
every cache hit, and implicit input files (a bundled fallback) key the cache."""
from __future__ import annotations

import os

import pytest
from engine_helpers import Recorder, compile_file, write_workflow
from pydantic import BaseModel

from graphcore.cache import CacheStore
from graphcore.keys import compute_keys
from graphcore.scheduler import run_graph
from graphcore.validation import check_workflow_file
from graphcore.workflow import WorkflowError

FOLDER = """
version: 1
nodes:
  data: {type: WriteFolder, params: {path: out/data, files: 3}}
"""


@pytest.fixture()
def cache(tmp_path):
    return CacheStore(str(tmp_path / "cache"))


def run(path, cache):
    rec = Recorder()
    return run_graph(compile_file(path), cache=cache, listeners=[rec]), rec


def logs(rec, node_id):
    return [e.data["message"] for e in rec.events if e.kind == "log" and e.node_id == node_id]


def test_folder_output_is_recorded_and_a_hit_while_untouched(tmp_path, cache):
    wf = write_workflow(tmp_path, FOLDER)
    report, _ = run(wf, cache)
    folder = tmp_path / "out" / "data"
    assert report.ok and report.files == {"data": {"path": str(folder)}}
    record = cache.meta(report.keys["data"]).files["path"]
    assert record["folder"] and record["files"] == 3 and record["bytes"] == 3 * len("file 0")
    again, rec = run(wf, cache)
    assert again.status["data"] == "cached" and not logs(rec, "data")


@pytest.mark.parametrize("change", ["delete folder", "delete a file", "add a file", "edit a file"])
def test_changed_or_missing_folder_runs_again_and_says_why(tmp_path, cache, change):
    wf = write_workflow(tmp_path, FOLDER)
    run(wf, cache)
    folder = tmp_path / "out" / "data"
    if change == "delete folder":
        import shutil

        shutil.rmtree(folder)
    elif change == "delete a file":
        (folder / "sub" / "1.txt").unlink()
    elif change == "add a file":
        (folder / "stray.txt").write_text("x")
    else:
        f = folder / "sub" / "0.txt"
        f.write_text("FILE 0")  # same size: the mtime tells
        st = f.stat()
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    report, rec = run(wf, cache)
    assert report.ran() == {"data"}
    why = logs(rec, "data")
    assert len(why) == 1 and str(folder) in why[0]
    assert ("is gone" in why[0]) if change == "delete folder" else ("was changed" in why[0])
    # the entry now describes the folder as rewritten: the next run is a hit again
    assert run(wf, cache)[0].status["data"] == "cached"


def test_a_folder_output_not_written_is_named():
    from graphcore.outputs import MissingOutput, record_outputs

    with pytest.raises(MissingOutput, match="did not write its output folder 'path' = /nowhere/data"):
        record_outputs({}, {"path": "/nowhere/data"})


READ = """
version: 1
nodes:
  read: {type: ReadTable, params: {fallback: bundled.txt}}
"""


def test_implicit_file_content_keys_the_cache(tmp_path, cache):
    (tmp_path / "bundled.txt").write_text("one")
    wf = write_workflow(tmp_path, READ)
    report, _ = run(wf, cache)
    assert report.load_output("read", "text") == "one"
    assert run(wf, cache)[0].status["read"] == "cached"
    (tmp_path / "bundled.txt").write_text("two")  # the fallback changed: a stale hit would say "one"
    report, _ = run(wf, cache)
    assert report.ran() == {"read"} and report.load_output("read", "text") == "two"


def test_implicit_file_only_when_the_node_uses_it(tmp_path):
    (tmp_path / "bundled.txt").write_text("one")
    (tmp_path / "given.txt").write_text("given")
    given = write_workflow(tmp_path, READ.replace("fallback: bundled.txt", "fallback: bundled.txt, table: given.txt"), "g.yaml")
    key = compute_keys(compile_file(given), "s")["read"]
    (tmp_path / "bundled.txt").write_text("two")
    assert compute_keys(compile_file(given), "s")["read"] == key  # the fallback is not read: not keyed


def test_missing_implicit_file_is_a_validation_problem(tmp_path):
    from engine_helpers import engine_registry

    wf = write_workflow(tmp_path, READ.replace("bundled.txt", "gone.txt"))
    _, problems = check_workflow_file(wf, engine_registry())
    assert len(problems) == 1
    p = problems[0]
    assert p.node_id == "read" and p.kind == "file" and "fallback table" in p.message and "gone.txt" in p.message
    connected = write_workflow(tmp_path, READ.replace("bundled.txt", "gone.txt").replace(
        "params: {fallback: gone.txt}", "params: {fallback: gone.txt}, inputs: {table_in: {literal: hi}}"), "c.yaml")
    assert check_workflow_file(connected, engine_registry())[1] == []


def test_implicit_file_removed_after_validation_is_named_by_the_planner(tmp_path):
    (tmp_path / "bundled.txt").write_text("one")
    graph = compile_file(write_workflow(tmp_path, READ))
    (tmp_path / "bundled.txt").unlink()
    with pytest.raises(WorkflowError) as info:
        compute_keys(graph, "s")
    (p,) = info.value.problems
    assert p.node_id == "read" and "implicit file 'fallback table' of ReadTable" in p.message


SOURCE = """
version: 1
nodes:
  read: {type: ReadTableSource}
"""


def test_a_file_source_declares_parameter_fallback_and_implicit_file(tmp_path, cache):
    from engine_nodes import ReadTableSource

    assert list(ReadTableSource.Params.model_fields) == ["table"] and ReadTableSource.inputs["table_in"].optional
    assert ReadTableSource.schema()["inputs"]["table_in"]["param"] == "table"
    (tmp_path / "bundled.txt").write_text("one")
    (tmp_path / "given.txt").write_text("given")
    wf = write_workflow(tmp_path, SOURCE)
    report, _ = run(wf, cache)
    assert report.load_output("read", "text") == "one"
    (tmp_path / "bundled.txt").write_text("two")  # the fallback's content keys the cache
    report, _ = run(wf, cache)
    assert report.ran() == {"read"} and report.load_output("read", "text") == "two"
    given = write_workflow(tmp_path, SOURCE.replace("{type: ReadTableSource}", "{type: ReadTableSource, params: {table: given.txt}}"),
                           "g.yaml")
    connected = write_workflow(tmp_path, SOURCE.replace("{type: ReadTableSource}",
                                                        "{type: ReadTableSource, inputs: {table_in: {literal: hi}}}"), "c.yaml")
    keys = [compute_keys(compile_file(w), "s")["read"] for w in (given, connected)]
    (tmp_path / "bundled.txt").write_text("three")  # neither reads the fallback: neither is keyed by it
    assert [compute_keys(compile_file(w), "s")["read"] for w in (given, connected)] == keys
    assert run(given, cache)[0].load_output("read", "text") == "given"
    assert run(connected, cache)[0].load_output("read", "text") == "hi"
    (tmp_path / "bundled.txt").unlink()
    from engine_helpers import engine_registry

    (p,) = check_workflow_file(wf, engine_registry())[1]
    assert p.node_id == "read" and p.kind == "file" and "fallback table" in p.message and "bundled.txt" in p.message
    assert check_workflow_file(connected, engine_registry())[1] == []


def test_a_file_source_parameter_is_declared_once():
    from graphcore import FileSource, In, InputFile, Node, Out

    with pytest.raises(TypeError, match="declared both in Params and by the FileSource of input 'x'"):
        class Twice(Node):
            inputs = {"x": In("String", file=FileSource(fallback="a.txt"))}
            outputs = {"y": Out("String")}

            class Params(BaseModel):
                x: str = InputFile("")

            def run(self, ctx, x=None):
                return {"y": ""}


def test_the_library_declares_its_bundled_fallbacks():
    from nodes.face.flow_nodes import DenseFlowBuilder
    from nodes.hdtf.hdtf_nodes import AnimationGenerator, EvaluateHDTF
    from nodes.yi.yi_nodes import EvaluateYi, MemoryGAN

    none = frozenset()
    (ckpt,) = AnimationGenerator().implicit_files(none).values()
    assert ckpt.name == "hdtf_animation_tiny.pt" and ckpt.is_file()
    assert AnimationGenerator().implicit_files(frozenset({"checkpoint"})) == {}
    assert AnimationGenerator({"checkpoint": "mine.pt"}).implicit_files(none) == {}
    (model,) = DenseFlowBuilder().implicit_files(none).values()
    assert model.name == "talkgraph_3dmm_v1.npz" and model.is_file()
    assert DenseFlowBuilder().implicit_files(frozenset({"model"})) == {}
    assert MemoryGAN().implicit_files(none)["bundled checkpoint"].name == "memory_gan_tiny.pt"
    assert set(EvaluateYi().implicit_files(frozenset({"gan_checkpoint"}))) == {"bundled audio checkpoint", "bundled face model"}
    assert set(EvaluateYi({"audio_checkpoint": "a.pt"}).implicit_files(none)) == {"bundled gan checkpoint", "bundled face model"}
    assert set(EvaluateHDTF({"tables": "table3"}).implicit_files(none)) == {"bundled animation checkpoint", "bundled face model"}
    for path in [*EvaluateYi().implicit_files(none).values(), *EvaluateHDTF().implicit_files(none).values()]:
        assert path.is_file(), path
