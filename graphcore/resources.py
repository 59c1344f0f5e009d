"""The up-front resource check: refuse, before running, a workflow a node of which would need
more memory than the machine has, instead of being killed by the kernel half way.

Nodes say what they can without running: `size_hints` gives facts about their outputs (an
image's shape read from the file header, the image size coefficients refer to), and
`memory_estimate` turns the facts of their inputs into the bytes they need at their peak and
advice. This walks the graph once in dependency order; any estimate above the limit is a
validation problem naming the node. Estimation never blocks a run by failing: a hook that
raises is ignored. The limit: $GRAPHRUN_MEMORY_LIMIT (e.g. `12G`, `800M`, bytes), else the
memory available now.
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import networkx as nx

from .node import Node
from .workflow import Edge, Workflow

log = logging.getLogger(__name__)
LIMIT_ENV = "GRAPHRUN_MEMORY_LIMIT"
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def memory_limit() -> int:
    """Bytes a node may use: $GRAPHRUN_MEMORY_LIMIT, else the memory available now."""
    text = os.environ.get(LIMIT_ENV, "").strip().upper()
    if text:
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMGT]?)I?B?", text)
        if not m:
            raise ValueError(f"${LIMIT_ENV}={text!r}: give bytes or a size like 12G or 800M")
        return int(float(m.group(1)) * _UNITS[m.group(2)])
    import psutil

    return int(psutil.virtual_memory().available)


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def too_big(wf: Workflow, registry: Any, graph: nx.DiGraph, resolve: Callable[[str], Path],
            limit: int | None = None) -> Iterator[tuple[str, str]]:
    """(node id, message) for each node whose estimated peak exceeds the limit."""
    facts: dict[str, dict[str, dict[str, Any]]] = {}
    position = {node_id: i for i, node_id in enumerate(wf.nodes)}
    for node_id in nx.lexicographical_topological_sort(graph, key=position.__getitem__):
        spec = wf.nodes[node_id]
        cls = registry.get(spec.type)
        if cls.size_hints is Node.size_hints and cls.memory_estimate is Node.memory_estimate:
            continue  # (most nodes: not even instantiated, so large graphs validate as fast as before)
        inputs = {port: facts.get(src.node, {}).get(src.port, {}) for port, src in spec.inputs.items()
                  if isinstance(src, Edge)}
        inputs = {port: known for port, known in inputs.items() if known}
        try:
            node = cls(cls.Params.model_validate(spec.params))
            facts[node_id] = dict(node.size_hints(inputs, resolve) or {})
            estimate = node.memory_estimate(inputs)
        except Exception as exc:  # the node's own code: an estimate never stops a run
            log.debug("no resource estimate for %s (%s): %s", node_id, spec.type, exc)
            continue
        if estimate is None:
            continue
        need, advice = estimate
        if limit is None:
            limit = memory_limit()
        if need > limit:
            yield node_id, (f"{spec.type} would need ~{gib(need)} of memory here, more than the {gib(limit)} "
                            f"available (${LIMIT_ENV} sets the limit); {advice}")
