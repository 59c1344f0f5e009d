"""The run plan: a small, picklable description of every node of a run.

It holds what a process needs to run a node without the client's objects: the node type by
name (workers resolve classes from their own registry, never from pickles), its key, its
canonical parameters, where its inputs come from, and which of its outputs are persisted.
A dask task carries only the slice of the plan it needs (`RunPlan.slice`).
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

from .keys import implicit_files, node_code, path_content_hash, resolve_against
from .node import CachePolicy, Node, file_params
from .workflow import BoundGraph, BoundNode, Edge, Literal


@dataclasses.dataclass
class TaskNode:
    id: str
    type: str
    key: str
    code: str  # code fingerprint the key was made with; workers check theirs matches
    params: dict[str, Any]  # model_dump(mode="json")
    inputs: dict[str, Edge | Literal]
    in_process: bool  # transient: computed in the process that needs it, never persisted
    persistent_ports: tuple[str, ...]  # outputs written to the cache
    seed: int
    output_files: dict[str, str]  # OutputFile parameter -> absolute path
    output_folders: dict[str, str] = dataclasses.field(default_factory=dict)  # OutputFolder parameter -> absolute path
    # Files the node reads, as keyed: InputFile parameter (or "implicit:<name>") -> {"path" (absolute),
    # "sha256" (keys.path_content_hash), "param" (an InputFile parameter: may be redirected to a
    # staged copy), "folder"}. Workers check them (graphcore/staging.py).
    input_files: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    # Its entry holds streamed values this run only passes on (run_graph(keep_streamed=False)):
    # deleted once every node that reads it has committed; streamed outputs nothing reads are
    # not written at all (left out of `persistent_ports`).
    drop_after_use: bool = False

    def upstream(self) -> list[str]:
        return sorted({s.node for s in self.inputs.values() if isinstance(s, Edge)})


@dataclasses.dataclass
class RunPlan:
    run_id: str
    workflow_dir: str
    device: str
    plugin_paths: tuple[str, ...]
    nodes: dict[str, TaskNode]
    # False: every value is whole in memory, streaming nodes' chunks are collected (the
    # whole-array baseline of bench/stream_memory.py; same keys, same values)
    stream: bool = True

    def reads_in_process(self, source: Edge) -> bool:
        """Whether an input fed by `source` must be computed where it is consumed."""
        up = self.nodes[source.node]
        return up.in_process or source.port not in up.persistent_ports

    def slice(self, node_id: str) -> RunPlan:
        """The part of the plan a task for `node_id` needs: the node, the in-process nodes it
        computes itself, and the persisted nodes whose outputs it loads."""
        keep: dict[str, TaskNode] = {}
        walked: set[str] = set()
        stack = [node_id]
        while stack:
            nid = stack.pop()
            if nid in walked:
                continue
            walked.add(nid)
            task = keep[nid] = self.nodes[nid]
            for source in task.inputs.values():
                if isinstance(source, Edge):
                    keep.setdefault(source.node, self.nodes[source.node])
                    if self.reads_in_process(source):
                        stack.append(source.node)  # computed here, so its own inputs are needed too
        return dataclasses.replace(self, nodes=keep)


def is_in_process(cls: type[Node]) -> bool:
    outputs = [p.port_type for p in cls.outputs.values()]
    return cls.cache == CachePolicy.TRANSIENT or (bool(outputs) and not any(t.persistent for t in outputs))


def derive_seed(bound: BoundNode, key: str) -> int:
    """The node's `seed` parameter when it has one; otherwise derived from its key, which
    carries the run salt exactly when the node must differ from run to run."""
    seed = getattr(bound.params, "seed", None)
    if isinstance(seed, int) and not isinstance(seed, bool):
        return seed
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)


def written_paths(cls: type[Node], params: dict[str, Any], base_dir: Path, mode: str) -> dict[str, str]:
    """Absolute paths of the node's OutputFile ("write") or OutputFolder ("write-folder")
    parameters that are set; URLs (s3://...) are not tracked."""
    return {
        name: str(resolve_against(params[name], base_dir))
        for name, m in file_params(cls.Params).items()
        if m == mode and isinstance(params.get(name), str) and params[name] and "://" not in params[name]
    }


def read_paths(bound: BoundNode, params: dict[str, Any], base_dir: Path) -> dict[str, dict[str, Any]]:
    """The files a node reads, with the content hashes its key was made with (memoised: keys
    hashed them already)."""
    cls = bound.cls
    out: dict[str, dict[str, Any]] = {}
    named = {name: params[name] for name, mode in file_params(cls.Params).items()
             if mode == "read" and isinstance(params.get(name), str) and params[name] and "://" not in params[name]}
    implicit = {f"implicit:{name}": path for name, path in implicit_files(cls, bound.params, bound.inputs).items()}
    for name, value in {**named, **implicit}.items():
        path = resolve_against(value, base_dir)
        out[name] = {"path": str(path), "sha256": path_content_hash(path), "param": name in named, "folder": path.is_dir()}
    return out


def build_plan(
    graph: BoundGraph, keys: dict[str, str], *, run_id: str, device: str = "cpu", plugin_paths: tuple[str, ...] = (),
    stream: bool = True, keep_streamed: bool = True,
) -> RunPlan:
    base_dir: Path = graph.workflow.base_dir.resolve()
    nodes: dict[str, TaskNode] = {}
    read = {(s.node, s.port) for b in graph.nodes.values() for s in b.inputs.values() if isinstance(s, Edge)}
    for node_id in graph.order:
        bound = graph.nodes[node_id]
        cls = bound.cls
        params = bound.params.model_dump(mode="json")
        in_process = is_in_process(cls)
        persistent = () if in_process else tuple(p for p, port in cls.outputs.items() if port.port_type.persistent)
        output_files = written_paths(cls, params, base_dir, "write")
        output_folders = written_paths(cls, params, base_dir, "write-folder")
        drop = (stream and not keep_streamed and not in_process and not output_files and not output_folders
                and any(cls.outputs[p].stream for p in persistent) and any(up == node_id for up, _ in read))
        if drop:
            persistent = tuple(p for p in persistent if not cls.outputs[p].stream or (node_id, p) in read)
        nodes[node_id] = TaskNode(
            id=node_id,
            type=cls.type_name,
            key=keys[node_id],
            code=node_code(cls),
            params=params,
            inputs=dict(bound.inputs),
            in_process=in_process,
            persistent_ports=persistent,
            seed=derive_seed(bound, keys[node_id]),
            output_files=output_files,
            output_folders=output_folders,
            input_files=read_paths(bound, params, base_dir),
            drop_after_use=drop,
        )
    return RunPlan(run_id, str(base_dir), device, tuple(plugin_paths), nodes, stream)
