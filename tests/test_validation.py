"""Validation before running: every problem at once, each with node id, YAML line and a clear message."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any
from typing import Literal as Choice

import numpy as np
import pytest
from pydantic import BaseModel, Field

from graphcore.loader import parse_workflow
from graphcore.node import In, InputFile, Node, Out, RunContext
from graphcore.registry import build_registry
from graphcore.types import ArrayType, register_type
from graphcore.validation import check_workflow_file, compile_workflow, format_problems, validate
from graphcore.workflow import Edge, Literal, NodeSpec, Problem, Workflow, WorkflowError

register_type(ArrayType("VFrames", dtype="uint8", ndim=4, value_range=(0, 255)), "tests")
register_type(ArrayType("VAudio", dtype="float32", ndim=1), "tests")


class MakeFrames(Node):
    outputs = {"frames": Out("VFrames")}

    class Params(BaseModel):
        count: int = Field(4, ge=1, le=1000)

    def run(self, ctx: RunContext) -> dict[str, Any]:
        return {"frames": np.zeros((self.params.count, 8, 8, 3), np.uint8)}


class LoadClip(Node):
    outputs = {"audio": Out("VAudio")}

    class Params(BaseModel):
        path: str = InputFile(description="a .wav file", extensions=(".wav",))
        fps: float = Field(25.0, gt=0, le=120, description="video frame rate")
        variant: Choice["mfcc_pitch", "a2h", "mel", "mfcc_window"] = "mfcc_pitch"

    def run(self, ctx: RunContext) -> dict[str, Any]:
        return {"audio": np.zeros(16000, np.float32)}


class Dub(Node):
    inputs = {
        "frames": In("VFrames"),
        "audio": In("VAudio"),
        "gain": In("Scalar", optional=True),
        "subtitles": In("Path", optional=True),
        "window": In("VAudio", optional=True),
    }
    outputs = {"video": Out("VFrames")}

    class Params(BaseModel):
        label: str = Field(..., description="a required caption")

    def run(self, ctx: RunContext, frames, audio, gain=None, subtitles=None, window=None) -> dict[str, Any]:
        return {"video": frames}


@pytest.fixture(scope="module")
def registry():
    reg = build_registry(entry_points=False, env=False)
    for cls in (MakeFrames, LoadClip, Dub):
        reg.register(cls, "tests")
    return reg


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "clip.wav").write_bytes(b"RIFF")
    return tmp_path


def wf_from(text: str, folder: Path | None = None) -> Workflow:
    path = folder / "flow.yaml" if folder else None
    return parse_workflow(textwrap.dedent(text), path)


def only(problems: list[Problem], kind: str) -> Problem:
    found = [p for p in problems if p.kind == kind]
    assert len(found) == 1, [str(p) for p in problems]
    return found[0]


GOOD = """\
version: 1
nodes:
  frames:
    type: MakeFrames
    params: {count: 3}
  clip:
    type: LoadClip
    params: {path: clip.wav, fps: 30}
  dub:
    type: Dub
    params: {label: hello}
    inputs:
      frames: frames.frames
      audio: clip.audio
      gain: 0.5
      subtitles: {literal: clip.wav}   # 'clip' is a node: without the escape this is an edge
  stats:
    type: Stats
    inputs: {x: dub.video}
