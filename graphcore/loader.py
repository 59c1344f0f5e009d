"""Reading and writing workflow files (YAML format v1, see docs/workflow-format.md).

The file is composed with PyYAML into a node tree first, so that every node, parameter and
input keeps its 1-based source line, duplicate keys (which PyYAML would silently overwrite)
can be reported, and malformed YAML becomes a located `WorkflowError` instead of a traceback.

An input value is a reference `other_id.port` when it is a string of that shape whose first
part is a node id of this workflow; anything else is a literal. `{literal: ...}` forces a
literal (for a string that would otherwise read as a reference).
"""
from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, ScalarNode, SequenceNode
from yaml.nodes import Node as YamlNode

from .workflow import FORMAT_VERSION, Edge, Literal, NodeSpec, Problem, Workflow, WorkflowError

try:  # the C composer is much faster on large files and keeps the same marks
    _BaseLoader: type = yaml.CSafeLoader
except AttributeError:  # PyYAML built without libyaml
    _BaseLoader = yaml.SafeLoader


class _Loader(_BaseLoader):
    """The safe loader, remembering which tag each plain scalar resolves to: the resolver's
    regular expressions are the composer's main cost on large workflows, and node types,
    parameter names and values repeat from node to node."""

    _tags: dict[tuple[str, tuple[bool, bool]], str] = {}

    def resolve(self, kind: type, value: Any, implicit: Any) -> str:
        if kind is not ScalarNode or self.yaml_path_resolvers or not isinstance(implicit, tuple):
            return super().resolve(kind, value, implicit)
        memo = (value, implicit)
        tag = self._tags.get(memo)
        if tag is None:
            if len(self._tags) > 100_000:
                self._tags.clear()
            tag = self._tags[memo] = super().resolve(kind, value, implicit)
        return tag

NODE_ID_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
REFERENCE_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)\.([A-Za-z_][A-Za-z0-9_]*)$")
LITERAL_ESCAPE = "literal"
TOP_KEYS = ("version", "description", "nodes", "layout")
NODE_KEYS = ("type", "params", "inputs", "layout")
_STR_TAG = "tag:yaml.org,2002:str"
# Keys that SafeConstructor.flatten_mapping rewrites: merges (`<<`) and the value key (`=`).
_FLATTENED_KEY_TAGS = frozenset({"tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"})


def suggest(name: str, choices: Any, n: int = 3) -> str:
    """' (did you mean 'x'?)' for the closest of `choices`, or ''."""
    choices = [str(c) for c in choices]
    lowered = {c.lower(): c for c in choices}
    close = [lowered[name.lower()]] if name.lower() in lowered else []
    close += [c for c in difflib.get_close_matches(name, choices, n=n, cutoff=0.6) if c not in close]
    if not close:
        return ""
    return " (did you mean " + " or ".join(f"'{c}'" for c in close[:n]) + "?)"


def _line(node: YamlNode) -> int:
    return node.start_mark.line + 1


