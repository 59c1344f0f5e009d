"""Workflow YAML v1: parsing with line numbers, the reference/literal rule, dumping, overrides."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from graphcore.loader import apply_overrides, dump_workflow, load_workflow, parse_workflow
from graphcore.registry import build_registry
from graphcore.workflow import Edge, Literal, NodeSpec, Problem, Workflow, WorkflowError


def parse(text: str, **kw) -> Workflow:
    return parse_workflow(textwrap.dedent(text), **kw)


def problems_of(text: str, **kw) -> list[Problem]:
    with pytest.raises(WorkflowError) as info:
        parse(text, **kw)
    return info.value.problems


@pytest.fixture(scope="module")
def registry():
    return build_registry(entry_points=False, env=False)


EXAMPLE = """\
version: 1
description: |
  Smooth a ramp and summarise it.
  Second line of the description.
nodes:
  ramp:
    type: Range
    params: {start: 0, stop: 10.5, num: 200}
    layout: {x: 40, y: 80, collapsed: false}
  smooth:
    type: MovingAverage
    params:
      window: 9
    inputs:
      x: ramp.array
  scaled:
    type: Math
    params: {op: mul}
    inputs:
      a: smooth.y
      b: 2.5
  stats:
    type: Stats
    inputs: {x: scaled.result}
    layout: {x: 400, y: 80}
