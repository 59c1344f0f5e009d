"""Workflow <-> the editor's graph JSON, and parameter widgets from each node's JSON schema.

The editor never parses YAML: the server turns a workflow (read by graphcore.loader) into
graph JSON, and the graph JSON the editor sends back into a Workflow that graphcore.loader
dumps. Values the browser cannot hold exactly travel as YAML text, `{"$yaml": "5.0"}`:
JavaScript numbers drop the difference between 5 and 5.0, which is a different parameter
value for an untyped (`Any`) parameter and so a different cache key.

Graph JSON::

    {"path": "workflows/examples/signal.yaml", "description": "...",
     "nodes": [{"id": "wave", "type": "Function", "params": {"fn": "sin"},
                "inputs": {"x": {"node": "t", "port": "array"}, "k": {"$yaml": "[1, 2]"}},
                "layout": {"x": 320, "y": 40}, "pos": [320, 40]}],
     "layout": {"groups": [{"title": "signal", "bounding": [0, 0, 600, 300], "color": "#3f789e"}]}}

`pos` is null for a node the file gives no position: the editor lays those out itself (a
layered layout made with the nodes' real sizes), and writes positions back only once the user
moves or adds a node, so that opening and saving an untouched file changes nothing.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from graphcore.node import FILE_KEY, file_params
from graphcore.types import TYPES
from graphcore.workflow import Edge, Literal, NodeSpec, Problem, Workflow

YAML_KEY = "$yaml"


# ---------------------------------------------------------------------------------------
# Parameter widgets


def _deref(prop: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Follow `$ref` (and pydantic's single-item allOf wrapper) into `$defs`, keeping the field's own keys."""
    target = prop
    if "allOf" in prop and len(prop["allOf"]) == 1:
        target = prop["allOf"][0]
    ref = target.get("$ref", "")
    if ref.startswith("#/$defs/"):
        merged = dict(defs.get(ref.split("/")[-1], {}))
        merged.update({k: v for k, v in prop.items() if k not in ("$ref", "allOf")})
        return merged
    return prop


def widget_for(name: str, prop: dict[str, Any], defs: dict[str, Any], required: bool) -> dict[str, Any]:
    """One parameter's widget: kind (combo, toggle, int, float, file, text or yaml) and its options."""
    prop = _deref(prop, defs)
    w: dict[str, Any] = {"name": name, "description": prop.get("description", ""), "required": required}
    if "default" in prop:
        w["default"] = prop["default"]
    kind = prop.get("type")
    if FILE_KEY in prop:
        w.update(kind="file", mode=prop[FILE_KEY].get("mode", "read"), folder=bool(prop[FILE_KEY].get("folder")),
                 extensions=prop[FILE_KEY].get("extensions", []))
    elif "enum" in prop:
        w.update(kind="combo", choices=list(prop["enum"]))
    elif "const" in prop:
        w.update(kind="combo", choices=[prop["const"]])
    elif kind == "boolean":
        w["kind"] = "toggle"
    elif kind in ("integer", "number"):
        w["kind"] = "int" if kind == "integer" else "float"
        lo = prop.get("minimum", prop.get("exclusiveMinimum"))
        hi = prop.get("maximum", prop.get("exclusiveMaximum"))
        if lo is not None:
            w["min"] = lo
        if hi is not None:
            w["max"] = hi
        w["exclusive"] = [k for k in ("exclusiveMinimum", "exclusiveMaximum") if k in prop]
    elif kind == "string":
        w["kind"] = "text"
    else:  # lists, dicts, optionals, unions, Any: edited as YAML text
        w["kind"] = "yaml"
    return w


def param_widgets(params_schema: dict[str, Any]) -> list[dict[str, Any]]:
    defs = params_schema.get("$defs", {})
    required = set(params_schema.get("required", []))
    return [widget_for(n, p, defs, n in required) for n, p in params_schema.get("properties", {}).items()]


def editor_schema(registry: Any) -> dict[str, Any]:
    """The registry's schema (nodes, port types with `connects_to`) plus each node's widgets."""
    schema = registry.schema()
    for spec in schema["nodes"].values():
        spec["widgets"] = param_widgets(spec["params"])
    return schema


# ---------------------------------------------------------------------------------------
# Values


