"""Fingerprints that go into cache keys: code, input files, and the key itself.

A cache key is the sha256 of canonical JSON of: node type, node version, the node's code
fingerprint, its canonical parameters, the keys (not values) of upstream outputs, literal
inputs by content, and content hashes of the input files it reads.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import os
import sys
import textwrap
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .canonical import canonical_json

KEY_SCHEMA = 1  # bump when the layout of the key document changes


def code_fingerprint(cls: type) -> str:
    """Hash of the node's code, insensitive to comments, docstrings and formatting: its class
    (and base classes) plus the modules named in its `code_dependencies`.

    A node may set `code_version` to pin its fingerprint explicitly (e.g. to keep its cache
    across a refactor); `version` is part of the key either way.
    """
    explicit = getattr(cls, "code_version", None)
    if explicit is not None:
        return "explicit:" + str(explicit)
    parts = []
    for klass in cls.__mro__:
        if klass.__module__ == "graphcore.node" or klass is object:
            continue  # the engine's base class does not change a node's results
        try:
            src = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            parts.append(f"{klass.__module__}.{klass.__qualname__}:nosource")
            continue
        parts.append(_normalised_source(src))
        parts.extend(ast.dump(_strip_docstrings(stmt), annotate_fields=False, include_attributes=False)
                     for stmt in module_helpers(klass))
    for module in sorted(set(getattr(cls, "code_dependencies", ()) or ())):
        parts.append(f"depends:{module}:{dependency_fingerprint(module)}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


class CodeDependencyError(ValueError):
    """A declared code dependency names no importable module with source files."""


def dependency_files(module: str) -> list[tuple[str, Path]]:
    """(dotted name, source file) of `module`, or of every module of a package, in name order.

    Found without running the modules: only the top-level package is located through the
    import system (importlib.util.find_spec runs nothing for a top-level name); the rest of the
    dotted name is followed through the package folders on disk, so naming
    `trainers.data.clips` does not import torch through `trainers/data/__init__.py`.
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
        files = {}
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


_dependency_memo: dict[str, str] = {}


def dependency_fingerprint(module: str) -> str:
    """Hash of the normalised source of `module` (all modules of a package); once per process,
    like the node classes themselves (the code that runs is the code first imported)."""
    with _memo_lock:
        hit = _dependency_memo.get(module)
    if hit is not None:
        return hit
    h = hashlib.sha256()
    for name, path in dependency_files(module):
        h.update(name.encode() + b"\0" + _normalised_source(path.read_text(encoding="utf-8")).encode() + b"\0")
    digest = h.hexdigest()
    with _memo_lock:
        _dependency_memo[module] = digest
    return digest


def _normalised_source(src: str) -> str:
    try:
        tree = ast.parse(src)
    except SyntaxError:
        return src
    return ast.dump(_strip_docstrings(tree), annotate_fields=False, include_attributes=False)


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]  # docstrings do not change behaviour
    return tree


def module_helpers(klass: type) -> list[ast.stmt]:
    """The top-level functions, classes and assignments of the class's own module that its
    source uses by name, directly or through one another (e.g. a `_load_checkpoint` helper
    next to the node): they are part of its code as much as its methods are."""
    module = sys.modules.get(klass.__module__)
    try:
        tree = ast.parse(inspect.getsource(module)) if module is not None else None
    except (OSError, TypeError, SyntaxError):
        return []
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
            stmt = defined.get(n.id) if isinstance(n, ast.Name) else None
            if stmt is not None and id(stmt) not in seen and not _is_node_class(module, stmt):
                seen.add(id(stmt))
                used.append(stmt)
                stack.append(stmt)
    return sorted(used, key=lambda stmt: stmt.lineno)


def _is_node_class(module: Any, stmt: ast.stmt) -> bool:
    """Another node class of the module (its own fingerprint covers it when it is a base)."""
    obj = getattr(module, stmt.name, None) if isinstance(stmt, ast.ClassDef) else None
    return isinstance(obj, type) and any(k.__module__ == "graphcore.node" and k.__name__ == "Node" for k in obj.__mro__)


_file_hash_memo: dict[tuple[str, int, int], str] = {}
_memo_lock = threading.Lock()


def file_content_hash(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes; memoised on (path, size, mtime) within the process."""
    p = os.path.abspath(os.fspath(path))
    st = os.stat(p)
    memo_key = (p, st.st_size, st.st_mtime_ns)
    with _memo_lock:
        hit = _file_hash_memo.get(memo_key)
    if hit is not None:
        return hit
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    with _memo_lock:
        _file_hash_memo[memo_key] = digest
    return digest


def cache_key(
    *,
    node_type: str,
    version: int | str,
    code: str,
    params: Mapping[str, Any],
    upstream: Mapping[str, str],
    literals: Mapping[str, str],
    files: Mapping[str, str],
    salt: str | None = None,
) -> str:
    """The content address of a node's outputs.

    upstream: input port -> "<upstream key>/<output port>"
    literals: input port -> content fingerprint of the literal value
    files:    parameter or input name -> content hash of the file it names
    salt:     set only for nodes that must run every time (a fresh random value per run)
    """
    doc = {
        "schema": KEY_SCHEMA,
        "type": node_type,
        "version": version,
        "code": code,
        "params": params,
        "upstream": dict(upstream),
        "literals": dict(literals),
        "files": dict(files),
    }
    if salt is not None:
        doc["salt"] = salt
    return hashlib.sha256(canonical_json(doc).encode()).hexdigest()
