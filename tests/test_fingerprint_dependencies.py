"""Code dependencies: the modules of its own project that a node's code imports (found by the
engine, graphcore/imports.py) and the ones it declares in `code_dependencies` are part of its
fingerprint."""
from __future__ import annotations

import sys
import textwrap

import pytest

from graphcore import fingerprint, imports, source
from graphcore.fingerprint import code_fingerprint
from graphcore.imports import class_imports, scope_of
from graphcore.node import Node, Out
from graphcore.registry import NodeRegistry, build_registry
from graphcore.source import CodeDependencyError, dependency_files


@pytest.fixture()
def helpers(tmp_path, monkeypatch):
    """A package `fp_helpers` on sys.path whose __init__ would fail if it were run."""
    pkg = tmp_path / "fp_helpers"
    (pkg / "inner").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('importing fp_helpers runs it')\n")
    (pkg / "maths.py").write_text('"""Helpers."""\n\ndef scale(x):\n    return x * 2  # double\n')
    (pkg / "inner" / "__init__.py").write_text("")
    (pkg / "inner" / "deep.py").write_text("K = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(fingerprint, "_dependency_memo", {})
    yield pkg
    for name in [m for m in sys.modules if m.startswith("fp_helpers")]:
        del sys.modules[name]


def node_with(*deps: str) -> type[Node]:
    return type("Doubler", (Node,), {"code_dependencies": deps, "outputs": {"y": Out("Array")},
                                     "run": lambda self, ctx: {"y": None}, "__module__": __name__})


def fresh_fingerprint(cls: type) -> str:
    """As a new process would compute it (every memo of source read is per process)."""
    for memo in (fingerprint._dependency_memo, imports._facts_memo, imports._imports_memo, source._digest_memo,
                 source._tree_memo, source._file_memo, source._top_memo):
        memo.clear()
    return code_fingerprint(cls)


def test_editing_a_dependency_changes_the_fingerprint(helpers):
    cls = node_with("fp_helpers.maths")
    before = fresh_fingerprint(cls)
    assert before != fresh_fingerprint(node_with())
    (helpers / "maths.py").write_text('"""Helpers, reworded."""\n\n\ndef scale(x):\n    return x*2  # twice\n')
    assert fresh_fingerprint(cls) == before  # docstrings, comments and formatting do not count
    (helpers / "maths.py").write_text('def scale(x):\n    return x * 3\n')
    assert fresh_fingerprint(cls) != before


def test_a_package_covers_all_its_modules_and_nothing_is_imported(helpers):
    names = [name for name, _ in dependency_files("fp_helpers")]
    assert names == ["fp_helpers", "fp_helpers.inner", "fp_helpers.inner.deep", "fp_helpers.maths"]
    assert [n for n, _ in dependency_files("fp_helpers.inner.deep")] == ["fp_helpers.inner.deep"]
    assert "fp_helpers" not in sys.modules  # its __init__ raises: it never ran
    cls = node_with("fp_helpers")
    before = fresh_fingerprint(cls)
    (helpers / "inner" / "deep.py").write_text("K = 2\n")
    assert fresh_fingerprint(cls) != before


def test_fingerprint_is_memoised_per_process(helpers):
    cls = node_with("fp_helpers.maths")
    before = code_fingerprint(cls)
    (helpers / "maths.py").write_text("def scale(x):\n    return x * 3\n")
    assert code_fingerprint(cls) == before  # the code this process runs is what it first imported


def test_unknown_module_is_named_at_registration(helpers, tmp_path):
    for bad, why in [("fp_helpers.nope", "no module named 'fp_helpers.nope'"), ("no_such_pkg_xyz", "no module named"),
                     ("fp_helpers.maths.sub", "is not a package"), ("not a name", "not a dotted module name")]:
        with pytest.raises(CodeDependencyError, match=why):
            dependency_files(bad)
        with pytest.raises(ValueError, match=f"node type 'Doubler' declares code dependency '{bad}'"):
            NodeRegistry().register(node_with(bad), "test")
    with pytest.raises(ValueError, match="must be a tuple"):
        NodeRegistry().register(type("Bad", (Node,), {"code_dependencies": "fp_helpers", "run": lambda s, c: {}}), "test")
    plugin = tmp_path / "plugin_bad_dep.py"
    plugin.write_text(textwrap.dedent("""
        from graphcore import Node, Out

        class Good(Node):
            outputs = {"y": Out("Scalar")}
            def run(self, ctx):
                return {"y": 1.0}

        class BadDep(Node):
            code_dependencies = ("fp_helpers.missing_module",)
            outputs = {"y": Out("Scalar")}
            def run(self, ctx):
                return {"y": 1.0}
    """))
    registry = build_registry([plugin], entry_points=False, env=False)
    assert "BadDep" not in registry and "Good" not in registry  # all or nothing, as for clashes
    (err,) = registry.errors
    assert "node type 'BadDep' declares code dependency 'fp_helpers.missing_module'" in err.message


def test_schema_and_describe_show_dependencies():
    from engine_helpers import graphrun

    res = graphrun("nodes", "describe", "DenseFlowBuilder")
    assert res.returncode == 0, res.stderr
    assert "code dependencies" in res.stdout and "nodes.face.flow" in res.stdout


def test_every_talkgraph_declaration_resolves():
    """What the library still declares names real modules (the registry would drop the node)."""
    registry = build_registry(env=False)
    assert not registry.errors, registry.errors


def test_talkgraph_nodes_find_their_code_without_declaring_it():
    """The engine follows a node's imports through the talkgraph packages (nodes, trainers),
    never into the engine or other libraries."""
    registry = build_registry(env=False)
    flow = registry.get("DenseFlowBuilder")
    assert scope_of(flow).packages >= {"nodes", "trainers"}
    found = class_imports(flow, scope_of(flow))
    assert {"nodes.face.flow", "nodes.face.model", "nodes.types"} <= set(found)
    features = registry.get("AudioFeatures")
    assert "trainers.data.audio_features" in class_imports(features, scope_of(features))  # across packages
    for cls in registry.all():
        assert not [m for m in class_imports(cls, scope_of(cls)) if not m.startswith(("nodes", "trainers"))], cls


def test_inference_nodes_do_not_depend_on_the_training_loop():
    """Editing trainers/loop.py (an option's description, say) must not throw away every cached
    inference result: a node that runs a model imports the export format, not the loop. Found
    when a benchmark re-run missed its cache after such an edit."""
    registry = build_registry(env=False)
    training = ("/train", "evaluate")  # trainers, and evaluations that train or fine-tune baselines
    for cls in registry.all():
        if cls.category.endswith(training) or cls.type_name.startswith(("Train", "Personalize")):
            continue
        assert "trainers.loop" not in class_imports(cls, scope_of(cls)), cls.type_name
    for name in ("LandmarkGenerator", "NeuralFaceRenderer", "AnimationGenerator", "A2E"):
        assert "trainers.exports" in class_imports(registry.get(name), scope_of(registry.get(name))), name


@pytest.fixture()
def plugin_package(tmp_path, monkeypatch):
    """A plugin package whose node reaches `deep.py` through `helpers.py`; `unused.py` sits beside them."""
    pkg = tmp_path / "fp_plugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .node_impl import Scale\nNODES = [Scale]\n")
    (pkg / "node_impl.py").write_text(textwrap.dedent('''
        import numpy as np

        from graphcore import In, Node, Out

        from . import helpers


        class Scale(Node):
            inputs = {"x": In("Array")}
            outputs = {"y": Out("Array")}

            def run(self, ctx, x):
                return {"y": np.asarray(helpers.scale(x))}
    '''))
    (pkg / "helpers.py").write_text("from .deep import FACTOR\n\n\ndef scale(x):\n    return x * FACTOR\n")
    (pkg / "deep.py").write_text("FACTOR = 2  # doubled\n")
    (pkg / "unused.py").write_text("X = 1\n")
    yield pkg
    for name in [m for m in sys.modules if m.startswith("fp_plugin")]:
        del sys.modules[name]