def yaml_text(value: Any) -> str:
    """A value as one line of YAML (flow style), exactly readable back by yaml.safe_load."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 20, allow_unicode=True, sort_keys=False)
    if text.endswith("\n...\n"):
        text = text[: -len("\n...\n")]
    return text.strip()


def _fits(kind: str, value: Any, widget: dict[str, Any]) -> bool:
    """Whether a widget of `kind` can hold `value` without changing it."""
    if kind == "combo":
        return any(value == c and type(value) is type(c) for c in widget["choices"])
    if kind == "toggle":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**53
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind in ("text", "file"):
        return isinstance(value, str)
    return False


def encode_param(value: Any, widget: dict[str, Any] | None) -> Any:
    if widget is not None and _fits(widget["kind"], value, widget):
        return value
    return {YAML_KEY: yaml_text(value)}


def is_yaml_box(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {YAML_KEY} and isinstance(value[YAML_KEY], str)


def decode_value(value: Any) -> Any:
    """A value from the browser: YAML text boxes are parsed (yaml.YAMLError on bad text)."""
    if is_yaml_box(value):
        return yaml.safe_load(value[YAML_KEY]) if value[YAML_KEY].strip() else None
    return value


def decode_param(value: Any, widget: dict[str, Any] | None) -> Any:
    value = decode_value(value)
    if widget is not None and not isinstance(value, bool):
        # A float parameter comes back from JavaScript as 5 for 5.0; the file said 5.0.
        if widget["kind"] == "float" and isinstance(value, int):
            return float(value)
        if widget["kind"] == "int" and isinstance(value, float) and value.is_integer():
            return int(value)
    return value


# ---------------------------------------------------------------------------------------
# Workflow -> graph JSON


def _widgets_of(registry: Any, node_type: str) -> dict[str, dict[str, Any]]:
    if node_type not in registry:
        return {}
    return {w["name"]: w for w in param_widgets(registry.get(node_type).Params.model_json_schema())}


def workflow_to_graph(wf: Workflow, registry: Any, display_path: str | None) -> dict[str, Any]:
    nodes = []
    for node_id, spec in wf.nodes.items():
        widgets = _widgets_of(registry, spec.type)
        inputs: dict[str, Any] = {}
        for name, source in spec.inputs.items():
            if isinstance(source, Edge):
                inputs[name] = {"node": source.node, "port": source.port}
            else:
                inputs[name] = {YAML_KEY: yaml_text(source.value)}
        layout = dict(spec.layout or {})
        x, y = layout.get("x"), layout.get("y")
        pos = [x, y] if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (x, y)) else None
        nodes.append({
            "id": node_id,
            "type": spec.type,
            "params": {k: encode_param(v, widgets.get(k)) for k, v in spec.params.items()},
            "inputs": inputs,
            "layout": layout if spec.layout is not None else None,
            "pos": pos,
        })
    return {"path": display_path, "description": wf.meta.get("description", ""), "nodes": nodes, "layout": wf.layout}


# ---------------------------------------------------------------------------------------
# Graph JSON -> Workflow


class GraphError(ValueError):
    """The graph JSON from the browser is malformed (not a problem of the workflow itself)."""


def graph_to_workflow(data: Any, registry: Any, path: Path | None) -> tuple[Workflow, list[Problem]]:
    """The Workflow the editor shows, with `path` as its location (relative paths resolve
    against its folder). Parameter texts that are not valid YAML come back as problems."""
    if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
        raise GraphError("the editor sent no node list")
    wf = Workflow(nodes={}, path=path)
    if isinstance(data.get("description"), str) and data["description"]:
        wf.meta["description"] = data["description"]
    problems: list[Problem] = []
    for raw in data["nodes"]:
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not isinstance(raw.get("type"), str):
            raise GraphError("every node needs a string id and type")
        node_id = raw["id"]
        if node_id in wf.nodes:
            raise GraphError(f"two nodes have the id '{node_id}'")
        widgets = _widgets_of(registry, raw["type"])
        spec = NodeSpec(id=node_id, type=raw["type"])
        for name, value in (raw.get("params") or {}).items():
            try:
                spec.params[str(name)] = decode_param(value, widgets.get(name))
            except yaml.YAMLError as exc:
                problems.append(Problem(f"parameter '{name}': cannot read {value[YAML_KEY]!r} as YAML ({_yaml_reason(exc)})",
                                        node_id=node_id, kind="param"))
        for name, source in (raw.get("inputs") or {}).items():
            if isinstance(source, dict) and set(source) == {"node", "port"}:
                spec.inputs[str(name)] = Edge(str(source["node"]), str(source["port"]))
                continue
            try:
                spec.inputs[str(name)] = Literal(decode_value(source))
            except yaml.YAMLError as exc:
                problems.append(Problem(f"input '{name}': cannot read the literal as YAML ({_yaml_reason(exc)})",
                                        node_id=node_id, kind="param"))
        layout = raw.get("layout")
        if isinstance(layout, dict):
            spec.layout = {str(k): v for k, v in layout.items() if isinstance(v, (int, float, str, bool))}
        wf.nodes[node_id] = spec
    layout = data.get("layout")
    if isinstance(layout, dict) and layout:
        wf.layout = json_plain(layout)
    return wf, problems


def json_plain(value: Any) -> Any:
    """JSON from the browser reduced to what YAML writes plainly (numbers, text, lists, mappings)."""
    if isinstance(value, dict):
        return {str(k): json_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_plain(v) for v in value]
    return value if isinstance(value, (int, float, str, bool)) or value is None else str(value)


def _yaml_reason(exc: yaml.YAMLError) -> str:
    return str(getattr(exc, "problem", None) or exc).strip()


# ---------------------------------------------------------------------------------------
# Moving a workflow to another folder without changing what its relative paths name


def rebase_paths(wf: Workflow, registry: Any, new_dir: Path) -> list[str]:
    """Rewrite relative file parameters and Path literals so they name the same files from
    `new_dir` as they did from the workflow's folder. Returns what was changed ("node.param")."""
    old_dir = wf.base_dir.resolve()
    new_dir = new_dir.resolve()
    if old_dir == new_dir:
        return []
    changed = []

    def moved(value: Any) -> Any:
        if isinstance(value, str) and value and "://" not in value and not Path(value).expanduser().is_absolute():
            return Path(os.path.relpath(old_dir / value, new_dir)).as_posix()
        return value

    for spec in wf.nodes.values():
        if spec.type not in registry:
            continue
        cls = registry.get(spec.type)
        for name in file_params(cls.Params):
            if name in spec.params and moved(spec.params[name]) != spec.params[name]:
                spec.params[name] = moved(spec.params[name])
                changed.append(f"{spec.id}.{name}")
        for name, source in spec.inputs.items():
            port = cls.inputs.get(name)
            if isinstance(source, Literal) and port is not None and "Path" in TYPES.ancestors(port.port_type.name):
                if moved(source.value) != source.value:
                    spec.inputs[name] = Literal(moved(source.value))
                    changed.append(f"{spec.id}.{name}")
    return changed
