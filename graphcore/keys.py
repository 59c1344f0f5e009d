"""Cache keys for every node of a bound graph (docs/workflow-format.md, "What enters a cache key").

A node's key is `fingerprint.cache_key` over: its type, version and code fingerprint, its
canonical parameters, the keys (not values) of the upstream outputs it reads, the content
fingerprints of its literal inputs, and the content hashes of the files it reads (InputFile
parameters, Path-typed literals, and the files its `implicit_files` names, such as a bundled
checkpoint used when no checkpoint is given; resolved against the workflow's folder). A `recompute`
node without a seed also gets the run's salt, so that it runs every time. Editor layout never
enters a key. Nothing here depends on the process or machine: the same workflow and files give
the same keys everywhere.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from .fingerprint import cache_key, code_fingerprint, file_content_hash
from .node import CachePolicy, file_params
from .types import TYPES, PortType
from .workflow import BoundGraph, BoundNode, Edge, Literal, Problem, WorkflowError

# Code fingerprints parse the class source: do it once per class and process.
_code_memo: dict[type, str] = {}


def node_code(cls: type) -> str:
    code = _code_memo.get(cls)
    if code is None:
        code = _code_memo[cls] = code_fingerprint(cls)
    return code


def is_path_type(port_type: PortType) -> bool:
    return "Path" in TYPES.ancestors(port_type.name) if port_type.name in TYPES else port_type.name == "Path"


def resolve_against(path: str | os.PathLike, base_dir: Path) -> Path:
    """Relative paths in a workflow are relative to the workflow file's folder."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else base_dir / p


def path_content_hash(path: Path) -> str:
    """A file's sha256; for a folder, a hash over its files' relative names and contents."""
    if path.is_dir():
        h = hashlib.sha256(b"dir:")
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(child.relative_to(path).as_posix().encode() + b"\0" + file_content_hash(child).encode())
        return h.hexdigest()
    return file_content_hash(path)


def _file_hash(node: BoundNode, what: str, value: Any, base_dir: Path, implicit: bool = False) -> str:
    path = resolve_against(value, base_dir)
    try:
        return path_content_hash(path)
    except OSError as exc:
        line = node.spec.param_lines.get(what) or node.spec.input_lines.get(what) or node.spec.line
        role = f"(the implicit file '{what}' of {node.cls.type_name})" if implicit else f"given as '{what}'"
        raise WorkflowError([Problem(
            f"cannot read file {str(path)!r} {role}: {exc.strerror or exc}",
            node_id=node.id, line=line, kind="file",
        )]) from None


def implicit_files(cls: type, params: Any, connected: Any) -> dict[str, str]:
    """The node's declared implicit files (name -> path as given) for these params and ports."""
    return {name: os.fspath(path) for name, path in cls(params).implicit_files(frozenset(connected)).items()}


def node_key(node: BoundNode, upstream_keys: dict[str, str], run_salt: str, base_dir: Path) -> str:
    cls = node.cls
    params = node.params.model_dump(mode="json")
    upstream: dict[str, str] = {}
    literals: dict[str, str] = {}
    files: dict[str, str] = {}
    for port, source in node.inputs.items():
        if isinstance(source, Edge):
            upstream[port] = f"{upstream_keys[source.node]}/{source.port}"
        elif isinstance(source, Literal):
            port_type = cls.inputs[port].port_type
            if is_path_type(port_type) and source.value is not None:
                literals[port] = "file:" + _file_hash(node, port, source.value, base_dir)
            else:
                literals[port] = port_type.fingerprint(source.value)
    for name, mode in file_params(cls.Params).items():
        value = params.get(name)
        if mode == "read" and value not in (None, ""):
            files[name] = _file_hash(node, name, value, base_dir)
    for name, path in implicit_files(cls, node.params, node.inputs).items():
        files["implicit:" + name] = _file_hash(node, name, path, base_dir, implicit=True)
    salt = run_salt if cls.cache == CachePolicy.RECOMPUTE and not cls.is_seeded(node.params) else None
    return cache_key(
        node_type=cls.type_name, version=cls.version, code=node_code(cls), params=params,
        upstream=upstream, literals=literals, files=files, salt=salt,
    )


def compute_keys(graph: BoundGraph, run_salt: str) -> dict[str, str]:
    """Node id -> cache key, for every node (in topological order, so upstream keys exist)."""
    base_dir = graph.workflow.base_dir.resolve()
    keys: dict[str, str] = {}
    problems: list[Problem] = []
    for node_id in graph.order:
        try:
            keys[node_id] = node_key(graph.nodes[node_id], keys, run_salt, base_dir)
        except WorkflowError as exc:
            problems.extend(exc.problems)
            keys[node_id] = "unreadable"  # dependents still get a key so every problem is collected
    if problems:
        wf_path = str(graph.workflow.path) if graph.workflow.path else None
        for p in problems:
            p.path = p.path or wf_path
        raise WorkflowError(problems)
    return keys
