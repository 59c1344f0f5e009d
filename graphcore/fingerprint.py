"""Fingerprints that go into cache keys: code, input files, and the key itself.

A cache key is the sha256 of canonical JSON of: node type, node version, the node's code
fingerprint, its canonical parameters, the keys (not values) of upstream outputs, literal
inputs by content, and content hashes of the input files it reads.
"""
from __future__ import annotations

import ast
import hashlib
import inspect
import os
import textwrap
import threading
from typing import Any, Mapping

from .canonical import canonical_json

KEY_SCHEMA = 1  # bump when the layout of the key document changes


def code_fingerprint(cls: type) -> str:
    """Hash of the node's code, insensitive to comments, docstrings and formatting.

    A node may set `code_version` to pin its fingerprint explicitly (e.g. when its behaviour
    lives in helper modules the class source does not show, or to keep its cache across a
    refactor); `version` is part of the key either way.
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
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _normalised_source(src: str) -> str:
    try:
        tree = ast.parse(src)
    except SyntaxError:
        return src
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]  # docstrings do not change behaviour
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


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
