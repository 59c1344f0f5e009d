"""Python source read without running it: where a module's file is, its syntax tree with the
docstrings taken out, a class's definition and the module-level helpers it uses.

Fingerprints are built from these trees (`ast.dump` without line numbers), so comments,
docstrings and formatting never change a cache key. Everything is memoised per process: the
code that runs is the code first imported.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

_lock = threading.Lock()


class CodeDependencyError(ValueError):
    """A declared code dependency names no importable module with source files."""


# --- locating modules ------------------------------------------------------------------------

_top_memo: dict[str, Path | None] = {}


def top_location(top: str) -> Path | None:
    """The package folder or module file that Python would import for a top-level name
    (importlib.util.find_spec runs nothing for a top-level name)."""
    with _lock:
        if top in _top_memo:
            return _top_memo[top]
    loaded = sys.modules.get(top)
    spec = getattr(loaded, "__spec__", None) if loaded is not None else None
    if spec is None:
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            spec = None
    where: Path | None = None
    if spec is not None:
        if spec.submodule_search_locations:
            where = Path(next(iter(spec.submodule_search_locations))).resolve()
        elif spec.origin and spec.has_location and spec.origin.endswith(".py"):
            where = Path(spec.origin).resolve()
    with _lock:
        _top_memo[top] = where
    return where


_file_memo: dict[str, Path | None] = {}


def module_file(name: str) -> Path | None:
    """The source file of a dotted module (a package's `__init__.py`), or None when there is none;
    below the top level, found through the package folders, so nothing is imported."""
    with _lock:
        if name in _file_memo:
            return _file_memo[name]
    loaded = sys.modules.get(name)
    file = getattr(loaded, "__file__", None) if loaded is not None else None
    found: Path | None = None
    if file and file.endswith(".py"):
        found = Path(file)
    else:
        parts = name.split(".")
        where = top_location(parts[0]) if all(p.isidentifier() for p in parts) else None
        for part in parts[1:]:
            if where is None or not where.is_dir():
                where = None
                break
            where = where / part if (where / part).is_dir() else where / f"{part}.py"
        if where is not None and where.is_dir():
            found = where / "__init__.py" if (where / "__init__.py").is_file() else None
        elif where is not None and where.suffix == ".py" and where.is_file():
            found = where
    with _lock:
        _file_memo[name] = found
    return found


def dependency_files(module: str) -> list[tuple[str, Path]]:
    """(dotted name, source file) of `module`, or of every module of a package, in name order.

    Found without running the modules: only the top-level package is located through the
    import system; the rest of the dotted name is followed through the package folders on
    disk, so naming `trainers.data.clips` does not import torch through `trainers/data/__init__.py`.
    """
    loaded = sys.modules.get(module)
    spec = getattr(loaded, "__spec__", None) if loaded is not None else None
    parts = module.split(".")
    if spec is None:
        if not all(p.isidentifier() for p in parts):
            raise CodeDependencyError(f"{module!r} is not a dotted module name")
        try:
            spec = importlib.util.find_spec(parts[0])
        except (ImportError, ValueError) as exc:
            raise CodeDependencyError(f"cannot locate module {parts[0]!r}: {exc}") from None
        if spec is None:
            raise CodeDependencyError(f"no module named {parts[0]!r}")
        locations = [Path(p) for p in (spec.submodule_search_locations or [])]
        origin = Path(spec.origin) if spec.origin and spec.has_location else None
        for depth, part in enumerate(parts[1:], start=1):
            parent = ".".join(parts[:depth])
            if not locations:
                raise CodeDependencyError(f"no module named {module!r}: {parent!r} is not a package")
            found = _find_child(locations, part)
            if found is None:
                raise CodeDependencyError(f"no module named {module!r} (looked in {', '.join(map(str, locations))})")
            locations, origin = found
    else:
        locations = [Path(p) for p in (spec.submodule_search_locations or [])]
        origin = Path(spec.origin) if spec.origin and spec.has_location else None
    if locations:  # a package: every module in it, sub-packages included
        files: dict[str, Path] = {}
        for root in locations:
            for f in sorted(root.rglob("*.py")):
                rel = f.relative_to(root).with_suffix("")
                if "__pycache__" in rel.parts:
                    continue
                names = [p for p in rel.parts if p != "__init__"]
                files.setdefault(".".join([module, *names]), f)
        if not files:
            raise CodeDependencyError(f"package {module!r} holds no Python source files")
        return sorted(files.items())
    if origin is None or origin.suffix != ".py" or not origin.is_file():
        raise CodeDependencyError(f"module {module!r} has no Python source file ({origin or 'built in'})")
    return [(module, origin)]


def _find_child(locations: list[Path], name: str) -> tuple[list[Path], Path | None] | None:
    for loc in locations:
        if (loc / name / "__init__.py").is_file():
            return [loc / name], loc / name / "__init__.py"
        if (loc / f"{name}.py").is_file():
            return [], loc / f"{name}.py"
    namespace = [loc / name for loc in locations if (loc / name).is_dir()]
    return (namespace, None) if namespace else None


# --- normalised syntax trees -----------------------------------------------------------------


def parse_source(src: str) -> ast.Module | None:
    """The syntax tree without docstrings (they do not change behaviour), or None."""
    try:
        return strip_docstrings(ast.parse(src))
    except SyntaxError:
        return None


def strip_docstrings(tree: Any) -> Any:
    """The tree without the docstrings of its module, classes and functions (in place)."""
    stack = [tree]
    while stack:  # docstrings open the bodies of statements: expressions need no visit
        node = stack.pop()
        body = getattr(node, "body", None)
        if isinstance(body, list):
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                node.body = body = body[1:] or [ast.Pass()]
            stack.extend(body)
        for field in ("orelse", "finalbody", "handlers", "cases"):
            stack.extend(getattr(node, field, ()) or ())
    return tree


def dump(node: ast.AST) -> str:
    """A tree as text without positions: equal for code that differs only in layout and comments."""
    return ast.dump(node, annotate_fields=False, include_attributes=False)


def read_source_file(path: Path) -> tuple[str, ast.Module | None]:
    """A file's digest (sha256 of its normalised tree; of its text when it does not parse)
    and its tree without docstrings. Memoises the digest for `file_digest`."""
    text = path.read_text(encoding="utf-8")
    tree = parse_source(text)
    digest = hashlib.sha256((dump(tree) if tree is not None else text).encode()).hexdigest()
    with _lock:
        _digest_memo[path] = digest
    return digest, tree


_digest_memo: dict[Path, str] = {}


def file_digest(path: Path) -> str:
    """The digest of `read_source_file`, once per file and process."""
    with _lock:
        hit = _digest_memo.get(path)
    return hit if hit is not None else read_source_file(path)[0]


_tree_memo: dict[str, ast.Module | None] = {}


def module_tree(name: str) -> ast.Module | None:
    """The imported module's tree without docstrings (parsed once per process; do not mutate)."""
    with _lock:
        if name in _tree_memo:
            return _tree_memo[name]
    module = sys.modules.get(name)
    try:
        tree = parse_source(inspect.getsource(module)) if module is not None else None
    except (OSError, TypeError):
        tree = None
    with _lock:
        _tree_memo[name] = tree
    return tree


def class_tree(klass: type) -> ast.stmt | None:
    """The class's definition (docstrings out): from its module's tree for a module-level class,
    else from `inspect.getsource`; None when its source cannot be found."""
    if "." not in klass.__qualname__:
        tree = module_tree(klass.__module__)
        found = [s for s in tree.body if isinstance(s, ast.ClassDef) and s.name == klass.__name__] if tree else []
        if found:
            return found[-1]  # the last definition is the one bound
    try:
        parsed = parse_source(textwrap.dedent(inspect.getsource(klass)))
    except (OSError, TypeError):
        return None
    return parsed.body[0] if parsed is not None and parsed.body else None


def module_helpers(klass: type) -> list[ast.stmt]:
    """The top-level functions, classes and assignments of the class's own module that its
    source uses by name, directly or through one another (e.g. a `_load_checkpoint` helper
    next to the node): they are part of its code as much as its methods are."""
    module = sys.modules.get(klass.__module__)
    tree = module_tree(klass.__module__)
    if tree is None:
        return []
    defined: dict[str, ast.stmt] = {}
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined[stmt.name] = stmt
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        defined[n.id] = stmt
    own = defined.pop(klass.__name__, None)
    if own is None:
        return []
    used: list[ast.stmt] = []
    seen: set[int] = set()
    stack = [own]
    while stack:
        for n in ast.walk(stack.pop()):
            found = defined.get(n.id) if isinstance(n, ast.Name) else None
            if found is not None and id(found) not in seen and not _is_node_class(module, found):
                seen.add(id(found))
                used.append(found)
                stack.append(found)
    return sorted(used, key=lambda stmt: stmt.lineno)


def _is_node_class(module: Any, stmt: ast.stmt) -> bool:
    """Another node class of the module (its own fingerprint covers it when it is a base)."""
    obj = getattr(module, stmt.name, None) if isinstance(stmt, ast.ClassDef) else None
    return isinstance(obj, type) and any(k.__module__ == "graphcore.node" and k.__name__ == "Node" for k in obj.__mro__)
