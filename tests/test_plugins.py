"""Extension nodes: entry points, --plugins (file and folder), GRAPHRUN_PLUGINS, broken and
clashing plugins, and the worked example plugin installed with pip."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from engine_helpers import ROOT, graphrun, subprocess_env, write_workflow

from graphcore.registry import build_registry

NODE_SOURCE = """
import numpy as np
from graphcore import Node, In, Out

class {name}(Node):
    '''Multiply by {factor}.'''
    category = "{category}"
    inputs = {{"x": In("Array")}}
    outputs = {{"y": Out("Array")}}

    def run(self, ctx, x):
        return {{"y": x * {factor}}}
"""


def plugin_file(folder: Path, module: str, name: str, factor: int = 2, category: str = "plugged") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{module}.py"
    path.write_text(NODE_SOURCE.format(name=name, factor=factor, category=category))
    return path


def fake_distribution(site: Path, dist: str, entry_points: dict[str, str]) -> None:
    """An installed distribution as importlib.metadata sees it: a *.dist-info with entry points."""
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[graphrun.nodes]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))


def chain(tmp_path: Path, node_type: str) -> Path:
    return write_workflow(tmp_path, f"""
    version: 1
    nodes:
      x: {{type: Range, params: {{start: 1, stop: 3, num: 3}}}}
      p: {{type: {node_type}, inputs: {{x: x.array}}}}
      s: {{type: Stats, inputs: {{x: p.y}}}}
    """, f"{node_type}.yaml")


def test_entry_point_from_an_installed_distribution(tmp_path):
    site = tmp_path / "site"
    plugin_file(site, "tripler_nodes", "Triple", factor=3)
    (site / "broken_nodes.py").write_text("import a_module_that_does_not_exist\n")
    fake_distribution(site, "tripler", {"triple": "tripler_nodes", "broken": "broken_nodes"})
    env = subprocess_env(PYTHONPATH=os.pathsep.join([str(site), subprocess_env()["PYTHONPATH"]]))

    listing = graphrun("nodes", env=env)
    assert listing.returncode == 0, listing.stderr
    line = next(line for line in listing.stdout.splitlines() if "Triple" in line)
    assert "tripler (triple)" in line
    # the broken entry point is named, and everything else still works
    assert "entry point broken = broken_nodes" in listing.stderr and "a_module_that_does_not_exist" in listing.stderr
    assert "Math" in listing.stdout

    wf = chain(tmp_path, "Triple")
    res = graphrun(wf, "--cache", tmp_path / "cache", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "warning: plugin entry point broken" in res.stderr


def test_plugins_option_file_and_folder(tmp_path):
    single = plugin_file(tmp_path / "single", "double_nodes", "Double")
    folder = tmp_path / "folder"
    plugin_file(folder, "a_nodes", "Quadruple", factor=4)
    package = folder / "pkg_nodes"
    package.mkdir()
    # a package names the nodes it exports (its submodules' classes are not picked up by themselves)
    (package / "__init__.py").write_text("from .impl import Quintuple\nNODES = [Quintuple]\n")
    (package / "impl.py").write_text(NODE_SOURCE.format(name="Quintuple", factor=5, category="plugged"))

    registry = build_registry([single, folder], entry_points=False, env=False)
    assert not registry.errors, registry.errors
    assert {"Double", "Quadruple", "Quintuple"} <= set(registry.names())
    assert registry.get("Double").origin == f"plugin:{single}"

    res = graphrun(chain(tmp_path, "Quintuple"), "--cache", tmp_path / "cache", "--plugins", single,
                   "--plugins", folder, "--events", tmp_path / "ev.jsonl")
    assert res.returncode == 0, res.stdout + res.stderr
    finished = [json.loads(line) for line in (tmp_path / "ev.jsonl").read_text().splitlines()]
    assert any(e["kind"] == "finished" and e["node_type"] == "Quintuple" for e in finished)


def test_graphrun_plugins_environment_variable(tmp_path):
    one = plugin_file(tmp_path / "one", "six_nodes", "Sextuple", factor=6)
    two = plugin_file(tmp_path / "two", "seven_nodes", "Septuple", factor=7)
    env = subprocess_env(GRAPHRUN_PLUGINS=os.pathsep.join([str(one), str(two)]))
    res = graphrun("nodes", "--json", env=env)
    assert res.returncode == 0, res.stderr
    nodes = json.loads(res.stdout)["nodes"]
    assert nodes["Sextuple"]["origin"] == f"plugin:{one}" and nodes["Septuple"]["origin"] == f"plugin:{two}"


def test_broken_and_clashing_plugins_are_named_and_builtins_keep_working(tmp_path, capsys):
    from graphcore.cli import main

    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('this plugin is broken on purpose')\n")
    clash = plugin_file(tmp_path, "clash", "Math")  # a built-in's name
    partial = tmp_path / "partial.py"  # one new node and one clash: the plugin loads all or nothing
    partial.write_text(NODE_SOURCE.format(name="Fresh", factor=2, category="x")
                       + NODE_SOURCE.format(name="Stats", factor=2, category="x"))

    registry = build_registry([broken, clash, partial], entry_points=False, env=False)
    messages = {e.plugin: e.message for e in registry.errors}
    assert "this plugin is broken on purpose" in messages[str(broken)]
    assert "'Math' (already from graphcore)" in messages[str(clash)]
    assert "'Stats'" in messages[str(partial)] and "Fresh" not in registry
    assert registry.get("Math").origin == "graphcore"

    wf = write_workflow(tmp_path, """
    version: 1
    nodes:
      x: {type: Range, params: {num: 3}}
      y: {type: Math, params: {op: mul, b: 2.0}, inputs: {a: x.array}}
    """)
    code = main([str(wf), "--cache", str(tmp_path / "cache"), "--plugins", str(broken), "--plugins", str(clash)])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert f"warning: plugin {broken}" in err and f"warning: plugin {clash}" in err
    assert "Traceback" not in err
    code = main(["nodes", "--plugins", str(broken)])
    out, err = capsys.readouterr()
    assert "plugins that failed to load" in out and str(broken) in out


EXAMPLE_PLUGIN = ROOT / "examples" / "plugins" / "graphrun-example-nodes"


def test_example_plugin_installs_and_runs(tmp_path):
    """The worked examples of docs/custom-nodes.md, installed the way a user installs a package:
    signal nodes, and a learned node with its registry entry, trainer and bundled checkpoint."""
    target = tmp_path / "site"
    source = tmp_path / "source"  # a copy: building writes build/ and *.egg-info next to the sources
    shutil.copytree(EXAMPLE_PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "out"))
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target", str(target),
         str(source)], capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False)
    assert pip.returncode == 0, pip.stderr
    env = subprocess_env(PYTHONPATH=os.pathsep.join([str(target), subprocess_env()["PYTHONPATH"]]))

    described = graphrun("nodes", "describe", "Envelope", env=env)
    assert described.returncode == 0, described.stderr
    assert "graphrun-example-nodes (example)" in described.stdout and "envelope: Envelope" in described.stdout
    # the node declares nothing: the engine found the module its run() imports
    assert "code dependencies" in described.stdout and "imported: graphrun_example, graphrun_example.dsp" in described.stdout

    wf = tmp_path / "example.yaml"
    wf.write_text((EXAMPLE_PLUGIN / "example.yaml").read_text())
    res = graphrun(wf, "--cache", tmp_path / "cache", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads((tmp_path / "out" / "loudness.json").read_text())
    assert 0.3 < report["fraction_above"] < 0.9 and report["samples_above"] == round(report["fraction_above"] * 5000)
    assert str(tmp_path / "out" / "loudness.json") in res.stdout

    # the learned node: one registry entry + one node file, with the checkpoint the package ships
    described = graphrun("nodes", "describe", "Denoise", env=env)
    assert described.returncode == 0, described.stderr
    assert "checkpoint: Checkpoint (optional)" in described.stdout and '"tiny": 745' in described.stdout
    assert str(target / "graphrun_example" / "checkpoints" / "denoiser_tiny.pt") in described.stdout  # package data
    for name in ("denoise.yaml", "train_denoiser.yaml"):
        (tmp_path / name).write_text((EXAMPLE_PLUGIN / name).read_text())
    res = graphrun(tmp_path / "denoise.yaml", "--cache", tmp_path / "cache", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    before, after = (json.loads((tmp_path / "out" / f"noise_{w}.json").read_text())["std"] for w in ("before", "after"))
    assert 0.29 < before < 0.31 and after < before / 3
    # its trainer makes a checkpoint that feeds the node (a few steps here; the bundled one: 600)
    res = graphrun(tmp_path / "train_denoiser.yaml", "--cache", tmp_path / "cache", "--set", "train.steps=30",
                   "--set", f"train.save_to={tmp_path / 'mine.pt'}", "--set", f"train.work_dir={tmp_path / 'work'}", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "denoiser trained for 30 steps" in res.stdout
    counts = subprocess.run(
        [sys.executable, "-c", "import graphrun_example.learned as m; from nodes.model_registry import count_preset as c; "
                               "print([c(m.DENOISER, p)['total'] == n for p, n in m.DENOISER.parameters.items()])"],
        capture_output=True, text=True, env=env, timeout=120, check=False)
    assert counts.stdout.strip() == "[True, True]", counts.stdout + counts.stderr  # the spec's pinned counts hold

def test_a_plugin_split_over_two_files(tmp_path):
    """`--plugins dir/` where nodes.py imports its sibling vig_math.py works without PYTHONPATH,
    and the sibling is part of the node's code: editing it recomputes the node."""
    folder = tmp_path / "vig"
    folder.mkdir()
    (folder / "nodes.py").write_text(
        "import vig_math\n\nfrom graphcore import In, Node, Out\n\n\n"
        "class Vignette(Node):\n"
        "    inputs = {'x': In('Array')}\n    outputs = {'y': Out('Array')}\n\n"
        "    def run(self, ctx, x):\n        return {'y': vig_math.weigh(x)}\n")
    (folder / "vig_math.py").write_text("def weigh(x):\n    return x * 2.0\n")
    wf = write_workflow(tmp_path, """
    version: 1
    nodes:
      x: {type: Range, params: {start: 1, stop: 3, num: 3}}
      v: {type: Vignette, inputs: {x: x.array}}
      s: {type: SaveArray, params: {path: out/v.npy}, inputs: {array: v.y}}
    """, "vig.yaml")
    env = subprocess_env()
    assert "vig" not in env["PYTHONPATH"]

    def run() -> list[dict]:
        res = graphrun(wf, "--cache", tmp_path / "cache", "--plugins", folder, "--events", tmp_path / "ev.jsonl", env=env)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "warning" not in res.stderr, res.stderr
        return [json.loads(line) for line in (tmp_path / "ev.jsonl").read_text().splitlines()]

    import numpy as np

    events = run()
    assert any(e["kind"] == "finished" and e["node_type"] == "Vignette" for e in events)
    assert np.load(tmp_path / "out" / "v.npy").tolist() == [2.0, 4.0, 6.0]
    assert any(e["kind"] == "cached" and e["node_type"] == "Vignette" for e in run())
    (folder / "vig_math.py").write_text("def weigh(x):\n    return x * 3.0\n")
    assert any(e["kind"] == "finished" and e["node_type"] == "Vignette" for e in run())
    assert np.load(tmp_path / "out" / "v.npy").tolist() == [3.0, 6.0, 9.0]


