"""Code dependencies: the source of the modules a node declares is part of its fingerprint."""
from __future__ import annotations

import sys
import textwrap

import pytest

from graphcore import fingerprint
from graphcore.fingerprint import CodeDependencyError, code_fingerprint, dependency_files
from graphcore.node import Node, Out
from graphcore.registry import NodeRegistry, build_registry


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
    fingerprint._dependency_memo.clear()  # a new process
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

    from nodes.face.flow_nodes import DenseFlowBuilder

    assert "nodes.face.flow" in DenseFlowBuilder.schema()["code_dependencies"]
    res = graphrun("nodes", "describe", "DenseFlowBuilder")
    assert res.returncode == 0, res.stderr
    assert "code dependencies" in res.stdout and "nodes.face.flow" in res.stdout


def test_every_talkgraph_dependency_resolves():
    """The library's declarations all name real modules (the registry would drop the node)."""
    registry = build_registry(env=False)
    assert not registry.errors, registry.errors
    declared = {cls.type_name: cls.code_dependencies for cls in registry.all() if cls.code_dependencies}
    assert len(declared) >= 20


def test_talkgraph_declarations_cover_what_the_nodes_import():
    """Each node declares every project module its code reaches (read from the source: its
    methods' imports, module-level imports its class uses, and theirs, transitively), so that
    editing a helper can never leave a stale cache hit."""
    from code_deps import covered, used_modules

    registry = build_registry(env=False)
    missing = {}
    for cls in registry.all():
        if cls.origin == "graphcore":
            continue
        gaps = sorted(m for m in used_modules(cls) if not covered(m, cls.code_dependencies))
        if gaps:
            missing[cls.type_name] = gaps
    assert not missing, f"add these to the nodes' code_dependencies: {missing}"
