"""Node registry and extension discovery.

Nodes come from three places besides the engine's own:
- installed packages, through the entry-point group `graphrun.nodes` (the talkgraph node
  library registers itself this way: the engine never imports it by name);
- `--plugins PATH` (a .py file or a folder of them / a package folder);
- the `GRAPHRUN_PLUGINS` environment variable (paths separated by os.pathsep).

A plugin module contributes every Node subclass defined in it, or exactly the classes in its
`NODES` list when it has one. A plugin that fails to import, or whose node names clash with
ones already registered, is recorded as a PluginError naming the plugin; the nodes that did
load keep working.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import importlib.util
import inspect
import json
import os
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from .imports import CodeScope, distribution_scope, folder_scope
from .node import Node
from .node_check import check_node

ENTRY_POINT_GROUP = "graphrun.nodes"
PLUGINS_ENV = "GRAPHRUN_PLUGINS"


@dataclasses.dataclass
class PluginError:
    plugin: str  # the entry point, file or folder that failed
    message: str
    detail: str = ""  # the traceback, for --verbose

    def __str__(self) -> str:
        return f"plugin {self.plugin}: {self.message}"


class NodeRegistry:
    def __init__(self) -> None:
        self._nodes: dict[str, type[Node]] = {}
        self.errors: list[PluginError] = []
        self._loaded_sources: set[str] = set()

    # --- registration ---

    def register(self, cls: type[Node], origin: str, scope: CodeScope | None = None) -> None:
        if not (isinstance(cls, type) and issubclass(cls, Node)) or cls is Node:
            raise TypeError(f"{cls!r} is not a Node subclass")
        name = cls.type_name
        existing = self._nodes.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(f"node type {name!r} is already defined by {existing.origin or existing.__module__}")
        check_node(cls)
        cls.origin = origin
        if scope is not None:
            cls.code_scope = scope
        self._nodes[name] = cls

    def register_module(self, module: ModuleType, origin: str, scope: CodeScope | None = None) -> list[str]:
        """Register a module's nodes all-or-nothing, so a clash leaves no half-plugin behind."""
        classes = nodes_in_module(module)
        clashes = [c.type_name for c in classes if c.type_name in self._nodes and self._nodes[c.type_name] is not c]
        if clashes:
            owners = ", ".join(f"{n!r} (already from {self._nodes[n].origin})" for n in clashes)
            raise ValueError(f"node type name clash: {owners}")
        for cls in classes:
            if not (isinstance(cls, type) and issubclass(cls, Node)) or cls is Node:
                raise TypeError(f"{cls!r} is not a Node subclass")
            check_node(cls)  # every class first: a plugin with one bad node registers none
        for cls in classes:
            self.register(cls, origin, scope)
        return [c.type_name for c in classes]

    # --- lookup ---

    def get(self, name: str) -> type[Node]:
        try:
            return self._nodes[name]
        except KeyError:
            raise KeyError(name) from None

    def __contains__(self, name: str) -> bool:
        return name in self._nodes

    def names(self) -> list[str]:
        return sorted(self._nodes)

    def all(self) -> list[type[Node]]:
        return [self._nodes[n] for n in self.names()]

    def schema(self) -> dict[str, Any]:
        """Every node's and type's schema (the editor's palette, `graphrun nodes --json`). A node
        whose schema fails or is not JSON (its `extra_schema` is its own code, not run at
        registration) is left out and reported among the plugin errors; the others are all there."""
        from .types import TYPES

        nodes: dict[str, Any] = {}
        errors = [dataclasses.asdict(e) for e in self.errors]
        for name, cls in sorted(self._nodes.items()):
            try:
                schema = cls.schema()
                json.dumps(schema)  # the editor sends it as JSON
                nodes[name] = schema
            except Exception as exc:
                errors.append(dataclasses.asdict(PluginError(cls.origin, f"node type {name!r}: its schema failed "
                                                                         f"({type(exc).__name__}: {exc})")))
        return {"nodes": nodes, "types": TYPES.schema(), "plugin_errors": errors}

    # --- discovery ---

    def load_entry_points(self) -> None:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist else "?"
            origin = dist if ep.name == dist else f"{dist} ({ep.name})"
            self._guard(f"entry point {ep.name} = {ep.value}", lambda ep=ep, origin=origin: self._load_entry_point(ep, origin))

    def _load_entry_point(self, ep: importlib.metadata.EntryPoint, origin: str) -> None:
        obj = ep.load()
        scope = distribution_scope(ep.dist)  # the node's own code: the packages its distribution ships
        if isinstance(obj, ModuleType):
            self.register_module(obj, origin, scope)
        elif callable(obj) and not isinstance(obj, type):
            # A function returning node classes (or a module).
            result = obj()
            if isinstance(result, ModuleType):
                self.register_module(result, origin, scope)
            else:
                self._register_all(list(result or []), origin, scope)
        else:
            self._register_all([obj], origin, scope)

    def _register_all(self, classes: list[type[Node]], origin: str, scope: CodeScope | None) -> None:
        holder = ModuleType(f"_graphrun_ep_{origin}")
        holder.NODES = classes  # type: ignore[attr-defined]
        self.register_module(holder, origin, scope)

    def load_paths(self, paths: Iterable[str | os.PathLike]) -> None:
        for raw in paths:
            path = Path(raw).expanduser().resolve()
            if str(path) in self._loaded_sources:
                continue
            self._loaded_sources.add(str(path))
            self._guard(str(raw), lambda path=path: self._load_path(path))

    def _load_path(self, path: Path) -> None:
        if not path.exists():
            raise FileNotFoundError(f"no such file or folder: {path}")
        # The plugin's own code: its file or package and the modules beside it.
        if path.is_file():
            self.register_module(import_file(path), f"plugin:{path}", folder_scope(path.parent))
            return
        if (path / "__init__.py").exists():
            self.register_module(import_package(path), f"plugin:{path}", folder_scope(path.parent))
            return
        # A folder of plugins: each .py file and each package inside is its own plugin.
        for child in sorted(path.iterdir()):
            if child.name.startswith((".", "_")):
                continue
            if (child.suffix == ".py" and child.is_file()) or (child.is_dir() and (child / "__init__.py").exists()):
                self.load_paths([child])

    def load_env(self) -> None:
        raw = os.environ.get(PLUGINS_ENV, "")
        self.load_paths([p for p in raw.split(os.pathsep) if p.strip()])

    def _guard(self, plugin: str, load: Any) -> None:
        try:
            load()
        except Exception as exc:  # a broken plugin must not take down the others
            msg = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc)
            self.errors.append(PluginError(plugin, msg, traceback.format_exc()))