"""


# --- parsing ---


def test_parse_structure_and_line_numbers():
    wf = parse_workflow(EXAMPLE, Path("/work/flows/example.yaml"))
    assert list(wf.nodes) == ["ramp", "smooth", "scaled", "stats"]
    assert wf.version == 1
    assert wf.meta["description"].startswith("Smooth a ramp")
    assert wf.base_dir == Path("/work/flows")
    ramp, smooth, scaled = wf.nodes["ramp"], wf.nodes["smooth"], wf.nodes["scaled"]
    assert ramp.type == "Range" and ramp.params == {"start": 0, "stop": 10.5, "num": 200}
    assert ramp.layout == {"x": 40, "y": 80, "collapsed": False}
    assert smooth.layout is None
    assert smooth.inputs == {"x": Edge("ramp", "array")}
    assert scaled.inputs == {"a": Edge("smooth", "y"), "b": Literal(2.5)}
    # 1-based lines of the node key, each param and each input
    assert ramp.line == 6 and smooth.line == 10 and scaled.line == 16
    assert ramp.param_lines == {"start": 8, "stop": 8, "num": 8}
    assert smooth.param_lines == {"window": 13} and smooth.input_lines == {"x": 15}
    assert scaled.input_lines == {"a": 20, "b": 21}


def test_reference_rule_and_literal_escape():
    wf = parse("""
        version: 1
        nodes:
          clip:
            type: Value
          use:
            type: Math
            inputs:
              a: clip.value            # names a node: a connection
              b: other.wav             # 'other' is not a node: the string itself
              c: {literal: clip.value} # escaped: the string itself
              d: [1, 2, 3]
              e: {gain: 2, mode: x}
              f: clip.value.more       # not id.port shaped
              g: "3.5"
              h: {literal: {literal: 1}}
    """)
    inputs = wf.nodes["use"].inputs
    assert inputs["a"] == Edge("clip", "value")
    assert inputs["b"] == Literal("other.wav")
    assert inputs["c"] == Literal("clip.value")
    assert inputs["d"] == Literal([1, 2, 3])
    assert inputs["e"] == Literal({"gain": 2, "mode": "x"})
    assert inputs["f"] == Literal("clip.value.more")
    assert inputs["g"] == Literal("3.5")
    assert inputs["h"] == Literal({"literal": 1})


def test_keys_are_taken_as_written():
    # YAML 1.1 would read `on:` as the bool True and `1:` as an int; a node id is text.
    wf = parse("""
        version: 1
        nodes:
          on:
            type: Value
          n2:
            type: Value
            params: {value: yes}
    """)
    assert list(wf.nodes) == ["on", "n2"]
    assert wf.nodes["n2"].params == {"value": True}


def test_anchors_and_merge_keys_share_parameters():
    wf = parse("""\
        version: 1
        nodes:
          a:
            type: Range
            params: &common {num: 3, stop: 2}
          b:
            type: Range
            params:
              <<: *common
              num: 7
          c:
            type: Range
            params: *common
    """)
    assert wf.nodes["b"].params == {"stop": 2, "num": 7}  # a key written here overrides a merged one
    assert wf.nodes["b"].param_lines == {"stop": 5, "num": 10}
    assert wf.nodes["c"].params == {"num": 3, "stop": 2}


def test_empty_sections_and_empty_workflow():
    wf = parse("""
        version: 1
        nodes:
          a:
            type: Value
            params:
            inputs:
            layout:
    """)
    assert wf.nodes["a"] == NodeSpec(id="a", type="Value")
    assert parse("version: 1\nnodes:\n").nodes == {}


def test_load_workflow_reads_file_and_reports_missing(tmp_path):
    f = tmp_path / "flow.yaml"
    f.write_text(EXAMPLE)
    wf = load_workflow(f)
    assert wf.path == f and wf.base_dir == tmp_path
    with pytest.raises(WorkflowError) as info:
        load_workflow(tmp_path / "nope.yaml")
    assert "workflow file not found" in str(info.value) and "nope.yaml" in str(info.value)


# --- format errors ---


def test_version_is_required_and_checked():
    missing = problems_of("nodes: {}\n")
    assert len(missing) == 1 and "missing `version: 1`" in missing[0].message and missing[0].line == 1
    (wrong,) = problems_of("version: 2\nnodes: {}\n")
    assert "unsupported workflow format version 2" in wrong.message and "reads version 1" in wrong.message
    assert wrong.line == 1
    (text,) = problems_of("nodes: {}\nversion: '1'\n")
    assert "version '1'" in text.message and text.line == 2


@pytest.mark.parametrize(
    "text, line, column, fragment",
    [
        ("version: 1\nnodes:\n  a: {type: Value\n  b: 1\n", 4, 4, "flow mapping started at line 3"),
        ("version: 1\nnodes:\n  a:\n\ttype: Value\n", 4, 1, "a tab; YAML indents with spaces"),
        ("version: 1\nnodes: [1, 2\n", 3, 1, "flow sequence started at line 2"),
        ("version: 1\n---\nversion: 1\n", 2, 1, "found another document (expected a single document"),
        ("version: 1\nnodes:\n  a:\n    type: Value\n   params: {}\n", 5, 4, "did not find expected key"),
    ],
)
def test_malformed_yaml_names_line_and_column(text, line, column, fragment):
    (problem,) = problems_of(text, path=Path("flow.yaml"))
    assert problem.kind == "yaml"
    assert (problem.line, problem.column) == (line, column)
    assert fragment in problem.message
    rendered = str(problem)
    assert rendered.startswith(f"flow.yaml:{line}:{column}: malformed YAML")
    assert "Traceback" not in rendered and "\n" not in rendered


def test_not_a_workflow():
    (empty,) = problems_of("")
    assert "empty" in empty.message
    (listing,) = problems_of("- a\n- b\n")
    assert "not a list" in listing.message and listing.line == 1
    probs = problems_of("version: 1\nnodes: [a, b]\n")
    assert any("`nodes:` must be a mapping" in p.message and p.line == 2 for p in probs)


def test_duplicate_keys_name_both_lines():
    probs = problems_of("""\
        version: 1
        nodes:
          a:
            type: Value
            params:
              value: 1
              value: 2
          b:
            type: Value
            params:
              value: {k: 1, k: 2}
          c:
            type: Value
          c:
            type: Range
    """)
    messages = {p.message: p for p in probs}
    assert len(probs) == 3, messages
    param = next(p for p in probs if "'value'" in p.message)
    assert "first at line 6, again at line 7" in param.message and param.line == 7 and param.node_id == "a"
    nested = next(p for p in probs if "'k'" in p.message)
    assert "first at line 11, again at line 11" in nested.message and nested.node_id == "b"
    node = next(p for p in probs if "duplicate key 'c'" in p.message)
    assert "first at line 12, again at line 14" in node.message and node.line == 14


def test_unknown_keys_at_every_level_with_suggestions():
    probs = problems_of("""\
        version: 1
        descripton: typo
        nodes:
          a:
            type: Value
            prams: {value: 1}
            input: {}
            colour: red
    """)
    by_line = {p.line: p.message for p in probs}
    assert "unknown key 'descripton' at the top level (did you mean 'description'?)" in by_line[2]
    assert "unknown key 'prams' in node 'a' (did you mean 'params'?)" in by_line[6]
    assert "unknown key 'input' in node 'a' (did you mean 'inputs'?)" in by_line[7]
    assert "unknown key 'colour'" in by_line[8] and "expected one of: type, params, inputs, layout" in by_line[8]
    assert all(p.node_id == "a" for p in probs if p.line in (6, 7, 8))


def test_malformed_sections_are_all_reported_together():
    probs = problems_of("""\
        version: 3
        nodes:
          a: Value
          b:
            type: Value
            params: [1, 2]
          c:
            type: [Value]
            inputs: 5
            layout: 7
          d:
            type: Value
            params: {value: !python/object:os.system x}
    """)
    lines = sorted(p.line for p in probs)
    assert lines == [1, 3, 6, 8, 9, 10, 13], [str(p) for p in probs]
    assert any("a node is a mapping with `type:`" in p.message for p in probs)
    assert any("'params' must be a mapping" in p.message for p in probs)
    assert any("'type' must be a node type name" in p.message for p in probs)
    assert any("'layout' must be a mapping" in p.message for p in probs)
    assert any("python/object" in p.message for p in probs)


def test_tolerant_parse_collects_problems_and_keeps_the_rest():
    collected: list[Problem] = []
    wf = parse("""
        version: 1
        nodes:
          a:
            type: Value
            parms: {value: 1}
          b:
            type: Math
            inputs: {a: a.value}
    """, problems=collected)
    assert [p.kind for p in collected] == ["unknown-key"]
    assert wf.nodes["b"].inputs == {"a": Edge("a", "value")}


# --- dumping ---


def test_round_trip_is_equal_and_stable():
    wf = parse_workflow(EXAMPLE)
    text = dump_workflow(wf)
    again = parse_workflow(text)
    assert again == wf
    assert again.nodes["ramp"].layout == {"x": 40, "y": 80, "collapsed": False}
    assert again.nodes["stats"].layout == {"x": 400, "y": 80}
    assert dump_workflow(again) == text
    # readable: fixed key order, one line per layout, the description as a block
    assert text.splitlines()[:5] == ["version: 1", "description: |", "  Smooth a ramp and summarise it.",
                                     "  Second line of the description.", "nodes:"]
    assert "    layout: {x: 40, y: 80, collapsed: false}" in text
    assert text.index("ramp:") < text.index("smooth:") < text.index("scaled:") < text.index("stats:")


def test_dump_escapes_literals_that_would_read_back_differently():
    wf = Workflow(nodes={
        "clip": NodeSpec("clip", "Value"),
        "use": NodeSpec("use", "Math", params={"op": "add", "shape": (2, 3), "scale": np.float32(0.5)},
                        inputs={"a": Edge("clip", "value"), "b": Literal("clip.value"), "c": Literal({"literal": 1}),
                                "d": Literal("notanode.value"), "e": Literal(np.arange(3)), "f": Literal(["x", 1.5])},
                        layout={"x": 1.5, "y": -2}),
    })
    text = dump_workflow(wf)
    assert "b: {literal: clip.value}" in text
    assert "c: {literal: {literal: 1}}" in text
    assert "d: notanode.value" in text
    assert "shape: [2, 3]" in text and "e: [0, 1, 2]" in text
    back = parse_workflow(text)
    use = back.nodes["use"]
    assert use.inputs["a"] == Edge("clip", "value")
    assert use.inputs["b"] == Literal("clip.value") and use.inputs["c"] == Literal({"literal": 1})
    assert use.inputs["e"] == Literal([0, 1, 2]) and use.inputs["f"] == Literal(["x", 1.5])
    assert use.params == {"op": "add", "shape": [2, 3], "scale": 0.5}
    assert use.layout == {"x": 1.5, "y": -2}
    assert dump_workflow(back) == text


def test_dump_quotes_ids_and_strings_yaml_would_misread():
    wf = Workflow(nodes={"on": NodeSpec("on", "Value", params={"value": "yes", "n": "12", "empty": ""}),
                         "x": NodeSpec("x", "Math", inputs={"a": Edge("on", "value")})},
                  meta={"description": "one line"})
    back = parse_workflow(dump_workflow(wf))
    assert back == wf


# --- overrides ---


def overridable() -> Workflow:
    return parse("""
        version: 1
        nodes:
          ramp:
            type: Range
            params: {num: 10}
          rnd:
            type: RandomArray
          op:
            type: Math
            inputs: {a: ramp.array}
    """)


def test_overrides_are_typed_and_applied(registry):
    wf = overridable()
    apply_overrides(wf, ["ramp.num=25", "ramp.stop=2.5", "rnd.shape=[3, 4]", "rnd.seed=", "op.op=div"], registry)
    assert wf.nodes["ramp"].params == {"num": 25, "stop": 2.5}
    assert wf.nodes["rnd"].params == {"shape": [3, 4], "seed": None}
    assert wf.nodes["op"].params == {"op": "div"}
    assert "num: 25" in dump_workflow(wf)
    # a text parameter keeps text that YAML alone would read as a bool or number
    texts = parse("version: 1\nnodes:\n  v: {type: Value}\n  save: {type: SaveArray}\n")
    apply_overrides(texts, ["save.path=on", "v.value=on"], registry)
    assert texts.nodes["save"].params == {"path": "on"}
    assert texts.nodes["v"].params == {"value": True}  # Value takes anything: YAML's reading stands


def test_bad_overrides_are_reported_together_and_good_ones_still_apply(registry):
    wf = overridable()
    with pytest.raises(WorkflowError) as info:
        apply_overrides(wf, ["ramp.num=0", "rmap.num=3", "ramp.nmu=3", "op.op=mull", "rnd.seed=abc",
                             "rnd.shape=[1", "justtext", "rnd.scale=0.5"], registry)
    messages = [p.message for p in info.value.problems]
    assert len(messages) == 7, messages
    assert messages[0] == "--set ramp.num=0: param 'num' = 0: must be ≥ 1"
    assert "no node 'rmap' in this workflow (did you mean 'ramp'?)" in messages[1]
    assert "has no parameter 'nmu' (did you mean 'num'?)" in messages[2]
    assert "param 'op' = 'mull': not one of 'add', 'sub', 'mul', 'div', 'pow', 'max', 'min' (did you mean 'mul'?)" in messages[3]
    assert "param 'seed' = 'abc': should be a valid integer" in messages[4]
    assert "cannot read the value '[1'" in messages[5]
    assert "expected NODE.PARAM=VALUE" in messages[6]
    assert all(p.kind == "override" for p in info.value.problems)
    assert wf.nodes["ramp"].params == {"num": 10}  # the bad value was not applied
    assert wf.nodes["rnd"].params == {"scale": 0.5}  # the good one was


def test_override_on_node_of_unknown_type(registry):
    wf = parse("version: 1\nnodes:\n  a: {type: Nope}\n")
    with pytest.raises(WorkflowError, match="node 'a' has unknown type 'Nope'"):
        apply_overrides(wf, ["a.x=1"], registry)


def test_the_documented_example_is_valid_and_round_trips(registry):
    from graphcore.validation import compile_workflow

    doc = (Path(__file__).parents[1] / "docs" / "workflow-format.md").read_text()
    example = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    wf = parse_workflow(example, Path("/somewhere/example.yaml"))
    assert wf.nodes["scaled"].inputs["b"] == Literal(0.5)
    graph = compile_workflow(wf, registry)
    assert graph.order == ["ramp", "noise", "noisy", "smooth", "scaled", "stats", "save"]
    assert parse_workflow(dump_workflow(wf), wf.path) == wf


def test_top_level_layout_holds_editor_groups_and_stays_out_of_keys(registry):
    from graphcore.keys import compute_keys
    from graphcore.validation import compile_workflow

    text = ("version: 1\nnodes:\n  t: {type: Range, params: {num: 4}}\n"
            "layout:\n  groups:\n  - {title: input, bounding: [0, 0, 300, 200], color: '#3f789e'}\n")
    wf = parse_workflow(text)
    assert wf.layout == {"groups": [{"title": "input", "bounding": [0, 0, 300, 200], "color": "#3f789e"}]}
    again = parse_workflow(dump_workflow(wf))
    assert again.layout == wf.layout and again.nodes == wf.nodes
    plain = parse_workflow("version: 1\nnodes:\n  t: {type: Range, params: {num: 4}}\n")
    keys = [compute_keys(compile_workflow(w, registry), run_salt="s") for w in (wf, plain)]
    assert keys[0] == keys[1]
    with pytest.raises(WorkflowError, match="top-level 'layout' must be a mapping"):
        parse_workflow("version: 1\nnodes: {}\nlayout: [1, 2]\n")
