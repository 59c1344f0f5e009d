"""The code a node runs besides its class: the modules of its own project that it imports.

Found by reading source, never by running it: the imports inside the class (and its bases)
and the module-level helpers it uses, the module-level imports whose names they mention, then
every import of those modules in turn (at module level or inside functions; a constant
`importlib.import_module("pkg.mod")` counts too). Only modules of the node's *scope* are
followed: the top-level packages of the distribution it was installed from (for talkgraph:
its node library and trainers), or the modules beside its plugin file or package. Other
libraries (numpy, torch) and the engine itself are not followed: they are not the node's code.

A package named by an import stands for its `__init__.py` (and what that imports), not for
every module in it. Results are memoised per process: the code that runs is the code first
imported.
"""
from __future__ import annotations

import ast
import dataclasses
import importlib.metadata
import sys
import threading
from collections.abc import Iterable
from pathlib import Path

from .source import class_tree, module_file, module_helpers, module_tree, read_source_file, top_location

ENGINE = __name__.partition(".")[0]  # the engine's own code never counts as a node's


@dataclasses.dataclass(frozen=True)
class CodeScope:
    """Where a node's own code lives: the named top-level packages (a distribution's), or any
    top-level module found directly in one of `folders` (a plugin's folder)."""

    packages: frozenset[str] = frozenset()
    folders: tuple[str, ...] = ()

    def contains(self, top: str) -> bool:
        if top == ENGINE:
            return False
        if top in self.packages:
            return True
        if not self.folders:
            return False
        where = top_location(top)
        return where is not None and str(where.parent) in self.folders


def distribution_scope(dist: importlib.metadata.Distribution | None) -> CodeScope | None:
    """The top-level packages an installed distribution ships (None when it does not say)."""
    if dist is None:
        return None
    names: set[str] = set()
    top_level = dist.read_text("top_level.txt")
    if top_level:
        names.update(line.strip() for line in top_level.splitlines() if line.strip())
    else:
        for f in dist.files or ():
            parts = f.parts
            if len(parts) > 1 and parts[0].isidentifier() and not parts[0].startswith("__"):
                names.add(parts[0])
            elif len(parts) == 1 and f.suffix == ".py":
                names.add(f.stem)
    return CodeScope(packages=frozenset(names)) if names else None


def folder_scope(folder: str | Path) -> CodeScope:
    return CodeScope(folders=(str(Path(folder).resolve()),))


def default_scope(cls: type) -> CodeScope:
    """For a class no registry placed: the folder holding its module's top-level package or
    file; in a site-packages folder, only that top-level package (the rest are other libraries)."""
    module = sys.modules.get(cls.__module__)
    file = getattr(module, "__file__", None)
    top = cls.__module__.partition(".")[0]
    if not file:
        return CodeScope(packages=frozenset({top}))
    path = Path(file).resolve()
    depth = cls.__module__.count(".") + (1 if path.name == "__init__.py" else 0)
    folder = path.parents[min(depth, len(path.parents) - 1)]
    if folder.name in ("site-packages", "dist-packages"):
        return CodeScope(packages=frozenset({top}))
    return folder_scope(folder)


def scope_of(cls: type) -> CodeScope:
    """The scope the registry gave the node (`code_scope`), else its default scope."""
    scope = getattr(cls, "code_scope", None)
    return scope if isinstance(scope, CodeScope) else default_scope(cls)


# --- reading imports -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ImportStmt:
    """One imported name: the name it binds ("" for `import_module("x")`) and the dotted
    targets it may name, tried in order (`from a import b`: module a.b, else module a)."""

    bound: str
    targets: tuple[str, ...]


def read_imports(tree: ast.AST, package: str, *, calls: bool = True) -> list[ImportStmt]:
    """Every import in `tree`, relative ones made absolute against `package`; `calls=False`
    skips looking for `import_module(...)` calls (for source that never mentions it)."""
    out: list[ImportStmt] = []
    for node in (ast.walk(tree) if calls else _statements(tree)):
        if isinstance(node, ast.Import):
            for alias in node.names:  # `import a.b` binds `a` and runs a.b
                out.append(ImportStmt(alias.asname or alias.name.split(".")[0], (alias.name,)))
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node.level, node.module, package)
            for alias in node.names:
                out.append(ImportStmt(alias.asname or alias.name, (f"{base}.{alias.name}", base)))
        elif isinstance(node, ast.Call) and _is_import_module(node.func) and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                out.append(ImportStmt("", (arg.value,)))
    return out