def nodes_in_module(module: ModuleType) -> list[type[Node]]:
    explicit = getattr(module, "NODES", None)
    if explicit is not None:
        return list(explicit)
    return [
        obj
        for _, obj in inspect.getmembers(module, inspect.isclass)
        if issubclass(obj, Node) and obj is not Node and obj.__module__ == module.__name__ and not inspect.isabstract(obj)
        and not obj.__dict__.get("abstract", False)
    ]


def _module_name_for(path: Path) -> str:
    import hashlib

    return f"graphrun_plugin_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"


def import_file(path: Path) -> ModuleType:
    """Import a plugin file under a name of its own; the modules beside it are importable by
    their plain names (its folder goes at the end of sys.path, so it never shadows an
    installed module), so a plugin may be split over several files."""
    name = _module_name_for(path)
    if name in sys.modules:
        return sys.modules[name]
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.append(folder)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def import_package(path: Path) -> ModuleType:
    # Import under its own name so that the package's relative imports and pickling
    # (dask workers) work; its parent folder goes on sys.path.
    parent = str(path.parent)
    if parent not in sys.path:
        sys.path.insert(0, parent)
    return importlib.import_module(path.name)


def build_registry(plugin_paths: Iterable[str | os.PathLike] = (), *, entry_points: bool = True, env: bool = True) -> NodeRegistry:
    """The engine's generic nodes, then installed packages, then env and --plugins paths."""
    from . import builtin_nodes

    registry = NodeRegistry()
    registry.register_module(builtin_nodes, "graphcore")
    if entry_points:
        registry.load_entry_points()
    if env:
        registry.load_env()
    registry.load_paths(plugin_paths)
    return registry
