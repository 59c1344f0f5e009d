"""Engine features the editor builds on, checked without it: cancelling a run, exactly-one
input groups, adapter nodes, path-typed parameters and allowed roots (also from the CLI)."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from engine_helpers import Recorder, compile_file, engine_registry, graphrun, write_workflow
from pydantic import BaseModel

from graphcore.cache import CacheStore
from graphcore.loader import parse_workflow
from graphcore.node import In, InputPath, Node, Out, OutputPath, file_params
from graphcore.paths import AllowedRoots, PathNotAllowed
from graphcore.registry import NodeRegistry
from graphcore.scheduler import run_graph
from graphcore.validation import validate

CHAIN = """
version: 1
nodes:
  first: {type: Steps, params: {steps: 2}}
  slow: {type: Steps, params: {steps: 400, delay: 0.02}}
  after: {type: Stats, inputs: {x: slow.y}}
"""


def test_cancel_stops_the_running_node_at_its_next_progress_point_and_keeps_finished_work(tmp_path):
    cache = CacheStore(str(tmp_path / "cache"))
    graph = compile_file(write_workflow(tmp_path, CHAIN))
    cancel = threading.Event()
    rec = Recorder()

    def listen(event):
        rec(event)
        if event.kind == "progress" and event.node_id == "slow" and event.data["i"] >= 5:
            cancel.set()

    report = run_graph(graph, cache=cache, listeners=[listen], cancel=cancel)
    assert report.cancelled and not report.ok
    assert report.status["first"] == "ran"
    assert report.status["slow"] == "cancelled" and report.status["after"] == "cancelled"
    # stopped long before its 400 steps: at the progress point after the cancel
    last = max(e.data["i"] for e in rec.events if e.kind == "progress" and e.node_id == "slow")
    assert last < 50
    assert rec.nodes("cancelled") == {"slow", "after"} and not rec.nodes("failed")
    assert not cache.has(report.keys["slow"])  # nothing of the stopped node is committed
    # finished work stays cached: the next run starts from it
    again = run_graph(compile_file(write_workflow(tmp_path, CHAIN.replace("400", "3"), "quick.yaml")), cache=cache)
    assert again.ok and again.status["first"] == "cached"
    assert again.status["slow"] == "ran"


def test_a_cancel_before_the_run_starts_runs_nothing(tmp_path):
    cache = CacheStore(str(tmp_path / "cache"))
    cancel = threading.Event()
    cancel.set()
    report = run_graph(compile_file(write_workflow(tmp_path, CHAIN)), cache=cache, cancel=cancel)
    assert set(report.status.values()) == {"cancelled"} and cache.ls() == []


class PickOne(Node):
    """Exactly one of two optional inputs."""

    inputs = {"image": In("Array", optional=True), "frames": In("Array", optional=True)}
    outputs = {"y": Out("Array")}
    exactly_one_of = (("image", "frames"),)

    def run(self, ctx, image=None, frames=None):
        return {"y": image if image is not None else frames}


class Wrap(Node):
    """An adapter: a Metrics value as an Array."""

    adapter = True
    inputs = {"m": In("Metrics")}
    outputs = {"a": Out("Array")}

    def run(self, ctx, m):
        return {"a": np.array(list(m.values()))}


class Paths(Node):
    """Path parameters of every kind."""

    outputs = {"y": Out("Array")}

    class Params(BaseModel):
        work_dir: str = OutputPath("", folder=True)
        dataset: str = InputPath("data", folder=True)

    def run(self, ctx):
        return {"y": np.zeros(1)}


def registry_with(*classes) -> NodeRegistry:
    registry = engine_registry()
    for cls in classes:
        registry.register(cls, "test")
    return registry


def test_exactly_one_of_is_checked_by_validation():
    registry = registry_with(PickOne)
    base = "version: 1\nnodes:\n  r: {type: Range}\n  p: {type: PickOne, inputs: {%s}}\n"
    both = validate(parse_workflow(base % "image: r.array, frames: r.array"), registry)
    assert [(p.node_id, p.kind) for p in both] == [("p", "exactly-one")]
    assert "exactly one of the inputs 'image', 'frames' (both are connected)" in both[0].message
    none = validate(parse_workflow(base % ""), registry)
    assert [p.kind for p in none] == ["exactly-one"] and "none is connected" in none[0].message
    assert validate(parse_workflow(base % "frames: r.array"), registry) == []
    assert PickOne.schema()["exactly_one_of"] == [["image", "frames"]]


def test_exactly_one_of_must_name_optional_inputs():
    with pytest.raises(TypeError, match="optional inputs"):
        type("Bad", (Node,), {"inputs": {"a": In("Array"), "b": In("Array", optional=True)},
                              "exactly_one_of": (("a", "b"),)})


def test_a_refused_edge_names_the_adapter_that_converts_it():
    registry = registry_with(Wrap)
    wf = parse_workflow("version: 1\nnodes:\n  r: {type: Range}\n  s: {type: Stats, inputs: {x: r.array}}\n"
                        "  m: {type: MovingAverage, inputs: {x: s.metrics}}\n")
    (problem,) = validate(wf, registry)
    assert problem.kind == "type-mismatch" and "an adapter node converts it: Wrap" in problem.message


def test_path_parameters_are_declared_and_kept_inside_the_roots(tmp_path):
    assert file_params(Paths.Params) == {"work_dir": "write-path", "dataset": "read-path"}
    registry = registry_with(Paths)
    (tmp_path / "inside" / "data").mkdir(parents=True)
    wf_path = tmp_path / "inside" / "wf.yaml"
    ok = parse_workflow("version: 1\nnodes:\n  p: {type: Paths, params: {work_dir: train}}\n", wf_path)
    assert validate(ok, registry, roots=[tmp_path / "inside"]) == []
    out = parse_workflow("version: 1\nnodes:\n  p: {type: Paths, params: {work_dir: ../../elsewhere, dataset: /etc}}\n",
                         wf_path)
    problems = validate(out, registry, roots=[tmp_path / "inside"])
    assert {(p.node_id, p.kind) for p in problems} == {("p", "path-root")}
    assert {p.message.split(":")[0] for p in problems} == {"param 'work_dir'", "param 'dataset'"}
    assert all(p.line == 3 for p in problems)
    assert validate(out, registry) == []  # without roots, only that what is read exists (/etc does)
    missing = parse_workflow("version: 1\nnodes:\n  p: {type: Paths, params: {dataset: nowhere}}\n", wf_path)
    assert [p.kind for p in validate(missing, registry)] == ["file"]


def test_allowed_roots_resolve_links_and_urls(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path)
    roots = AllowedRoots([tmp_path / "root", "s3://bucket/data"])
    assert roots.contains("x/y.npy", tmp_path / "root")
    assert not roots.contains("link/secret", tmp_path / "root")
    assert not roots.contains("../root2/x", tmp_path / "root")
    assert roots.contains("s3://bucket/data/clip.zarr") and not roots.contains("s3://bucket/other")
    assert not roots.contains(f"file://{tmp_path}/x") and roots.contains(f"file://{tmp_path}/root/x")
    with pytest.raises(PathNotAllowed, match="outside the allowed folders"):
        roots.check("/etc/passwd")


def test_cli_allow_root_refuses_paths_outside(tmp_path):
    (tmp_path / "proj").mkdir()
    wf = write_workflow(tmp_path / "proj", """
        version: 1
        nodes:
          r: {type: Range, params: {num: 4}}
          save: {type: SaveArray, params: {path: ../outside.npy}, inputs: {array: r.array}}
    """)
    refused = graphrun("validate", wf, "--allow-root", tmp_path / "proj")
    assert refused.returncode == 2 and "outside the allowed folders" in refused.stderr and "save" in refused.stderr
    assert graphrun("validate", wf).returncode == 0
    assert graphrun("validate", wf, "--allow-root", tmp_path).returncode == 0
    assert not Path(tmp_path / "outside.npy").exists()


def test_every_parameter_that_names_a_file_or_folder_is_declared_as_a_path():
    """DESIGN §7: paths are typed. A str parameter whose name says it is a place (path, dir,
    folder, file, checkpoint, weights, dataset) must be InputFile/InputPath/OutputFile/
    OutputFolder/OutputPath, so that validation and the editor keep it inside the allowed roots."""
    import re
    import typing

    from graphcore.registry import build_registry

    registry = build_registry(env=False)
    assert not registry.errors, registry.errors
    place = re.compile(r"(^|_)(path|dir|folder|file|checkpoint|weights|dataset)s?($|_)")
    bare = []
    for cls in registry.all():
        declared = file_params(cls.Params)
        for name, field in cls.Params.model_fields.items():
            types = typing.get_args(field.annotation) or (field.annotation,)
            if str in types and place.search(name) and name not in declared:
                bare.append(f"{cls.type_name}.{name}")
        for name, port in cls.inputs.items():
            if place.search(name) and port.port_type.name == "String":
                bare.append(f"{cls.type_name}.{name} (a String input: make it Path)")
    assert bare == []