def _statements(tree: ast.AST) -> Iterable[ast.AST]:
    """Every statement, nested ones included, without descending into expressions (imports
    are statements; walking every expression node would cost several times more)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        yield node
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            stack.extend(getattr(node, field, ()) or ())


def _absolute(level: int, name: str | None, package: str) -> str:
    if level == 0:
        return name or ""
    base = package.split(".")
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def _is_import_module(func: ast.expr) -> bool:
    return (isinstance(func, ast.Attribute) and func.attr == "import_module") or (
        isinstance(func, ast.Name) and func.id == "import_module")


@dataclasses.dataclass(frozen=True)
class ModuleFacts:
    """What the fingerprint and the closure need from one module file, read once."""

    digest: str  # sha256 of its normalised source
    imports: tuple[ImportStmt, ...]


_lock = threading.Lock()
_facts_memo: dict[str, ModuleFacts | None] = {}


def module_facts(name: str) -> ModuleFacts | None:
    with _lock:
        if name in _facts_memo:
            return _facts_memo[name]
    path = module_file(name)
    facts: ModuleFacts | None = None
    if path is not None:
        try:
            digest, tree = read_source_file(path)
        except (OSError, UnicodeDecodeError):
            digest, tree = "", None
        if tree is not None:
            package = name if path.name == "__init__.py" else name.rpartition(".")[0]
            calls = "import_module" in path.read_text(encoding="utf-8")  # else no call needs looking for
            facts = ModuleFacts(digest, tuple(read_imports(tree, package, calls=calls)))
        elif digest:  # not Python that parses: its text is its code
            facts = ModuleFacts(digest, ())
    with _lock:
        _facts_memo[name] = facts
    return facts


def _resolve(stmt: ImportStmt, scope: CodeScope) -> str | None:
    """The scope's module an import names (`pkg.mod.func` -> pkg.mod), or None."""
    for target in stmt.targets:
        parts = target.split(".")
        if not parts[0] or not scope.contains(parts[0]):
            return None
        while parts:
            name = ".".join(parts)
            if module_file(name) is not None:
                return name
            parts.pop()
    return None


_imports_memo: dict[tuple[CodeScope, str], frozenset[str]] = {}


def module_imports(name: str, scope: CodeScope) -> frozenset[str]:
    """The scope's modules that module `name` imports anywhere in its source, and the packages
    above it (importing pkg.mod runs pkg/__init__.py first)."""
    key = (scope, name)
    with _lock:
        hit = _imports_memo.get(key)
    if hit is not None:
        return hit
    facts = module_facts(name)
    found = {m for m in (_resolve(i, scope) for i in (facts.imports if facts else ())) if m} - {name}
    found |= {p for p in _parents(name) if module_file(p) is not None}
    with _lock:
        _imports_memo[key] = frozenset(found)
    return frozenset(found)


def _parents(name: str) -> Iterable[str]:
    parts = name.split(".")
    return (".".join(parts[:i]) for i in range(1, len(parts)))


def closure(modules: Iterable[str], scope: CodeScope) -> set[str]:
    seen: set[str] = set()
    stack = list(modules)
    while stack:
        m = stack.pop()
        if m in seen:
            continue
        seen.add(m)
        stack.extend(module_imports(m, scope) - seen)
    return seen


def class_imports(cls: type, scope: CodeScope) -> list[str]:
    """The scope's modules a node class's code reaches, directly or through other modules, in
    name order (its own module excluded: the parts of it the class uses are fingerprinted
    with the class)."""
    direct: set[str] = set()
    for klass in cls.__mro__:
        if klass is object or klass.__module__.partition(".")[0] == ENGINE:
            continue
        own = class_tree(klass)
        if own is None:
            continue
        module = sys.modules.get(klass.__module__)
        package = klass.__module__ if getattr(module, "__path__", None) else klass.__module__.rpartition(".")[0]
        used = ast.Module(body=[own, *module_helpers(klass)], type_ignores=[])
        direct.update(m for m in (_resolve(i, scope) for i in read_imports(used, package)) if m)
        tree = module_tree(klass.__module__)
        top_level: list[ast.stmt] = [n for n in (tree.body if tree else []) if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = {n.id for n in ast.walk(used) if isinstance(n, ast.Name)}
        for stmt in read_imports(ast.Module(body=top_level, type_ignores=[]), package):
            if stmt.bound in names:
                mod = _resolve(stmt, scope)
                if mod:
                    direct.add(mod)
    return sorted(closure(direct, scope) - {cls.__module__})


def code_imports(cls: type) -> list[str]:
    """The modules of its own project that a node's code imports (what its fingerprint follows)."""
    return class_imports(cls, scope_of(cls))
