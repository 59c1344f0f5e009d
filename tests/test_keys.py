"""Cache keys: deterministic across processes, sensitive to exactly what changes results."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from engine_helpers import TESTS, compile_file, engine_registry, subprocess_env, write_workflow

from graphcore.keys import compute_keys
from graphcore.workflow import WorkflowError

WF = """
version: 1
nodes:
  data:
    type: LoadArray
    params: {path: data.npy}
    layout: {x: 10, y: 20}
  scaled:
    type: Math
    params: {op: mul, b: 3.0}
    inputs: {a: data.array}
  lit:
    type: Math
    params: {op: add}
    inputs: {a: [1.0, 2.0, 3.0], b: scaled.result}
  noise: {type: Noise}
  seeded: {type: Noise, params: {seed: 4}}
"""


@pytest.fixture()
def workflow(tmp_path):
    np.save(tmp_path / "data.npy", np.arange(5.0))
    return write_workflow(tmp_path, WF)


def test_keys_identical_in_another_process(workflow):
    keys = compute_keys(compile_file(workflow), run_salt="s")
    script = (
        "import json, sys\n"
        "from engine_helpers import compile_file\n"
        "from graphcore.keys import compute_keys\n"
        f"print(json.dumps(compute_keys(compile_file(__import__('pathlib').Path({str(workflow)!r})), run_salt='s')))\n"
    )
    env = subprocess_env(PYTHONHASHSEED="123")
    out = subprocess.run([sys.executable, "-c", script], cwd=TESTS, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == keys


REORDERED = """
version: 1
nodes:
  seeded: {type: Noise, params: {seed: 4}}
  noise: {type: Noise}
  lit:
    type: Math
    params: {op: add}
    inputs: {a: [1.0, 2.0, 3.0], b: scaled.result}
  scaled:
    type: Math
    inputs: {a: data.array}
    params: {b: 3.0, op: mul}
  data:
    type: LoadArray
    layout: {x: 999, y: -5, collapsed: true}
    params: {path: data.npy}
"""


def test_layout_and_node_order_do_not_change_keys(tmp_path, workflow):
    keys = compute_keys(compile_file(workflow), "s")
    other = write_workflow(tmp_path, REORDERED, "moved.yaml")
    assert compute_keys(compile_file(other), "s") == keys


def test_param_change_changes_node_and_descendants_only(tmp_path, workflow):
    keys = compute_keys(compile_file(workflow), "s")
    changed = write_workflow(tmp_path, WF.replace("b: 3.0", "b: 4.0"), "changed.yaml")
    keys2 = compute_keys(compile_file(changed), "s")
    assert {n for n in keys if keys[n] != keys2[n]} == {"scaled", "lit"}


def test_equal_parameter_values_give_equal_keys(tmp_path, workflow):
    keys = compute_keys(compile_file(workflow), "s")
    as_int = write_workflow(tmp_path, WF.replace("b: 3.0", "b: 3"), "int.yaml")
    # pydantic coerces 3 to the declared float: same parameter value, same key
    assert compute_keys(compile_file(as_int), "s")["scaled"] == keys["scaled"]


def test_input_file_content_changes_key(workflow):
    keys = compute_keys(compile_file(workflow), "s")
    np.save(workflow.parent / "data.npy", np.arange(6.0))
    keys2 = compute_keys(compile_file(workflow), "s")
    assert {n for n in keys if keys[n] != keys2[n]} == {"data", "scaled", "lit"}


def test_literal_inputs_keyed_by_content(tmp_path, workflow):
    keys = compute_keys(compile_file(workflow), "s")
    other = write_workflow(tmp_path, WF.replace("[1.0, 2.0, 3.0]", "[1.0, 2.0, 3.5]"), "lit.yaml")
    keys2 = compute_keys(compile_file(other), "s")
    assert {n for n in keys if keys[n] != keys2[n]} == {"lit"}


def test_salt_only_for_unseeded_recompute_nodes(workflow):
    a = compute_keys(compile_file(workflow), "salt-a")
    b = compute_keys(compile_file(workflow), "salt-b")
    assert {n for n in a if a[n] != b[n]} == {"noise"}


def test_path_literal_keyed_by_file_content(tmp_path):
    registry = engine_registry()
    from graphcore.node import In, Node, Out

    (tmp_path / "a.txt").write_text("one")
    wf = write_workflow(tmp_path, """
        version: 1
        nodes:
          v: {type: Value, params: {value: 1}}
    """)
    graph = compile_file(wf, registry)
    # A Path-typed literal on a node built in code: its key follows the file's content.
    from graphcore.workflow import BoundNode, Literal, NodeSpec

    class ReadText(Node):
        inputs = {"p": In("Path")}
        outputs = {"t": Out("String")}

        def run(self, ctx, p):
            return {"t": open(p).read()}

    spec = NodeSpec("r", "ReadText", inputs={"p": Literal("a.txt")})
    graph.nodes["r"] = BoundNode(spec, ReadText, ReadText.Params(), {"p": Literal("a.txt")})
    graph.order.append("r")
    k1 = compute_keys(graph, "s")["r"]
    (tmp_path / "a.txt").write_text("two")
    k2 = compute_keys(graph, "s")["r"]
    assert k1 != k2
    (tmp_path / "a.txt").unlink()
    with pytest.raises(WorkflowError) as err:
        compute_keys(graph, "s")
    assert "a.txt" in str(err.value) and "'r'" in str(err.value)
