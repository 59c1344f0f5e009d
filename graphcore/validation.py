"""Checking a workflow against the node registry before anything runs.

`validate` reports every problem at once, each naming the node id and the YAML line;
`compile_workflow` turns a valid workflow into the BoundGraph the scheduler runs.
"""
from __future__ import annotations

import enum
import functools
import os
import typing
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import networkx as nx
from pydantic import BaseModel, ValidationError

from .keys import implicit_files
from .loader import NODE_ID_RE, REFERENCE_RE, apply_overrides, load_workflow, suggest
from .node import Node, Port, file_params
from .paths import AllowedRoots, PathNotAllowed, is_url
from .types import TYPES, PortType, TypeValidationError
from .workflow import BoundGraph, BoundNode, Edge, Literal, NodeSpec, Problem, Workflow, WorkflowError

# ---------------------------------------------------------------------------------------
# Parameters: pydantic errors as one readable line per parameter


def param_names(params_model: type[BaseModel]) -> set[str]:
    """The names a parameter may be given by in a workflow (field names and aliases)."""
    names = set()
    for name, field in params_model.model_fields.items():
        names.add(name)
        if field.alias:
            names.add(field.alias)
    return names


def param_problems(params_model: type[BaseModel], params: dict[str, Any]) -> list[tuple[str, str]]:
    """Validate `params` against the model: (parameter name, message) for each bad parameter."""
    try:
        params_model.model_validate(params)
        return []
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    by_param: dict[str, list[Any]] = {}  # pydantic's ErrorDetails
    for err in errors:
        name = str(err["loc"][0]) if err["loc"] else "(parameters)"
        by_param.setdefault(name, []).append(err)
    return [(name, _describe_param_errors(params_model, name, params.get(name), errs)) for name, errs in by_param.items()]


def _describe_param_errors(model: type[BaseModel], name: str, value: Any, errs: list[dict[str, Any]]) -> str:
    if any(e["type"] == "missing" for e in errs):
        field = _field(model, name)
        about = f" ({field.description})" if field is not None and field.description else ""
        return f"param '{name}' is required{about}"
    if name == "(parameters)":
        return "parameters: " + "; ".join(e["msg"] for e in errs)
    parts: list[str] = []
    where = ""
    for err in errs:
        sub = _sub_location(err["loc"][1:], value)
        where = where or sub
        text = _describe_error(model, name, err)
        if text not in parts:
            parts.append(text)
    # Several errors for one value are the alternatives of a union type (int | str ...).
    return f"param '{name}'{where} = {_short(errs[0]['input'] if where else value)}: " + ", or ".join(parts)


def _sub_location(loc: tuple, value: Any) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(value, dict) and part in value:
            out += f"[{part!r}]"
            value = value[part]
            continue
        if isinstance(value, (list, tuple)) and isinstance(part, int) and part < len(value):
            value = value[part]
    return out


def _describe_error(model: type[BaseModel], name: str, err: dict[str, Any]) -> str:
    ctx = err.get("ctx") or {}
    bounds = {"less_than_equal": ("≤", "le"), "less_than": ("<", "lt"),
              "greater_than_equal": ("≥", "ge"), "greater_than": (">", "gt")}
    if err["type"] in bounds:
        sign, key = bounds[err["type"]]
        return f"must be {sign} {_num(ctx.get(key))}"
    if err["type"] in ("literal_error", "enum"):
        choices = _choices(model, name)
        if choices:
            listed = ", ".join(repr(c) for c in choices[:12]) + (", …" if len(choices) > 12 else "")
            hint = suggest(str(err["input"]), [str(c) for c in choices]) if isinstance(err["input"], str) else ""
            return f"not one of {listed}{hint}"
        return "not one of " + str(ctx.get("expected", "the allowed values")).replace(" or ", ", ")
    msg = err["msg"]
    if msg.startswith("Input should be "):
        msg = "should be " + msg[len("Input should be "):]
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    return msg[:1].lower() + msg[1:]


def _field(model: type[BaseModel], name: str) -> Any:
    for field_name, field in model.model_fields.items():
        if name in (field_name, field.alias):
            return field
    return None