class _Parser:
    """One pass over the composed tree; collects every problem instead of stopping."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.problems: list[Problem] = []
        self._constructor = SafeConstructor()
        self._scalars: dict[tuple[str, str], Any] = {}  # (tag, text) -> value: scalars repeat a lot

    def problem(self, message: str, node: YamlNode | None = None, node_id: str | None = None, kind: str = "format",
                line: int | None = None) -> None:
        if line is None and node is not None:
            line = _line(node)
        self.problems.append(Problem(message, node_id=node_id, line=line,
                                     path=str(self.path) if self.path else None, kind=kind))

    # --- generic helpers ---

    def items(self, mapping: MappingNode, where: str, node_id: str | None = None) -> Iterator[tuple[str, ScalarNode, YamlNode]]:
        """(key text, key node, value node) of a mapping, reporting non-string and duplicate keys.

        Keys are taken as written, so `on:` or `1:` name a node "on" or "1" rather than a bool/int.
        A duplicated key is reported and its last value kept (what YAML itself would do).
        Merge keys (`<<: *defaults`) are expanded; a key written here overrides a merged one.
        """
        written = None
        if any(k.tag in _FLATTENED_KEY_TAGS for k, _ in mapping.value):  # rare: skip the work otherwise
            written = {id(k) for k, _ in mapping.value}
            try:
                self._constructor.flatten_mapping(mapping)
            except yaml.MarkedYAMLError as exc:
                self.problem(f"{where}: {exc.problem}", mapping, node_id, kind="yaml")
        seen: dict[str, tuple[int, bool]] = {}  # key -> (line, written here rather than merged)
        pairs: dict[str, tuple[str, ScalarNode, YamlNode]] = {}
        for key_node, value_node in mapping.value:
            if not isinstance(key_node, ScalarNode):
                self.problem(f"{where}: a key must be a plain name, not a {_kind(key_node)}", key_node, node_id)
                continue
            key, here = key_node.value, written is None or id(key_node) in written
            if key in seen and here and seen[key][1]:
                self.problem(f"{where}: duplicate key '{key}' (first at line {seen[key][0]}, again at line {_line(key_node)}); "
                             "YAML would silently keep only the last one — remove one", key_node, node_id, kind="duplicate-key")
            seen[key] = (_line(key_node), here)
            pairs.pop(key, None)
            pairs[key] = (key, key_node, value_node)
        return iter(pairs.values())

    def value(self, node: YamlNode, node_id: str | None, what: str) -> tuple[bool, Any]:
        """Construct a plain Python value from a subtree, after checking it for duplicate keys."""
        if isinstance(node, ScalarNode):  # scalars are immutable: construct each distinct one once
            memo = (node.tag, node.value)
            if memo in self._scalars:
                return True, self._scalars[memo]
        self.check_duplicates(node, node_id, what)
        try:
            value = self._constructor.construct_document(node)
            if isinstance(node, ScalarNode):
                self._scalars[memo] = value
            return True, value
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            self.problem(f"{what}: {exc.problem or exc.context}", node_id=node_id, kind="yaml",
                         line=mark.line + 1 if mark else _line(node))
            return False, None

    def check_duplicates(self, node: YamlNode, node_id: str | None, what: str) -> None:
        if isinstance(node, MappingNode):
            seen: dict[tuple[str, str], int] = {}
            for key_node, value_node in node.value:
                if isinstance(key_node, ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                    k = (key_node.tag, key_node.value)
                    if k in seen:
                        self.problem(f"{what}: duplicate key '{key_node.value}' (first at line {seen[k]}, "
                                     f"again at line {_line(key_node)})", key_node, node_id, kind="duplicate-key")
                    seen[k] = _line(key_node)
                self.check_duplicates(value_node, node_id, what)
        elif isinstance(node, SequenceNode):
            for item in node.value:
                self.check_duplicates(item, node_id, what)

    def unknown_key(self, key: str, key_node: YamlNode, allowed: tuple[str, ...], where: str, node_id: str | None) -> None:
        self.problem(f"unknown key '{key}' {where}{suggest(key, allowed)}; expected one of: {', '.join(allowed)}",
                     key_node, node_id, kind="unknown-key")

    # --- the format ---

    def workflow(self, root: YamlNode | None) -> Workflow:
        if root is None:
            raise WorkflowError([Problem("the workflow file is empty; it needs at least `version: 1` and `nodes:`",
                                         line=1, path=str(self.path) if self.path else None, kind="format")])
        if not isinstance(root, MappingNode):
            self.problem(f"a workflow file is a mapping with `version:` and `nodes:`, not a {_kind(root)}", root)
            raise WorkflowError(self.problems)
        wf = Workflow(nodes={}, path=self.path)
        version_seen = nodes_node = None
        for key, key_node, value_node in self.items(root, "top level"):
            if key == "version":
                version_seen = key_node
                ok, version = self.value(value_node, None, "version")
                if ok and (not isinstance(version, int) or isinstance(version, bool) or version != FORMAT_VERSION):
                    self.problem(f"unsupported workflow format version {version!r}: this graphrun reads version {FORMAT_VERSION}",
                                 value_node, kind="version")
            elif key == "description":
                ok, text = self.value(value_node, None, "description")
                if ok and text is not None:
                    if isinstance(text, str):
                        wf.meta["description"] = text
                    else:
                        self.problem("'description' must be text", value_node)
            elif key == "nodes":
                nodes_node = value_node
            elif key == "layout":
                wf.layout = self.layout(value_node, None, "the top-level 'layout' must be a mapping such as {groups: [...]}")
            else:
                self.unknown_key(key, key_node, TOP_KEYS, "at the top level", None)
        if version_seen is None:
            self.problem(f"missing `version: {FORMAT_VERSION}` at the top of the workflow file", root, kind="version", line=1)
        if nodes_node is None:
            self.problem("missing `nodes:` (a mapping of node id to {type, params, inputs})", root, line=1)
        elif isinstance(nodes_node, ScalarNode) and nodes_node.tag == "tag:yaml.org,2002:null":
            pass  # `nodes:` with nothing under it: an empty workflow
        elif not isinstance(nodes_node, MappingNode):
            self.problem(f"`nodes:` must be a mapping of node id to {{type, params, inputs}}, not a {_kind(nodes_node)}", nodes_node)
        else:
            entries = list(self.items(nodes_node, "nodes"))
            ids = {key for key, _, _ in entries}
            for node_id, key_node, body in entries:
                wf.nodes[node_id] = self.node(node_id, key_node, body, ids)
        return wf

    def node(self, node_id: str, key_node: YamlNode, body: YamlNode, ids: set[str]) -> NodeSpec:
        spec = NodeSpec(id=node_id, type="", line=_line(key_node))
        if not isinstance(body, MappingNode):
            self.problem(f"a node is a mapping with `type:` (and optionally params, inputs, layout), not a {_kind(body)}",
                         body, node_id)
            return spec
        for key, k_node, v_node in self.items(body, f"node '{node_id}'", node_id):
            if key == "type":
                if isinstance(v_node, ScalarNode):
                    spec.type = "" if v_node.tag == "tag:yaml.org,2002:null" else v_node.value
                else:
                    self.problem(f"'type' must be a node type name, not a {_kind(v_node)}", v_node, node_id)
            elif key == "params":
                for name, (line, value) in self.section(v_node, node_id, "params").items():
                    spec.params[name], spec.param_lines[name] = value, line
            elif key == "inputs":
                for name, (line, n) in self.section(v_node, node_id, "inputs", construct=False).items():
                    ok, value = self.input_value(n, node_id, name, ids)
                    if ok:
                        spec.inputs[name], spec.input_lines[name] = value, line
            elif key == "layout":
                spec.layout = self.layout(v_node, node_id, "'layout' must be a mapping such as {x: 120, y: 40}")
            else:
                self.unknown_key(key, k_node, NODE_KEYS, f"in node '{node_id}'", node_id)
        return spec

    def layout(self, node: YamlNode, node_id: str | None, wrong: str) -> dict | None:
        """Editor data (a node's or the graph's `layout:`): any mapping, kept as written."""
        ok, layout = self.value(node, node_id, "layout")
        if ok and layout is not None and not isinstance(layout, dict):
            self.problem(wrong, node, node_id)
            return None
        return layout if ok else None

    def section(self, node: YamlNode, node_id: str, what: str, construct: bool = True) -> dict[str, tuple[int, Any]]:
        """A `params:`/`inputs:` mapping -> name -> (line, value or yaml node)."""
        if isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null":
            return {}
        if not isinstance(node, MappingNode):
            self.problem(f"'{what}' must be a mapping of name to value, not a {_kind(node)}", node, node_id)
            return {}
        out = {}
        for name, key_node, value_node in self.items(node, f"{what} of node '{node_id}'", node_id):
            if construct:
                ok, value = self.value(value_node, node_id, f"{what[:-1]} '{name}'")
                if ok:
                    out[name] = (_line(key_node), value)
            else:
                out[name] = (_line(key_node), value_node)
        return out

    def input_value(self, node: YamlNode, node_id: str, name: str, ids: set[str]) -> tuple[bool, Edge | Literal]:
        if isinstance(node, MappingNode) and len(node.value) == 1 and isinstance(node.value[0][0], ScalarNode) \
                and node.value[0][0].value == LITERAL_ESCAPE:
            ok, value = self.value(node.value[0][1], node_id, f"input '{name}'")
            return ok, Literal(value)
        ok, value = self.value(node, node_id, f"input '{name}'")
        return ok, as_input(value, ids)


def as_input(value: Any, node_ids: Any) -> Edge | Literal:
    """The reference rule: `id.port` naming a node of the workflow is an edge, anything else a literal."""
    if isinstance(value, str):
        m = REFERENCE_RE.match(value)
        if m and m.group(1) in node_ids:
            return Edge(m.group(1), m.group(2))
    return Literal(value)


def _kind(node: YamlNode) -> str:
    if isinstance(node, MappingNode):
        return "mapping"
    if isinstance(node, SequenceNode):
        return "list"
    return f"value ({node.value!r})" if isinstance(node, ScalarNode) else "value"


def _yaml_problem(exc: yaml.YAMLError, text: str, path: Path | None) -> Problem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if isinstance(exc, yaml.MarkedYAMLError):
        what = (exc.problem or "").removeprefix("but ")
        lines = text.splitlines()
        if mark and mark.line < len(lines) and lines[mark.line][mark.column:mark.column + 1] == "\t":
            what += " — a tab; YAML indents with spaces"
        if exc.context:
            what = f"{what} ({exc.context}" + (f" started at line {exc.context_mark.line + 1}" if exc.context_mark else "") + ")"
    else:
        what = str(exc)
    return Problem(f"malformed YAML: {what.strip()}", line=mark.line + 1 if mark else None,
                   column=mark.column + 1 if mark else None, path=str(path) if path else None, kind="yaml")


def parse_workflow(text: str, path: Path | None = None, *, problems: list[Problem] | None = None) -> Workflow:
    """Parse workflow YAML text. Raises WorkflowError naming every problem found.

    With `problems` given, problems that still leave a usable workflow (unknown keys, duplicates,
    a wrong version, malformed sections) are appended to it and the workflow is returned, so that a
    caller can add the validation problems and report everything at once; malformed YAML still raises.
    """
    path = Path(path) if path is not None else None
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise WorkflowError([_yaml_problem(exc, text, path)]) from None
    parser = _Parser(path)
    wf = parser.workflow(root)
    if parser.problems:
        if problems is None:
            raise WorkflowError(parser.problems)
        problems.extend(parser.problems)
    return wf


def load_workflow(path: str | os.PathLike, *, problems: list[Problem] | None = None) -> Workflow:
    """Read a workflow file; relative file paths in it resolve against its folder."""
    path = Path(path).expanduser().absolute()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WorkflowError([Problem(f"workflow file not found: {path}", path=str(path), kind="file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkflowError([Problem(f"cannot read the workflow file: {exc}", path=str(path), kind="file")]) from None
    return parse_workflow(text, path, problems=problems)


# ---------------------------------------------------------------------------------------
# Writing


class _FlowList(list):
    pass


class _FlowDict(dict):
    pass


# Block style for structure; short lists of scalars and layouts on one line. The C emitter,
# where PyYAML has it, writes a 1,000-node workflow ~10x faster than the Python one.
_Dumper: Any = type("_Dumper", (getattr(yaml, "CSafeDumper", yaml.SafeDumper),), {})


def _represent_str(dumper: yaml.SafeDumper, value: str) -> Any:
    style = "|" if "\n" in value.strip("\n") else None
    return dumper.represent_scalar(_STR_TAG, value, style=style)


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(_FlowList, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True))
_Dumper.add_representer(_FlowDict, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v, flow_style=True))


def _plain(value: Any) -> Any:
    """Values as YAML can write them: numpy scalars/arrays, tuples and paths become plain data."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_plain(v) for v in value]
        scalar = all(isinstance(v, (int, float, str, bool, type(None))) for v in items)
        return _FlowList(items) if scalar and len(items) <= 16 else items
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays and scalars
        return _plain(value.tolist())
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def _dump_input(value: Edge | Literal, node_ids: Any) -> Any:
    if isinstance(value, Edge):
        return str(value)
    raw = value.value
    # Escape literals that would read back as something else: a reference, or the escape itself.
    needs_escape = isinstance(as_input(raw, node_ids), Edge) or (isinstance(raw, dict) and list(raw) == [LITERAL_ESCAPE])
    return _FlowDict({LITERAL_ESCAPE: _plain(raw)}) if needs_escape else _plain(raw)