def test_a_plugins_imports_are_found_transitively(plugin_package):
    registry = build_registry([plugin_package], entry_points=False, env=False)
    assert not registry.errors, registry.errors
    cls = registry.get("Scale")
    assert class_imports(cls, scope_of(cls)) == ["fp_plugin", "fp_plugin.deep", "fp_plugin.helpers"]  # no numpy, no graphcore
    before = fresh_fingerprint(cls)
    (plugin_package / "unused.py").write_text("X = 2\n")
    (plugin_package / "deep.py").write_text('"""Now documented."""\nFACTOR = 2  # still doubled\n')
    assert fresh_fingerprint(cls) == before  # a module it does not import; comments and docstrings
    (plugin_package / "deep.py").write_text("FACTOR = 3\n")
    assert fresh_fingerprint(cls) != before  # two imports away


def test_import_forms_resolve_to_modules(tmp_path, monkeypatch):
    """`import a.b`, `from a import b` (a module), `from a.b import name`, relative imports, a
    constant import_module(...), imports inside functions; names not in the scope are skipped."""
    from graphcore.imports import closure, folder_scope, module_imports

    pkg = tmp_path / "fp_forms"
    (pkg / "sub").mkdir(parents=True)
    for name in ("__init__.py", "sub/__init__.py", "sub/one.py", "two.py", "three.py", "four.py", "five.py"):
        (pkg / name).write_text("")
    (pkg / "main.py").write_text(textwrap.dedent('''
        import importlib
        import json

        import fp_forms.sub.one
        from fp_forms import two
        from fp_forms.three import something
        from . import four as renamed


        def later():
            from .sub import one
            return importlib.import_module("fp_forms.five")
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    scope = folder_scope(tmp_path)
    assert module_imports("fp_forms.main", scope) == {"fp_forms", "fp_forms.sub.one", "fp_forms.two", "fp_forms.three",
                                                      "fp_forms.four", "fp_forms.five"}
    assert closure({"fp_forms.main"}, scope) - {"fp_forms.main"} == module_imports("fp_forms.main", scope) | {"fp_forms.sub"}
    assert "fp_forms" not in sys.modules  # read, never run