BAD_PORT_PLUGIN = """
from graphcore import In, Node, Out

class Vignetter(Node):
    inputs = {"image": In("Imagee")}
    outputs = {"image": Out("Array")}

    def run(self, ctx, image):
        return {"image": image}

class Fine(Node):
    outputs = {"y": Out("Scalar")}

    def run(self, ctx):
        return {"y": 1.0}
"""


def test_a_port_type_typo_is_refused_at_registration_and_the_rest_works(tmp_path, capsys):
    """In("Imagee") is refused when the plugin loads, with a message naming the plugin, the node
    and the port; describe, the schema and the editor's palette keep working for every other node."""
    from ui_testkit import browser_client, make_project

    import nodes.types  # noqa: F401  (registers the talking-face types, among them Image)
    from graphcore.cli import main
    from graphcore.types import ScalarType, register_type
    from ui.app import create_app
    from ui.config import UIConfig

    bad = tmp_path / "bad_ports.py"
    bad.write_text(BAD_PORT_PLUGIN)
    good = plugin_file(tmp_path / "good", "good_nodes", "Octuple", factor=8)

    registry = build_registry([bad, good], entry_points=False, env=False)
    (err,) = registry.errors
    assert err.plugin == str(bad)
    assert err.message == "node type 'Vignetter' input 'image': unknown port type 'Imagee' (did you mean 'Image'?)"
    assert "Vignetter" not in registry and "Fine" not in registry  # a plugin loads all or nothing
    assert "Octuple" in registry and "Math" in registry
    schema = registry.schema()
    assert {"Octuple", "Math"} <= set(schema["nodes"]) and schema["plugin_errors"][0]["plugin"] == str(bad)

    assert main(["nodes", "describe", "Octuple", "--plugins", str(bad), "--plugins", str(good)]) == 0
    out, errs = capsys.readouterr()
    assert "Octuple" in out and f"warning: plugin {bad}: node type 'Vignetter' input 'image'" in errs
    assert main(["nodes", "describe", "Vignetter", "--plugins", str(bad)]) == 2
    out, errs = capsys.readouterr()
    assert "unknown node type 'Vignetter'" in errs and "Traceback" not in out + errs
    assert main(["nodes", "--json", "--plugins", str(bad)]) == 0
    assert "Math" in json.loads(capsys.readouterr().out)["nodes"]

    # other mistakes a palette could not show
    for source, message in [
        ("outputs = {'y': Out('Scalar')}\n    inputs = {'bad name': In('Array')}", "input name 'bad name' must be an identifier"),
        ("outputs = {'y': 'Scalar'}", "node type 'Oops' output 'y': expected Out(...), got 'Scalar'"),
        ("outputs = {'y': Out(ArrayType('Unregistered'))}", "port type 'Unregistered' is not registered"),
        ("outputs = {'y': Out('Scalar')}\n    Params = dict", "Params must be a pydantic BaseModel class"),
    ]:
        plugin = tmp_path / "oops" / f"oops_{abs(hash(source))}.py"
        plugin.parent.mkdir(exist_ok=True)
        plugin.write_text("from graphcore import ArrayType, In, Node, Out\n\nclass Oops(Node):\n    " + source +
                          "\n\n    def run(self, ctx, **kw):\n        return {'y': 1.0}\n")
        (err,) = build_registry([plugin], entry_points=False, env=False).errors
        assert message in err.message, (source, err.message)

    # extra_schema() is the node's own code, run only when a schema is asked for: one that fails
    # or is not JSON leaves that node out of the palette, and describe says why
    facts = tmp_path / "facts_nodes.py"
    facts.write_text("from graphcore import Node, Out\n\n"
                     "class Broken(Node):\n    outputs = {'y': Out('Scalar')}\n\n    def run(self, ctx):\n        return {'y': 1.0}\n\n"
                     "    @classmethod\n    def extra_schema(cls):\n        raise RuntimeError('no weights to count')\n\n"
                     "class Odd(Broken):\n    @classmethod\n    def extra_schema(cls):\n        return {'f': object()}\n")
    registry = build_registry([facts, good], entry_points=False, env=False)
    assert not registry.errors and {"Broken", "Odd"} <= set(registry.names())
    schema = registry.schema()
    assert "Octuple" in schema["nodes"] and not {"Broken", "Odd"} & set(schema["nodes"])
    assert [e["message"] for e in schema["plugin_errors"]] == [
        "node type 'Broken': its schema failed (RuntimeError: no weights to count)",
        "node type 'Odd': its schema failed (TypeError: Object of type object is not JSON serializable)"]
    assert main(["nodes", "describe", "Broken", "--plugins", str(facts)]) == 2
    assert "node type 'Broken' (from plugin:" in capsys.readouterr().err

    # the editor's palette endpoint still lists the other nodes
    project = make_project(tmp_path / "project")
    config = UIConfig.create(project.root, upload_dir=tmp_path / "uploads", cache_url=str(tmp_path / "cache"),
                             plugin_paths=[str(bad), str(good)])
    with browser_client(create_app(config), config) as client:
        palette = client.get("/talkgraph/schema").json()
    assert {"Octuple", "Math", "Range"} <= set(palette["nodes"]) and "Vignetter" not in palette["nodes"]
    assert any("Imagee" in e["message"] for e in palette["plugin_errors"])

    # a port type that cannot be exported is refused when it is registered
    with pytest.raises(ValueError, match="port type 'Weird' from test: its schema cannot be exported"):
        register_type(type("WeirdType", (ScalarType,), {"name": "Weird", "schema": lambda self: {"x": object()}})(), "test")