def workflow_document(wf: Workflow) -> dict[str, Any]:
    """The workflow as the plain mapping that is written to YAML (keys in file order)."""
    doc: dict[str, Any] = {"version": wf.version}
    if wf.meta.get("description"):
        doc["description"] = wf.meta["description"]
    nodes: dict[str, Any] = {}
    for node_id, spec in wf.nodes.items():
        entry: dict[str, Any] = {"type": spec.type}
        if spec.params:
            entry["params"] = {k: _plain(v) for k, v in spec.params.items()}
        if spec.inputs:
            entry["inputs"] = {k: _dump_input(v, wf.nodes) for k, v in spec.inputs.items()}
        if spec.layout is not None:
            entry["layout"] = _FlowDict(_plain(spec.layout))
        nodes[node_id] = entry
    doc["nodes"] = nodes
    if wf.layout is not None:
        doc["layout"] = _plain(wf.layout)
    return doc


def dump_workflow(wf: Workflow) -> str:
    """Write a workflow as YAML: version, description, then the nodes in order, each with
    type, params, inputs, layout. Stable (same workflow, same text) and read back equal."""
    return yaml.dump(workflow_document(wf), Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=100)


# ---------------------------------------------------------------------------------------
# Command-line overrides


def apply_overrides(wf: Workflow, overrides: list[str], registry: Any) -> None:
    """Apply `--set id.param=value` overrides in place; the value is read as YAML (a number,
    a string, `[1, 2]`, `{a: 1}`, empty for null) and validated against the parameter's
    declaration. Every bad override is reported together in one WorkflowError."""
    from .validation import param_names, param_problems  # validation builds on this module

    problems: list[Problem] = []
    where = str(wf.path) if wf.path else None

    def bad(text: str, message: str, node_id: str | None = None) -> None:
        problems.append(Problem(f"--set {text}: {message}", node_id=node_id, path=where, kind="override"))

    for text in overrides:
        target, sep, raw = text.partition("=")
        node_id, dot, param = target.strip().partition(".")
        if not sep or not dot or not node_id or not param:
            bad(text, "expected NODE.PARAM=VALUE, e.g. --set feats.fps=25")
            continue
        if node_id not in wf.nodes:
            bad(text, f"no node '{node_id}' in this workflow{suggest(node_id, wf.nodes)}")
            continue
        spec = wf.nodes[node_id]
        try:
            value = yaml.load(raw, Loader=_Loader) if raw.strip() else None
        except yaml.YAMLError as exc:
            bad(text, f"cannot read the value {raw!r}: {getattr(exc, 'problem', None) or exc}", node_id)
            continue
        if spec.type not in registry:
            bad(text, f"node '{node_id}' has unknown type '{spec.type}', so its parameters are unknown", node_id)
            continue
        params_model = registry.get(spec.type).Params
        fields = param_names(params_model)
        if param not in fields:
            known = ", ".join(sorted(fields)) or "none"
            bad(text, f"node '{node_id}' ({spec.type}) has no parameter '{param}'{suggest(param, fields)}; "
                      f"its parameters: {known}", node_id)
            continue
        def problem_with(candidate: Any) -> str | None:
            found = [m for name, m in param_problems(params_model, {**spec.params, param: candidate}) if name == param]
            return found[0] if found else None

        message = problem_with(value)
        if message and not isinstance(value, str) and raw.strip() and problem_with(raw.strip()) is None:
            # YAML read `on`, `no` or `1.10` as a bool/number, but the parameter wants the text.
            value, message = raw.strip(), None
        if message:
            bad(text, message, node_id)
            continue
        spec.params[param] = value
    if problems:
        raise WorkflowError(problems)

