"""Fingerprints that go into cache keys: code, input files, and the key itself.

A cache key is the sha256 of canonical JSON of: node type, node version, the node's code
fingerprint, its canonical parameters, the keys (not values) of upstream outputs, literal
inputs by content, and content hashes of the input files it reads.
"""
from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping
from typing import Any

from .canonical import canonical_json
from .imports import code_imports, module_facts
from .source import class_tree, dependency_files, dump, file_digest, module_helpers

KEY_SCHEMA = 1  # bump when the layout of the key document changes
_memo_lock = threading.Lock()


def code_fingerprint(cls: type) -> str:
    """Hash of the node's code, insensitive to comments, docstrings and formatting: its class
    (and base classes) with the module-level helpers they use, every module of its own
    project that this code imports, directly or through other modules (graphcore.imports),
    and the modules named in its `code_dependencies` (an override, for code reached in ways
    an import statement does not show).

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
        tree = class_tree(klass)
        if tree is None:
            parts.append(f"{klass.__module__}.{klass.__qualname__}:nosource")
            continue
        parts.append(dump(tree))
        parts.extend(dump(stmt) for stmt in module_helpers(klass))
    for module in code_imports(cls):
        facts = module_facts(module)
        parts.append(f"imports:{module}:{facts.digest if facts else 'nosource'}")
    for module in sorted(set(getattr(cls, "code_dependencies", ()) or ())):
        parts.append(f"depends:{module}:{dependency_fingerprint(module)}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


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
        h.update(name.encode() + b"\0" + file_digest(path).encode() + b"\0")
    digest = h.hexdigest()
    with _memo_lock:
        _dependency_memo[module] = digest
    return digest


_file_hash_memo: dict[tuple[str, int, int], str] = {}


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
