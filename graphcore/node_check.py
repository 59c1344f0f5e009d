"""What the registry checks before it accepts a node class: everything validation, the CLI's
`nodes describe` and the editor's palette will rely on, so that a plugin with a typo is refused
when it loads, with a message naming the node and the port or parameter, instead of breaking
`describe` or the whole palette later.
"""
from __future__ import annotations

import json
import re

from pydantic import BaseModel

from .node import Node, Port
from .source import CodeDependencyError, dependency_files
from .types import TYPES, PortType, streamable

PORT_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # what a workflow's `id.port` reference can name


class NodeDefinitionError(ValueError):
    """A node class that cannot be registered; the message names the node and what is wrong."""


def check_node(cls: type[Node]) -> None:
    """Raise NodeDefinitionError naming the node and the first thing wrong with its declaration."""
    name = cls.type_name
    if not isinstance(name, str) or not name.strip():
        raise NodeDefinitionError(f"node class {cls.__qualname__} has no type name")
    if "run" not in {k for c in cls.__mro__ if c is not Node for k in vars(c)}:
        raise NodeDefinitionError(f"node type {name!r} does not define run()")
    for kind, ports in (("input", cls.inputs), ("output", cls.outputs)):
        if not isinstance(ports, dict):
            raise NodeDefinitionError(f"node type {name!r}: {kind}s must be a dict of port name -> "
                                      f"{'In' if kind == 'input' else 'Out'}(...), got {type(ports).__name__}")
        for port, spec in ports.items():
            _check_port(name, kind, port, spec)
    params = cls.Params
    if not (isinstance(params, type) and issubclass(params, BaseModel)):
        raise NodeDefinitionError(f"node type {name!r}: Params must be a pydantic BaseModel class, got {params!r}")
    try:
        json.dumps(params.model_json_schema())
    except Exception as exc:  # pydantic raises several kinds for types it cannot describe
        raise NodeDefinitionError(f"node type {name!r}: its parameters have no JSON schema ({type(exc).__name__}: {exc})") from None
    if any(p.stream for p in cls.outputs.values()) and cls.cache.value == "transient":
        raise NodeDefinitionError(f"node type {name!r}: a transient node cannot stream its outputs "
                                  "(streamed chunks go to the cache as they come)")
    check_code_dependencies(cls)
    # Not checked here: `extra_schema()`, the node's own code, which may be costly (a parameter
    # count builds a model); `registry.schema()` and `nodes describe` survive one that fails.


def _check_port(node: str, kind: str, port: object, spec: object) -> None:
    if not isinstance(port, str) or not PORT_NAME_RE.match(port):
        raise NodeDefinitionError(f"node type {node!r}: {kind} name {port!r} must be an identifier (letters, digits, '_')")
    where = f"node type {node!r} {kind} {port!r}"
    if not isinstance(spec, Port):
        raise NodeDefinitionError(f"{where}: expected {'In' if kind == 'input' else 'Out'}(...), got {spec!r}")
    t = spec.type
    if isinstance(t, str):
        if t not in TYPES:
            from .loader import suggest

            raise NodeDefinitionError(f"{where}: unknown port type {t!r}{suggest(t, TYPES.names())}")
    elif isinstance(t, PortType):
        if t.name not in TYPES or TYPES.get(t.name) is not t:
            raise NodeDefinitionError(f"{where}: port type {t.name!r} is not registered (pass it to register_type first)")
    else:
        raise NodeDefinitionError(f"{where}: the port type must be a type name or a PortType, got {t!r}")
    if spec.stream and not streamable(spec.port_type):
        raise NodeDefinitionError(f"{where}: declared stream=True, but port type {spec.port_type.name!r} cannot be "
                                  "streamed (only array types, chunked along their first axis, can)")


_resolved_dependencies: set[str] = set()


def check_code_dependencies(cls: type[Node]) -> None:
    """Every module a node names in `code_dependencies` must be found (without importing it)."""
    deps = cls.code_dependencies
    if isinstance(deps, str) or not all(isinstance(d, str) for d in deps):
        raise NodeDefinitionError(f"node type {cls.type_name!r}: code_dependencies must be a tuple of dotted module "
                                  f"names, got {deps!r}")
    for module in deps:
        if module in _resolved_dependencies:
            continue
        try:
            dependency_files(module)
        except CodeDependencyError as exc:
            raise NodeDefinitionError(f"node type {cls.type_name!r} declares code dependency {module!r}: {exc}") from None
        _resolved_dependencies.add(module)