"""


def test_a_valid_workflow_has_no_problems_and_compiles(registry, folder):
    wf = wf_from(GOOD, folder)
    assert validate(wf, registry) == []
    graph = compile_workflow(wf, registry)
    assert graph.order == ["frames", "clip", "dub", "stats"]
    dub = graph.nodes["dub"]
    assert dub.cls is Dub and isinstance(dub.params, Dub.Params) and dub.params.label == "hello"
    assert graph.nodes["clip"].params.fps == 30.0
    assert dub.inputs["frames"] == Edge("frames", "frames")
    assert dub.inputs["gain"] == Literal(0.5)
    # literal paths become absolute against the workflow's folder, so keys do not depend on the cwd
    assert dub.inputs["subtitles"] == Literal(str(folder / "clip.wav"))
    assert graph.upstream("dub") == ["clip", "frames"] and graph.downstream("dub") == ["stats"]


def test_topological_order_follows_file_order_where_free(registry):
    wf = wf_from("""
        version: 1
        nodes:
          s: {type: Stats, inputs: {x: f.y}}
          b: {type: Range}
          f: {type: Function, inputs: {x: a.array}}
          a: {type: Range}
    """)
    assert compile_workflow(wf, registry).order == ["b", "a", "f", "s"]


def test_literal_arrays_are_converted_by_their_port_type(registry):
    wf = wf_from("""
        version: 1
        nodes:
          f: {type: Function, inputs: {x: [[1, 2], [3, 4]]}}
    """)
    value = compile_workflow(wf, registry).nodes["f"].inputs["x"].value
    assert isinstance(value, np.ndarray) and value.shape == (2, 2)


def test_unknown_node_type_suggests_close_names(registry):
    wf = wf_from("version: 1\nnodes:\n  x:\n    type: MovingAvrage\n  y:\n    type: Zebra\n", Path("/w"))
    problems = validate(wf, registry)
    assert [p.kind for p in problems] == ["unknown-type", "unknown-type"]
    assert problems[0].message.startswith("unknown node type 'MovingAvrage' (did you mean 'MovingAverage'?)")
    assert (problems[0].node_id, problems[0].line) == ("x", 3)
    assert "`graphrun nodes` lists the known types" in problems[1].message and problems[1].line == 5
    assert str(problems[0]).startswith("/w/flow.yaml:3: node 'x': unknown node type")


def test_unknown_type_names_a_broken_plugin(tmp_path):
    plugin = tmp_path / "fancy_nodes.py"
    plugin.write_text("import not_installed_module_xyz\n")
    reg = build_registry([plugin], entry_points=False, env=False)
    assert "Range" in reg  # built-ins keep working
    wf = wf_from("version: 1\nnodes:\n  x:\n    type: FancyNode\n")
    (problem,) = validate(wf, reg)
    assert "unknown node type 'FancyNode'" in problem.message
    assert "may come from a plugin that failed to load" in problem.message
    assert str(plugin) in problem.message and "not_installed_module_xyz" in problem.message


def test_unknown_param_and_input_port_suggest_close_names(registry, folder):
    wf = wf_from("""\
        version: 1
        nodes:
          clip:
            type: LoadClip
            params: {path: clip.wav, fsp: 30}
          frames:
            type: MakeFrames
          dub:
            type: Dub
            params: {label: x}
            inputs: {frames: frames.frames, audio: clip.audio, gian: 2}
    """, folder)
    problems = validate(wf, registry)
    param = only(problems, "unknown-param")
    assert param.message == "unknown param 'fsp' for LoadClip (did you mean 'fps'?); its params: fps, path, variant"
    assert (param.node_id, param.line) == ("clip", 5)
    port = only(problems, "unknown-port")
    assert port.message.startswith("unknown input 'gian' for Dub (did you mean 'gain'?); its inputs: frames, audio, gain")
    assert (port.node_id, port.line) == ("dub", 11)
    assert len(problems) == 2


def test_missing_required_input_and_param(registry):
    wf = wf_from("""\
        version: 1
        nodes:
          frames:
            type: MakeFrames
          dub:
            type: Dub
            inputs: {frames: frames.frames}
    """)
    problems = validate(wf, registry)
    missing = only(problems, "missing-input")
    # optional ports (gain, subtitles, window) are not required
    assert missing.message == "missing required input 'audio' (VAudio); connect an output of type VAudio"
    assert (missing.node_id, missing.line) == ("dub", 5)
    param = only(problems, "param")
    assert param.message == "param 'label' is required (a required caption)" and param.line == 5


def test_missing_input_suggests_compatible_outputs(registry):
    wf = wf_from("version: 1\nnodes:\n  r: {type: Range}\n  f: {type: Function}\n")
    (problem,) = validate(wf, registry)
    assert problem.message == "missing required input 'x' (Array); connect e.g. r.array"


def test_edge_to_unknown_node_and_unknown_output(registry):
    # Built in code (as the editor does): edges may point anywhere.
    wf = Workflow(nodes={
        "r": NodeSpec("r", "Range"),
        "f": NodeSpec("f", "Function", inputs={"x": Edge("rr", "array")}, input_lines={"x": 7}),
        "g": NodeSpec("g", "Function", inputs={"x": Edge("r", "arr")}, line=9),
    })
    problems = validate(wf, registry)
    assert [(p.node_id, p.kind) for p in problems] == [("f", "unknown-node"), ("g", "unknown-port")]
    assert problems[0].message == "input 'x' is connected to unknown node 'rr' (did you mean 'r'?)" and problems[0].line == 7
    assert problems[1].message == "input 'x': node 'r' (Range) has no output 'arr' (did you mean 'array'?); its outputs: array"
    assert problems[1].line == 9


def test_reference_shaped_text_to_a_non_text_port_is_flagged(registry):
    wf = wf_from("version: 1\nnodes:\n  ramp: {type: Range}\n  f:\n    type: Function\n    inputs:\n      x: rmap.array\n")
    (problem,) = validate(wf, registry)
    assert problem.kind == "literal" and problem.line == 7
    assert problem.message == ("input 'x' = 'rmap.array': a Array literal must be a number or a (nested) list of numbers, "
                               "got 'rmap.array'; 'rmap' is not a node of this workflow (did you mean 'ramp'?)")
    # a type that refuses text says so, and names the likely node too
    reg = build_registry(entry_points=False, env=False)

    class Gain(Node):
        inputs = {"g": In("Scalar")}

        def run(self, ctx, g):
            return {}

    reg.register(Gain, "tests")
    wf = wf_from("version: 1\nnodes:\n  ramp: {type: Range}\n  g:\n    type: Gain\n    inputs: {g: rmap.gain}\n")
    (problem,) = validate(wf, reg)
    assert problem.kind == "literal"
    assert problem.message == ("input 'g' = 'rmap.gain': expected a number, got str; "
                               "'rmap' is not a node of this workflow (did you mean 'ramp'?)")


def test_edge_type_mismatch_names_both_ends_and_types(registry, folder):
    wf = wf_from("""\
        version: 1
        nodes:
          clip:
            type: LoadClip
            params: {path: clip.wav}
          frames:
            type: MakeFrames
          dub:
            type: Dub
            params: {label: x}
            inputs:
              frames: clip.audio
              audio: frames.frames
    """, folder)
    problems = validate(wf, registry)
    assert [p.kind for p in problems] == ["type-mismatch", "type-mismatch"]
    assert problems[0].message.startswith("type mismatch: clip.audio (VAudio) → dub.frames (VFrames)")
    assert problems[0].line == 12
    assert problems[1].message.startswith("type mismatch: frames.frames (VFrames) → dub.audio (VAudio)")
    assert problems[1].line == 13


def test_text_that_reads_as_a_reference_gets_the_escape_hint(registry, folder):
    wf = wf_from("""\
        version: 1
        nodes:
          frames: {type: MakeFrames}
          clip: {type: LoadClip, params: {path: clip.wav}}
          dub:
            type: Dub
            params: {label: x}
            inputs: {frames: frames.frames, audio: clip.audio, subtitles: clip.wav}
    """, folder)
    (problem,) = validate(wf, registry)
    assert problem.message == ("input 'subtitles': node 'clip' (LoadClip) has no output 'wav'; its outputs: audio; "
                               "to pass the text 'clip.wav' itself, write {literal: clip.wav}")


def test_subtype_connects_to_its_parent(registry):
    wf = wf_from("version: 1\nnodes:\n  m: {type: MakeFrames}\n  s: {type: Stats, inputs: {x: m.frames}}\n")
    assert validate(wf, registry) == []  # VFrames is an Array


def test_bad_literals(registry, folder):
    wf = wf_from("""\
        version: 1
        nodes:
          frames:
            type: MakeFrames
          clip:
            type: LoadClip
            params: {path: clip.wav}
          dub:
            type: Dub
            params: {label: x}
            inputs:
              frames: frames.frames
              audio: [0.1, 0.2]
              gain: loud
              window: [[1, 2]]
    """, folder)
    problems = validate(wf, registry)
    assert [p.line for p in problems] == [14, 15]
    assert problems[0].message == "input 'gain' = 'loud': expected a number, got str"
    assert problems[1].message.startswith("input 'window' = [[1, 2]]: shape (1, 2) has 2 axes, expected 1")
    # arrays given as literals are checked against the type (VAudio is 1-D)
    wf.nodes["dub"].inputs["audio"] = Literal([[0.1, 0.2]])
    assert any("has 2 axes, expected 1" in p.message for p in validate(wf, registry))


def test_literal_for_a_type_that_takes_none(registry):
    class TakesMetrics(Node):
        inputs = {"m": In("Metrics")}

        def run(self, ctx, m):
            return {}

    reg = build_registry(entry_points=False, env=False)
    reg.register(TakesMetrics, "tests")
    wf = wf_from("version: 1\nnodes:\n  t:\n    type: TakesMetrics\n    inputs: {m: {a: 1}}\n")
    (problem,) = validate(wf, reg)
    assert problem.kind == "literal" and problem.line == 5
    assert "type Metrics cannot be given as a literal; connect an output" in problem.message


def test_cycle_names_the_whole_cycle(registry):
    wf = wf_from("""\
        version: 1
        nodes:
          start: {type: Range}
          a: {type: Math, inputs: {a: c.result}}
          b: {type: Math, inputs: {a: a.result}}
          c: {type: Math, inputs: {a: b.result}}
          self: {type: Function, inputs: {x: self.y}}
    """)
    problems = validate(wf, registry)
    assert [p.kind for p in problems] == ["cycle", "cycle"]
    assert problems[0].message.startswith("cycle: a → b → c → a")
    assert (problems[0].node_id, problems[0].line) == ("a", 4)
    assert problems[1].message.startswith("cycle: self → self") and problems[1].line == 7
    with pytest.raises(WorkflowError, match="cycle: a → b → c → a"):
        compile_workflow(wf, registry)


def test_parameter_bounds_choices_and_types(registry, folder):
    wf = wf_from("""\
        version: 1
        nodes:
          clip:
            type: LoadClip
            params:
              path: clip.wav
              fps: 500
              variant: mfcc-pitch
          zero:
            type: LoadClip
            params: {path: clip.wav, fps: 0}
          shaped:
            type: RandomArray
            params: {shape: [4, four], seed: 1.5}
    """, folder)
    problems = validate(wf, registry)
    by_line = {p.line: p.message for p in problems}
    assert len(problems) == 5
    assert by_line[7] == "param 'fps' = 500: must be ≤ 120"
    assert by_line[8] == ("param 'variant' = 'mfcc-pitch': not one of 'mfcc_pitch', 'a2h', 'mel', 'mfcc_window' "
                          "(did you mean 'mfcc_pitch'?)")
    assert by_line[11] == "param 'fps' = 0: must be > 0"
    assert {p.message for p in problems if p.line == 14} == {
        "param 'shape'[1] = 'four': should be a valid integer, unable to parse string as an integer",
        "param 'seed' = 1.5: should be a valid integer, got a number with a fractional part",
    }


def test_missing_input_files_are_resolved_against_the_workflow_folder(registry, tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "here.wav").write_bytes(b"x")
    wf = wf_from("""\
        version: 1
        nodes:
          ok:
            type: LoadClip
            params: {path: sub/here.wav}
          gone:
            type: LoadClip
            params: {path: sub/gone.wav}
          frames: {type: MakeFrames}
          dub:
            type: Dub
            params: {label: x}
            inputs: {frames: frames.frames, audio: ok.audio, subtitles: subs/missing.srt}
    """, tmp_path)
    problems = validate(wf, registry)
    assert [p.kind for p in problems] == ["file", "file"]
    gone, subs = problems
    assert gone.message == f"param 'path': file not found: 'sub/gone.wav' (looked for {tmp_path / 'sub' / 'gone.wav'})"
    assert (gone.node_id, gone.line) == ("gone", 8)
    assert subs.message == f"input 'subtitles': file not found: 'subs/missing.srt' (looked for {tmp_path / 'subs' / 'missing.srt'})"
    assert (subs.node_id, subs.line) == ("dub", 13)
    # absolute paths are taken as they are
    wf.nodes["gone"].params["path"] = str(tmp_path / "sub" / "here.wav")
    assert len(validate(wf, registry)) == 1


def test_invalid_node_ids(registry):
    wf = Workflow(nodes={"a b": NodeSpec("a b", "Range"), "9x": NodeSpec("9x", "Range"), "ok-1_x": NodeSpec("ok-1_x", "Range")})
    problems = validate(wf, registry)
    assert [p.node_id for p in problems] == ["a b", "9x"]
    assert "invalid node id 'a b': use letters, digits, '_' and '-'" in problems[0].message
    from_file = wf_from("version: 1\nnodes:\n  ok: {type: Range}\n  my.node: {type: Range}\n")
    (problem,) = validate(from_file, registry)
    assert (problem.kind, problem.node_id, problem.line) == ("node-id", "my.node", 4)


def test_every_problem_is_reported_at_once(registry, folder):
    wf = wf_from("""\
        version: 1
        nodes:
          clip:
            type: LoadClip
            params: {path: nothere.wav, fps: -1}
          ghost:
            type: Frmaes
          frames:
            type: MakeFrames
            params: {count: 0, colour: red}
          dub:
            type: Dub
            inputs: {frames: clip.audio, gain: x}
          loop1: {type: Function, inputs: {x: loop2.y}}
          loop2: {type: Function, inputs: {x: loop1.y}}
    """, folder)
    problems = validate(wf, registry)
    kinds = sorted(p.kind for p in problems)
    assert kinds == sorted(["param", "file", "unknown-type", "unknown-param", "param", "param", "missing-input",
                            "type-mismatch", "literal", "cycle"]), [str(p) for p in problems]
    with pytest.raises(WorkflowError) as info:
        compile_workflow(wf, registry)
    assert len(info.value.problems) == len(problems)
    assert all(p.node_id and p.line for p in problems)


def test_format_problems_sorts_by_line(registry, folder):
    wf = wf_from("""\
        version: 1
        nodes:
          a: {type: Nope}
          b: {type: Function, inputs: {x: [1]}, params: {fn: tan}}
          c: {type: Nope2}
    """, folder)
    problems = validate(wf, registry)
    text = format_problems(list(reversed(problems)))
    lines = text.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"{folder / 'flow.yaml'}:3: node 'a': unknown node type 'Nope'")
    assert lines[1].startswith(f"{folder / 'flow.yaml'}:4: node 'b': param 'fn' = 'tan': not one of")
    assert lines[2].startswith(f"{folder / 'flow.yaml'}:5: node 'c': unknown node type 'Nope2'")


def test_check_workflow_file_gathers_format_override_and_validation_problems(registry, folder):
    path = folder / "flow.yaml"
    path.write_text(textwrap.dedent("""\
        version: 1
        nodes:
          frames:
            type: MakeFrames
            colour: red
          clip:
            type: LoadClip
            params: {path: clip.wav}
          stats: {type: Stats, inputs: {x: clip.audio}}
          oops: {type: Nope}
    """))
    wf, problems = check_workflow_file(path, registry, ["frames.count=5000", "clip.fps=30"])
    assert wf is not None and wf.nodes["clip"].params["fps"] == 30
    assert sorted(p.kind for p in problems) == ["override", "unknown-key", "unknown-type"]
    assert "--set frames.count=5000: param 'count' = 5000: must be ≤ 1000" in format_problems(problems)
    good, no_problems = check_workflow_file(path.with_name("missing.yaml"), registry)
    assert good is None and "workflow file not found" in no_problems[0].message
    path.write_text("version: 1\nnodes: {a: [}\n")
    none, (yaml_problem,) = check_workflow_file(path, registry)
    assert none is None and yaml_problem.kind == "yaml" and yaml_problem.line == 2
