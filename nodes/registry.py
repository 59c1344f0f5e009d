"""Entry point (`graphrun.nodes`) through which the engine discovers this library's nodes."""
from __future__ import annotations

import importlib

# Modules whose Node subclasses are registered, in palette order. Each paper's nodes live in
# their own sub-package; shared pieces (io, audio, face) are listed once.
NODE_MODULES: list[str] = []


def node_modules() -> list[type]:
    from graphcore.registry import nodes_in_module

    classes: list[type] = []
    for name in NODE_MODULES:
        classes.extend(nodes_in_module(importlib.import_module(name)))
    return classes