def _choices(model: type[BaseModel], name: str) -> list[Any]:
    field = _field(model, name)
    if field is None:
        return []
    out: list[Any] = []

    def walk(tp: Any) -> None:
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            out.extend(m.value for m in tp)
        elif typing.get_origin(tp) is typing.Literal:
            out.extend(typing.get_args(tp))
        else:
            for arg in typing.get_args(tp):
                walk(arg)

    walk(field.annotation)
    return out


def _num(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------------------------
# The workflow checks


def _missing_file_hint(cls: type[Node], param: str, resolved: Path) -> str:
    """The node's advice for a missing file (Node.missing_file_hint), e.g. the command that makes it."""
    return cls.missing_file_hint(param, str(resolved))


class _Checker:
    def __init__(self, wf: Workflow, registry: Any, roots: AllowedRoots | None = None) -> None:
        self.wf, self.registry, self.roots = wf, registry, roots
        self.problems: list[Problem] = []
        self.path = str(wf.path) if wf.path else None

    def add(self, spec: NodeSpec | None, message: str, kind: str, line: int | None = None) -> None:
        if line is None and spec is not None:
            line = spec.line
        self.problems.append(Problem(message, node_id=spec.id if spec else None, line=line, path=self.path, kind=kind))

    def node_class(self, node_id: str) -> type[Node] | None:
        spec = self.wf.nodes.get(node_id)
        if spec is None or not spec.type or spec.type not in self.registry:
            return None
        return self.registry.get(spec.type)

    def run(self) -> list[Problem]:
        for spec in self.wf.nodes.values():
            if not NODE_ID_RE.match(spec.id):
                self.add(spec, f"invalid node id '{spec.id}': use letters, digits, '_' and '-', starting with a letter or '_'",
                         "node-id")
            cls = self.check_type(spec)
            if cls is not None:
                self.check_params(spec, cls)
            self.check_inputs(spec, cls)
        self.check_cycles()
        if not self.problems:
            self.check_resources()
        return self.problems

    def check_resources(self) -> None:
        """Nodes that would need more memory than there is (graphcore/resources.py)."""
        from .resources import too_big

        for node_id, message in too_big(self.wf, self.registry, dependency_graph(self.wf),
                                        lambda path: resolve_workflow_path(self.wf, path)):
            self.add(self.wf.nodes[node_id], message, "resources")

    def check_type(self, spec: NodeSpec) -> type[Node] | None:
        if not spec.type:
            self.add(spec, "no 'type' given (e.g. `type: Range`; `graphrun nodes` lists the types)", "unknown-type")
            return None
        if spec.type in self.registry:
            return self.registry.get(spec.type)
        message = f"unknown node type '{spec.type}'{suggest(spec.type, self.registry.names())}"
        broken = [str(e.plugin) for e in getattr(self.registry, "errors", [])]
        if broken:
            message += ("; it may come from a plugin that failed to load: " + "; ".join(
                f"{e.plugin} ({e.message})" for e in self.registry.errors))
        else:
            message += "; `graphrun nodes` lists the known types"
        self.add(spec, message, "unknown-type")
        return None

    def check_params(self, spec: NodeSpec, cls: type[Node]) -> None:
        model = cls.Params
        known = param_names(model)
        allows_extra = model.model_config.get("extra") == "allow"
        valid = {}
        for name, value in spec.params.items():
            if name in known or allows_extra:
                valid[name] = value
            else:
                listed = ", ".join(sorted(model.model_fields)) or "none"
                self.add(spec, f"unknown param '{name}' for {spec.type}{suggest(name, known)}; its params: {listed}",
                         "unknown-param", spec.param_lines.get(name))
        bad = set()
        for name, message in param_problems(model, valid):
            bad.add(name)
            self.add(spec, message, "param", spec.param_lines.get(name))
        for name, mode in file_params(model).items():
            if name in bad:
                continue
            value = valid.get(name, model.model_fields[name].default)
            if not isinstance(value, (str, os.PathLike)) or not str(value):
                continue
            line = spec.param_lines.get(name)
            if not self.check_root(spec, value, f"param '{name}'", line):
                continue
            if mode in ("read", "read-path") and not is_url(os.fspath(value)):
                self.check_file(spec, value, f"param '{name}'", line, functools.partial(_missing_file_hint, cls, name))
        if not bad:
            self.check_implicit_files(spec, cls, valid)

    def check_implicit_files(self, spec: NodeSpec, cls: type[Node], params: dict[str, Any]) -> None:
        """The files the node reads without a parameter naming them (e.g. a bundled checkpoint)."""
        try:
            files = implicit_files(cls, cls.Params(**params), spec.inputs)
        except Exception as exc:
            self.add(spec, f"cannot list the files {spec.type} reads: {type(exc).__name__}: {exc}", "file")
            return
        for name, path in files.items():
            resolved = resolve_workflow_path(self.wf, path)
            if not resolved.exists():
                self.add(spec, f"{spec.type} reads the file '{name}' = {resolved}, which does not exist", "file")

    def check_root(self, spec: NodeSpec, value: Any, what: str, line: int | None) -> bool:
        """Whether a path the node reads or writes lies inside the allowed roots (always, without roots)."""
        if self.roots is None:
            return True
        try:
            self.roots.check(value, self.wf.base_dir)
        except PathNotAllowed as exc:
            self.add(spec, f"{what}: {exc}", "path-root", line)
            return False
        return True

    def check_file(self, spec: NodeSpec, value: Any, what: str, line: int | None,
                   hint: Callable[[Path], str] | None = None) -> None:
        resolved = resolve_workflow_path(self.wf, value)
        if not resolved.exists():
            try:
                advice = hint(resolved) if hint else ""
            except Exception:  # a hint is a courtesy: never let it hide the problem itself
                advice = ""
            self.add(spec, f"{what}: file not found: '{os.fspath(value)}' (looked for {resolved})" + (f"; {advice}" if advice else ""),
                     "file", line)

    def check_inputs(self, spec: NodeSpec, cls: type[Node] | None) -> None:
        if cls is not None:
            for name in spec.inputs:
                if name not in cls.inputs:
                    listed = ", ".join(cls.inputs) or "none"
                    self.add(spec, f"unknown input '{name}' for {spec.type}{suggest(name, cls.inputs)}; its inputs: {listed}",
                             "unknown-port", spec.input_lines.get(name))
            for name, port in cls.inputs.items():
                if name not in spec.inputs and not port.optional:
                    self.add(spec, f"missing required input '{name}' ({_type_name(port)}){self.sources_for(spec, port)}",
                             "missing-input")
            for group in cls.exactly_one_of:
                given = [n for n in group if n in spec.inputs]
                if len(given) != 1:
                    listed = ", ".join(f"'{n}'" for n in group)
                    state = ("none is connected" if not given else "both are connected" if len(group) == 2
                             else ", ".join(f"'{n}'" for n in given) + " are connected")
                    self.add(spec, f"connect exactly one of the inputs {listed} ({state})", "exactly-one",
                             spec.input_lines.get(given[-1]) if given else None)
        for name, value in spec.inputs.items():
            declared = cls.inputs.get(name) if cls is not None else None
            line = spec.input_lines.get(name)
            if isinstance(value, Edge):
                self.check_edge(spec, name, value, declared, line)
            elif declared is not None:
                self.check_literal(spec, name, value, declared, line)

    def sources_for(self, spec: NodeSpec, port: Port) -> str:
        """'; connect e.g. a.out' listing outputs in the workflow that could feed the port."""
        target = _type_name(port)
        found = []
        for other in self.wf.nodes.values():
            other_cls = self.node_class(other.id)
            if other.id == spec.id or other_cls is None:
                continue
            found += [f"{other.id}.{out}" for out, p in other_cls.outputs.items() if _connects(_type_name(p), target)]
        return f"; connect e.g. {', '.join(found[:3])}" if found else f"; connect an output of type {target}"

    def check_edge(self, spec: NodeSpec, name: str, edge: Edge, port: Port | None, line: int | None) -> None:
        if edge.node not in self.wf.nodes:
            self.add(spec, f"input '{name}' is connected to unknown node '{edge.node}'{suggest(edge.node, self.wf.nodes)}",
                     "unknown-node", line)
            return
        source_cls = self.node_class(edge.node)
        if source_cls is None:
            return  # the source's own problem (unknown type) is reported on its line
        if edge.port not in source_cls.outputs:
            listed = ", ".join(source_cls.outputs) or "none"
            hint = ""
            if port is not None and _takes_text(port, str(edge)):
                hint = f"; to pass the text '{edge}' itself, write {{literal: {edge}}}"
            self.add(spec, f"input '{name}': node '{edge.node}' ({source_cls.type_name}) has no output '{edge.port}'"
                           f"{suggest(edge.port, source_cls.outputs)}; its outputs: {listed}{hint}", "unknown-port", line)
            return
        if port is None:
            return
        src, dst = _type_name(source_cls.outputs[edge.port]), _type_name(port)
        if not _connects(src, dst):
            adapters = adapters_between(self.registry, src, dst)
            hint = f"; an adapter node converts it: {' or '.join(adapters)}" if adapters else ""
            self.add(spec, f"type mismatch: {edge} ({src}) → {spec.id}.{name} ({dst}): an output of type {src} "
                           f"cannot feed an input of type {dst}{hint}", "type-mismatch", line)

    def check_literal(self, spec: NodeSpec, name: str, literal: Literal, port: Port, line: int | None) -> None:
        try:
            port_type = port.port_type
        except KeyError as exc:
            self.add(spec, f"input '{name}': {exc.args[0]}", "literal", line)
            return
        try:
            converted = port_type.from_literal(literal.value)
        except (TypeValidationError, ValueError, TypeError) as exc:
            hint = self.reference_hint(literal.value)
            self.add(spec, f"input '{name}' = {_short(literal.value)}: {exc}" + (f"; {hint}" if hint else ""),
                     "literal", line)
            return
        hint = self.reference_hint(literal.value)
        if hint and not isinstance(converted, str):
            # Shaped like `id.port` but taken as text by a type that is not text: almost surely a typo'd reference.
            self.add(spec, f"input '{name}' = {_short(literal.value)}: not a connection: {hint}", "unknown-node", line)
            return
        if _is_path_type(port_type) and isinstance(literal.value, str) and literal.value:
            if self.check_root(spec, literal.value, f"input '{name}'", line) and not is_url(literal.value):
                self.check_file(spec, literal.value, f"input '{name}'", line)

    def reference_hint(self, value: Any) -> str:
        """For a string shaped like `id.port` whose id is not a node: the likely intended node."""
        m = REFERENCE_RE.match(value) if isinstance(value, str) else None
        if not m:
            return ""
        return f"'{m.group(1)}' is not a node of this workflow{suggest(m.group(1), self.wf.nodes)}"

    def check_cycles(self) -> None:
        graph = dependency_graph(self.wf)
        position = {node_id: i for i, node_id in enumerate(self.wf.nodes)}
        for component in nx.strongly_connected_components(graph):
            first = min(component, key=position.__getitem__)
            if len(component) == 1 and not graph.has_edge(first, first):
                continue
            cycle = [u for u, _ in nx.find_cycle(graph.subgraph(component), source=first)]
            start = cycle.index(min(cycle, key=position.__getitem__))
            cycle = cycle[start:] + cycle[:start]
            spec = self.wf.nodes[cycle[0]]
            self.add(spec, "cycle: " + " → ".join(cycle + [cycle[0]]) + " (a node cannot depend on its own output)", "cycle")


def adapters_between(registry: Any, source: str, target: str) -> list[str]:
    """Adapter node types (Node.adapter) that take a `source` value and give one that feeds `target`."""
    found = []
    for name in registry.names():
        cls = registry.get(name)
        if not getattr(cls, "adapter", False):
            continue
        (port_in,), (port_out,) = cls.inputs.values(), cls.outputs.values()
        if _connects(source, _type_name(port_in)) and _connects(_type_name(port_out), target):
            found.append(name)
    return found


def _type_name(port: Port) -> str:
    return port.type if isinstance(port.type, str) else port.type.name


def _connects(source: str, target: str) -> bool:
    return TYPES.can_connect(source, target)


def _takes_text(port: Port, text: str) -> bool:
    try:
        return isinstance(port.port_type.from_literal(text), str)
    except (KeyError, TypeValidationError, ValueError, TypeError):
        return False


def _is_path_type(port_type: PortType) -> bool:
    return "Path" in TYPES.ancestors(port_type.name)


def dependency_graph(wf: Workflow) -> nx.DiGraph:
    """Nodes of the workflow, with an arc from each node to the nodes that read its outputs."""
    graph = nx.DiGraph()
    graph.add_nodes_from(wf.nodes)
    for spec in wf.nodes.values():
        for value in spec.inputs.values():
            if isinstance(value, Edge) and value.node in wf.nodes:
                graph.add_edge(value.node, spec.id)
    return graph


def resolve_workflow_path(wf: Workflow, value: str | os.PathLike) -> Path:
    """A path from the workflow, made absolute against the workflow file's folder."""
    p = Path(value).expanduser()
    return p if p.is_absolute() else (wf.base_dir / p).absolute()


# ---------------------------------------------------------------------------------------
# Public API


def validate(wf: Workflow, registry: Any, *, roots: AllowedRoots | Iterable[str | os.PathLike] | None = None) -> list[Problem]:
    """Every problem with the workflow, each naming its node and YAML line (empty if valid).

    With `roots` (folders and URL prefixes, see graphcore/paths.py), every path a node would read
    or write must lie inside them: path parameters (set or default) and Path-typed literals."""
    if roots is not None and not isinstance(roots, AllowedRoots):
        roots = AllowedRoots(roots)
    return _Checker(wf, registry, roots).run()


def compile_workflow(wf: Workflow, registry: Any, *, validated: bool = False) -> BoundGraph:
    """Resolve a workflow against the registry into a BoundGraph, or raise WorkflowError.

    Parameters become instances of each node's Params model; literal inputs are converted by
    their port type (literal paths made absolute against the workflow's folder); `order` is a
    topological order that follows the file's node order where dependencies allow.
    `validated=True` skips the checks when the caller has just run `validate` on this very
    workflow and found no problem (`check_workflow_file` does).
    """
    problems = [] if validated else validate(wf, registry)
    if problems:
        raise WorkflowError(problems)
    nodes = {}
    for spec in wf.nodes.values():
        cls = registry.get(spec.type)
        inputs: dict[str, Edge | Literal] = {}
        for name, value in spec.inputs.items():
            if isinstance(value, Literal):
                port_type = cls.inputs[name].port_type
                converted = port_type.from_literal(value.value)
                if _is_path_type(port_type) and isinstance(converted, str) and converted:
                    converted = str(resolve_workflow_path(wf, converted))
                value = Literal(converted)
            inputs[name] = value
        nodes[spec.id] = BoundNode(spec=spec, cls=cls, params=cls.Params.model_validate(spec.params), inputs=inputs)
    position = {node_id: i for i, node_id in enumerate(wf.nodes)}
    order = list(nx.lexicographical_topological_sort(dependency_graph(wf), key=position.__getitem__))
    return BoundGraph(workflow=wf, nodes=nodes, order=order)


def check_workflow_file(path: str | os.PathLike, registry: Any, overrides: Iterable[str] = (),
                        roots: Iterable[str | os.PathLike] | None = None) -> tuple[Workflow | None, list[Problem]]:
    """Load, apply overrides and validate, collecting every problem of all three steps.

    Returns the workflow (None when the file cannot be read as a workflow at all) and the
    problems; an empty list means the workflow is ready to compile and run.
    """
    problems: list[Problem] = []
    try:
        wf = load_workflow(path, problems=problems)
    except WorkflowError as exc:
        return None, exc.problems
    try:
        apply_overrides(wf, list(overrides), registry)
    except WorkflowError as exc:
        problems += exc.problems
    return wf, problems + validate(wf, registry, roots=roots)


def format_problems(problems: list[Problem]) -> str:
    """One line per problem, `file:line: node 'id': message`, in file order."""
    ordered = sorted(problems, key=lambda p: (p.path or "", p.line is None, p.line or 0, p.column or 0))
    return "\n".join(str(p) for p in ordered)
