"""What a node's code imports from the project, found by reading source (nothing is run): the
modules its class uses (imports inside its methods, and module-level imports whose names its
class source mentions), followed transitively through their own imports. The test of the
library's `code_dependencies` declarations compares against this."""
from __future__ import annotations

import ast
import inspect
import textwrap
from pathlib import Path

from graphcore.fingerprint import dependency_files, module_helpers

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("nodes", "trainers")
# Decides which files key the cache (Node.implicit_files), not what a node computes.
NOT_CODE = {"nodes.bundled"}


def _absolute(module: str, level: int, name: str | None, package: str) -> str:
    if level == 0:
        return name or ""
    base = package.split(".")
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _is_package(module: str) -> bool:
    return (ROOT / module.replace(".", "/") / "__init__.py").is_file()


def _module_of(candidate: str) -> str | None:
    """The project module a dotted import target names (`nodes.face.flow.Coeffs` -> nodes.face.flow)."""
    parts = candidate.split(".")
    while parts:
        name = ".".join(parts)
        if parts[0] in PROJECT and ((ROOT / (name.replace(".", "/") + ".py")).is_file() or _is_package(name)):
            return name
        parts.pop()
    return None


def imports_in(tree: ast.AST, package: str) -> dict[str, str]:
    """Bound name -> project module, for every import statement in `tree`."""
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                mod = _module_of(alias.name)
                if mod:
                    out[alias.asname or alias.name.split(".")[0]] = mod
        elif isinstance(node, ast.ImportFrom):
            base = _absolute("", node.level, node.module, package)
            for alias in node.names:
                mod = _module_of(f"{base}.{alias.name}") or _module_of(base)
                if mod:
                    out[alias.asname or alias.name] = mod
    return out


def module_imports(module: str) -> set[str]:
    files = dependency_files(module)
    out: set[str] = set()
    for name, path in files:
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        out.update(imports_in(ast.parse(path.read_text()), package).values())
    return out


def closure(modules: set[str]) -> set[str]:
    seen: set[str] = set()
    stack = list(modules)
    while stack:
        m = stack.pop()
        if m in seen:
            continue
        seen.add(m)
        stack.extend(module_imports(m) - seen)
    return seen


def used_modules(cls: type) -> set[str]:
    """Project modules the node's results depend on (its own module excluded)."""
    own = cls.__module__
    module_src = Path(inspect.getsourcefile(cls)).read_text()
    module_tree = ast.parse(module_src)
    package = own.rpartition(".")[0]
    top_level = imports_in(ast.Module(body=[n for n in module_tree.body if isinstance(n, (ast.Import, ast.ImportFrom))],
                                      type_ignores=[]), package)
    direct: set[str] = set()
    for klass in cls.__mro__:
        if klass.__module__.startswith("graphcore") or klass is object:
            continue
        # the class and the module-level helpers it uses (both part of its own fingerprint)
        tree = ast.Module(body=[ast.parse(textwrap.dedent(inspect.getsource(klass))), *module_helpers(klass)], type_ignores=[])
        direct.update(imports_in(tree, klass.__module__.rpartition(".")[0]).values())
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        direct.update(mod for name, mod in top_level.items() if name in names)
    return {m for m in closure(direct) if m != own and m not in NOT_CODE}


def covered(module: str, declared: tuple[str, ...]) -> bool:
    return any(module == d or module.startswith(d + ".") for d in declared)
