"""Entry point (`graphrun.nodes`) through which the engine discovers this library's nodes.

Every module of the `nodes` package whose name ends in `_nodes` (e.g. `nodes/io/media_nodes.py`)
contributes the Node subclasses defined in it. Such modules keep heavy imports (torch,
mediapipe, av) inside functions so that listing nodes stays fast.
"""
from __future__ import annotations

import importlib
import pkgutil

import nodes as _package


def node_module_names() -> list[str]:
    return sorted(
        info.name
        for info in pkgutil.walk_packages(_package.__path__, prefix="nodes.")
        if info.name.rsplit(".", 1)[-1].endswith("_nodes")
    )


def node_classes() -> list[type]:
    """Every node class of the library (the entry point's target)."""
    from graphcore.registry import nodes_in_module

    classes: list[type] = []
    for name in node_module_names():
        classes.extend(nodes_in_module(importlib.import_module(name)))
    return classes


# The entry point's former target: installs made before the rename still name it.
node_modules = node_classes
