"""`graphrun` end to end: running, validation errors, listing and describing nodes, help."""
from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
from engine_helpers import ROOT, TEST_NODES, graphrun, subprocess_env, write_workflow

from graphcore.cli import main
from graphcore.events import read_events

EXAMPLE = ROOT / "workflows" / "examples" / "signal.yaml"


def cli(capsys, *args):
    """Run `graphrun` in this process; returns (exit code, stdout, stderr)."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def example(tmp_path):
    wf = tmp_path / "signal.yaml"
    shutil.copy(EXAMPLE, wf)
    return wf


def test_example_workflow_runs_caches_and_reruns_only_what_changed(tmp_path, example):
    cache = tmp_path / "cache"
    first = graphrun(example, "--cache", cache, "--events", tmp_path / "ev1.jsonl")
    assert first.returncode == 0, first.stderr + first.stdout
    smoothed = tmp_path / "out" / "smoothed.npy"
    assert str(smoothed) in first.stdout and str(tmp_path / "out" / "error_stats.json") in first.stdout
    assert np.load(smoothed).shape == (4000,)
    assert "done: 9 ran" in first.stdout and "Traceback" not in first.stderr

    second = graphrun(example, "--cache", cache, "--set", "smooth.window=101", "--jobs", "2",
                      "--events", tmp_path / "ev2.jsonl")
    assert second.returncode == 0, second.stderr
    ran = {e.node_id for e in read_events(tmp_path / "ev2.jsonl") if e.kind == "started"}
    assert ran == {"smooth", "residual", "error_stats", "save_signal", "save_stats"}
    assert "5 ran, 4 cached" in second.stdout


def test_validation_problems_are_all_reported_with_exit_code_2(tmp_path, capsys):
    wf = write_workflow(tmp_path, """
    version: 1
    nodes:
      a: {type: Rangee}
      b: {type: Range, params: {num: 0, colour: red}}
      c: {type: Math, inputs: {a: b.nope}}
      d: {type: Stats, inputs: {x: e.y}}
      e: {type: Function, inputs: {x: d.metrics}}
      f: {type: LoadArray, params: {path: missing.npy}}
      g: {type: MovingAverage}
    """)
    code, out, err = cli(capsys, "validate", wf)
    assert code == 2 and "Traceback" not in err
    lines = err.splitlines()
    expect = [
        ("wf.yaml:3", "node 'a'", "Rangee", "Range"),         # unknown type, with a suggestion
        ("wf.yaml:4", "node 'b'", "num"),                      # out of bounds
        ("wf.yaml:4", "node 'b'", "colour"),                   # unknown parameter
        ("wf.yaml:5", "node 'c'", "nope"),                     # unknown port
        ("node 'e'", "Metrics", "Array"),                      # edge type mismatch names both types
        ("cycle",),                                            # names the cycle
        ("wf.yaml:8", "node 'f'", "missing.npy"),              # missing input file
        ("wf.yaml:9", "node 'g'", "x"),                        # missing required input
    ]
    for parts in expect:
        assert any(all(p in line for p in parts) for line in lines), (parts, err)
    cycle = next(line for line in lines if "cycle" in line)
    assert "d" in cycle and "e" in cycle
    # running the same file reports the same problems and runs nothing
    code2, out2, err2 = cli(capsys, wf, "--cache", tmp_path / "cache")
    assert code2 == 2 and "nothing was run" in err2
    assert not (tmp_path / "cache").exists()


def test_malformed_yaml_and_missing_file_give_messages_not_tracebacks(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nnodes:\n  a: {type: Range\n  b: [\n")
    code, out, err = cli(capsys, bad)
    assert code == 2 and "bad.yaml:" in err and "Traceback" not in err
    code, out, err = cli(capsys, tmp_path / "nope.yaml")
    assert code == 2 and "not found" in err


def test_bad_override_is_a_validation_error(tmp_path, capsys, example):
    code, out, err = cli(capsys, "validate", example, "--set", "smooth.window=zero", "--set", "ghost.x=1")
    assert code == 2
    assert "--set smooth.window=zero" in err and "--set ghost.x=1" in err


def test_failed_run_exits_1_and_names_node_type_and_error(tmp_path):
    wf = write_workflow(tmp_path, """
    version: 1
    nodes:
      src: {type: Range, params: {num: 3}}
      bad: {type: Fail, params: {message: "frame 7: no face found"}, inputs: {x: src.array}}
      boom: {type: Fail, params: {kind: exception, message: "division went wrong"}}
      after: {type: Stats, inputs: {x: bad.y}}
      fine: {type: Stats, inputs: {x: src.array}}
    """)
    res = graphrun(wf, "--cache", tmp_path / "cache", "--plugins", TEST_NODES)
    assert res.returncode == 1, res.stdout + res.stderr
    text = res.stdout
    assert "error in node bad (Fail): frame 7: no face found" in text
    assert "error in node boom (Fail): ZeroDivisionError: division went wrong" in text
    assert "helper_that_breaks" in text  # a short traceback tail for unexpected exceptions...
    assert text.count("Traceback") == 1  # ...and none for the NodeError
    assert "skipped" in text and "fine" in text
    assert "failed: 2 ran, 2 failed, 1 skipped" in text


def test_nodes_lists_groups_with_origin_and_json(capsys):
    code, out, err = cli(capsys, "nodes")
    assert code == 0
    assert "basic" in out and "signal" in out and "io" in out
    assert any("Math" in line and "[graphcore]" in line for line in out.splitlines())
    code, out, err = cli(capsys, "nodes", "--json")
    schema = json.loads(out)
    assert schema["nodes"]["Math"]["category"] == "basic" and "Array" in schema["types"]
    assert schema["plugin_errors"] == []


def test_nodes_describe(capsys):
    code, out, err = cli(capsys, "nodes", "describe", "MovingAverage")
    assert code == 0
    assert "x: Array" in out and "y: Array" in out
    assert "window: integer; default 5; >= 1; <= 10001 — window length in samples" in out
    code, out, err = cli(capsys, "nodes", "describe", "Math")
    assert 'one of "add", "sub"' in out
    code, out, err = cli(capsys, "nodes", "describe", "SaveArray")
    assert "file written" in out
    code, out, err = cli(capsys, "nodes", "describe", "Mathh")
    assert code == 2 and "did you mean 'Math'" in err
    code, out, err = cli(capsys, "nodes", "describe", "Math", "--json")
    assert json.loads(out)["params"]["properties"]["op"]["default"] == "add"


def test_describe_shows_extra_schema_facts(tmp_path, capsys):
    plugin = tmp_path / "facts.py"
    plugin.write_text(
        "from graphcore import Node, Out\n"
        "class Big(Node):\n"
        "    '''A model with many weights.'''\n"
        "    outputs = {'y': Out('Array')}\n"
        "    def run(self, ctx):\n"
        "        return {}\n"
        "    @classmethod\n"
        "    def extra_schema(cls):\n"
        "        return {'parameter_count': 123456}\n"
    )
    code, out, err = cli(capsys, "nodes", "describe", "Big", "--plugins", plugin)
    assert code == 0 and "parameter_count: 123456" in out and "A model with many weights." in out


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["validate", "--help"], ["nodes", "--help"],
                                  ["nodes", "describe", "--help"], ["cache", "--help"], ["ui", "--help"]])
def test_help_everywhere(capsys, args):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 0
    assert "usage: graphrun" in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("graphrun (talkgraph) ")


def test_ui_without_the_ui_package_says_so(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ui", None)  # as if the ui package were not installed
    monkeypatch.delitem(sys.modules, "ui.app", raising=False)
    code, out, err = cli(capsys, "ui")
    assert code == 2 and "the command 'ui' (from talkgraph) cannot start: missing module 'ui" in err
    assert "Traceback" not in out + err


def test_unknown_executor_is_a_usage_error(tmp_path, capsys, example):
    code, out, err = cli(capsys, example, "--cache", tmp_path / "c", "--executor", "spark")
    assert code == 2 and "unknown executor 'spark'" in err


def test_code_change_invalidates_but_comments_do_not(tmp_path):
    plugin = tmp_path / "mynodes.py"
    source = (
        "import numpy as np\n"
        "from graphcore import Node, In, Out\n"
        "class Shift(Node):\n"
        "    '''Add one.'''\n"
        "    inputs = {'x': In('Array')}\n"
        "    outputs = {'y': Out('Array')}\n"
        "    def run(self, ctx, x):\n"
        "        return {'y': x + 1}  # shift\n"
    )
    plugin.write_text(source)
    wf = write_workflow(tmp_path, """
    version: 1
    nodes:
      x: {type: Range, params: {num: 3}}
      s: {type: Shift, inputs: {x: x.array}}
      t: {type: Stats, inputs: {x: s.y}}
    """)
    env = subprocess_env(GRAPHRUN_PLUGINS=str(plugin))

    def ran(tag):
        res = graphrun(wf, "--cache", tmp_path / "cache", "--events", tmp_path / f"{tag}.jsonl", env=env)
        assert res.returncode == 0, res.stdout + res.stderr
        return {e.node_id for e in read_events(tmp_path / f"{tag}.jsonl") if e.kind == "started"}

    assert ran("first") == {"x", "s", "t"}
    plugin.write_text(source.replace("'''Add one.'''", "'''Add one to every element.'''").replace("# shift", "# +1"))
    assert ran("docs") == set()
    plugin.write_text(source.replace("x + 1", "x + 2"))
    assert ran("code") == {"s", "t"}
