"""Saving a workflow over its file without rewriting what did not change.

`graphcore.loader.dump_workflow` writes a whole file in one canonical style; a user's file has
its own (comments, `description: >` blocks, flow mappings broken over lines, key order).
Saving from the editor therefore edits the file:

- a node whose type, parameters, inputs and layout are unchanged keeps its lines byte for byte;
- a changed node is edited in place with ruamel.yaml's round-trip mode (its comments and the
  keys that did not change keep their text; a long flow mapping may be joined on one line);
- a removed node loses its lines, a new node is appended in the canonical style;
- the description and the top-level layout (groups) are edited the same way.

A save without changes leaves the file exactly as it was. Whatever is written is read back
with graphcore's own loader and must mean the workflow being saved; if it would not (a
construct this editing cannot express, e.g. `nodes:` written as one flow mapping), the
canonical dump is written instead.
"""
from __future__ import annotations

import io
import textwrap
from collections.abc import Callable
from typing import Any

import yaml

from graphcore.loader import _dump_input, _plain, dump_workflow, parse_workflow
from graphcore.workflow import Literal, NodeSpec, Workflow


def same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down: 5 and 5.0 differ (they key differently)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, Literal) and isinstance(b, Literal):
        return same(a.value, b.value)
    return type(a) is type(b) and a == b


# equal(node type, parameter, a, b): whether two values of a parameter mean the same. The
# default is `same`; the editor passes one that knows each parameter's declared type (for a
# float parameter the file's `2` and the browser's `2.0` are one value, for an untyped one not).
ParamEqual = Callable[[str, str, Any, Any], bool]


def strict(node_type: str, name: str, a: Any, b: Any) -> bool:
    return same(a, b)


def same_params(node_type: str, a: dict[str, Any], b: dict[str, Any], equal: ParamEqual) -> bool:
    return list(a) == list(b) and all(equal(node_type, k, a[k], b[k]) for k in a)


def same_node(a: NodeSpec, b: NodeSpec, equal: ParamEqual = strict) -> bool:
    return (a.type == b.type and same_params(a.type, a.params, b.params, equal) and same(a.inputs, b.inputs)
            and same(a.layout, b.layout))


def same_workflow(a: Workflow, b: Workflow, equal: ParamEqual = strict) -> bool:
    return (list(a.nodes) == list(b.nodes) and (a.meta.get("description") or "") == (b.meta.get("description") or "")
            and same(a.layout, b.layout) and all(same_node(x, b.nodes[k], equal) for k, x in a.nodes.items()))


# --- ruamel pieces ------------------------------------------------------------------------------


def _ruamel() -> Any:
    from ruamel.yaml import YAML

    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096  # never wrap a line
    y.indent(mapping=2, sequence=4, offset=2)
    return y


def _styled(value: Any, top: bool = False) -> Any:
    """A plain value as ruamel nodes; mappings and lists of scalars in flow style, like dump_workflow."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(value, dict):
        out = CommentedMap((k, _styled(v)) for k, v in value.items())
        if not top and all(not isinstance(v, (dict, list)) for v in value.values()):
            out.fa.set_flow_style()
        return out
    if isinstance(value, list):
        seq = CommentedSeq(_styled(v) for v in value)
        if all(not isinstance(v, (dict, list)) for v in value):
            seq.fa.set_flow_style()
        return seq
    return value


def _dump(y: Any, doc: Any) -> str:
    out = io.StringIO()
    y.dump(doc, out)
    return out.getvalue()


def _sync_node(entry: Any, old: NodeSpec, new: NodeSpec, wf: Workflow, equal: ParamEqual) -> None:
    """Make the ruamel mapping of one node say `new` where it said `old`, touching only the differences."""
    from ruamel.yaml.comments import CommentedMap

    if old.type != new.type:
        entry["type"] = new.type
    inputs_equal: ParamEqual = lambda t, k, a, b: same(a, b)  # noqa: E731
    for name, before, after, encode, eq in (
        ("params", old.params, new.params, _plain, equal),
        ("inputs", old.inputs, new.inputs, lambda v: _dump_input(v, wf.nodes), inputs_equal),
    ):
        if same_params(new.type, before, after, eq):
            continue
        if not after:
            entry.pop(name, None)
            continue
        if not isinstance(entry.get(name), dict):
            entry[name] = CommentedMap()
            entry[name].fa.set_flow_style()
            before = {}
        target = entry[name]
        for key in [k for k in before if k not in after]:
            del target[key]
        for key, value in after.items():
            if key not in before or not eq(new.type, key, before[key], value):
                target[key] = _styled(encode(value))
    if not same(old.layout, new.layout):
        if new.layout is None:
            entry.pop("layout", None)
        else:
            entry["layout"] = _styled(_plain(new.layout))


# --- splicing ------------------------------------------------------------------------------------


class _Layout:
    """Where each node's lines are in the file: [start, end) line spans, from PyYAML's marks."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines(keepends=True)
        if self.lines and not self.lines[-1].endswith("\n"):
            self.lines[-1] += "\n"
        root = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        if not isinstance(root, yaml.MappingNode) or root.flow_style:
            raise ValueError("not a block mapping at the top level")
        keys = [(k.value, k.start_mark.line, k.start_mark.column, v) for k, v in root.value]
        found = [(i, k) for i, k in enumerate(keys) if k[0] == "nodes"]
        if len(found) != 1:
            raise ValueError("no single `nodes:`")
        i, (_, nodes_line, _, nodes_value) = found[0]
        self.nodes_line = nodes_line
        self.nodes_end = keys[i + 1][1] if i + 1 < len(keys) else len(self.lines)
        self.spans: dict[str, tuple[int, int]] = {}
        self.indent = 2
        if isinstance(nodes_value, yaml.ScalarNode):  # `nodes:` with nothing under it
            return
        if not isinstance(nodes_value, yaml.MappingNode) or nodes_value.flow_style:
            raise ValueError("`nodes:` is not a block mapping")
        starts = [(k.value, k.start_mark.line, k.start_mark.column) for k, _ in nodes_value.value]
        if any(a[1] >= b[1] for a, b in zip(starts, starts[1:])) or (starts and starts[0][1] <= nodes_line):
            raise ValueError("nodes share lines")
        self.indent = starts[0][2] if starts else 2
        for j, (node_id, line, _) in enumerate(starts):
            self.spans[node_id] = (line, starts[j + 1][1] if j + 1 < len(starts) else self.nodes_end)


def _indent(text: str, n: int) -> str:
    return textwrap.indent(text, " " * n, lambda line: bool(line.strip()))


def _edited_node(snippet: str, indent: int, node_id: str, old: NodeSpec, new: NodeSpec, wf: Workflow,
                 equal: ParamEqual) -> str:
    y = _ruamel()
    doc = y.load(textwrap.dedent(snippet))
    _sync_node(doc[node_id], old, new, wf, equal)
    return _indent(_dump(y, doc), indent)


def _canonical_node(wf: Workflow, node_id: str, indent: int) -> str:
    one = Workflow(nodes={node_id: wf.nodes[node_id]}, path=wf.path)
    text = dump_workflow(one)
    body = text.split("\nnodes:\n", 1)[1]
    return _indent(textwrap.dedent(body), indent)


def _edited_top(header: str, footer: str, old: Workflow, new: Workflow) -> tuple[str, str]:
    """The lines before and after the nodes, with the description and the top-level layout updated."""
    if (old.meta.get("description") or "") == (new.meta.get("description") or "") and same(old.layout, new.layout):
        return header, footer
    y = _ruamel()
    doc = y.load(header + footer)
    if (old.meta.get("description") or "") != (new.meta.get("description") or ""):
        if new.meta.get("description"):
            doc["description"] = new.meta["description"]
        else:
            doc.pop("description", None)
    if not same(old.layout, new.layout):
        if new.layout is None:
            doc.pop("layout", None)
        else:
            doc["layout"] = _styled(_plain(new.layout), top=True)
    text = _dump(y, doc)
    lines = text.splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.rstrip() in ("nodes:", "nodes: null", "nodes: {}"))
    return "".join(lines[:at]) + "nodes:\n", "".join(lines[at + 1:])


def updated_text(original: str, old: Workflow, new: Workflow, equal: ParamEqual = strict) -> str:
    """`original` (the text `old` was read from) edited to say `new`; unchanged nodes keep their text."""
    if same_workflow(old, new, equal):
        return original
    layout = _Layout(original)
    lines = layout.lines
    first = min((s for s, _ in layout.spans.values()), default=layout.nodes_end)
    header = "".join(lines[:layout.nodes_line]) + "nodes:\n"
    between = "".join(lines[layout.nodes_line + 1:first])  # comments between `nodes:` and the first node
    footer = "".join(lines[layout.nodes_end:])
    header, footer = _edited_top(header, footer, old, new)
    body: list[str] = []
    for node_id in old.nodes:
        if node_id not in new.nodes or node_id not in layout.spans:
            continue
        start, end = layout.spans[node_id]
        snippet = "".join(lines[start:end])
        if same_node(old.nodes[node_id], new.nodes[node_id], equal):
            body.append(snippet)
        else:
            body.append(_edited_node(snippet, layout.indent, node_id, old.nodes[node_id], new.nodes[node_id], new, equal))
    for node_id in new.nodes:
        if node_id not in old.nodes or node_id not in layout.spans:
            body.append(_canonical_node(new, node_id, layout.indent))
    if body and not body[-1].endswith("\n"):
        body[-1] += "\n"
    return header + between + "".join(body) + footer


def save_text(new: Workflow, original: str | None, equal: ParamEqual = strict) -> str:
    """The text to write for `new`: `original` edited in place when it can express the change
    (and reads back as `new`), else the canonical dump."""
    if original is not None:
        try:
            old = parse_workflow(original, new.path)
            text = updated_text(original, old, new, equal)
            if same_workflow(parse_workflow(text, new.path), new, equal):
                return text
        except Exception:  # WorkflowError, or a text this editing cannot handle: write the canonical form
            pass
    return dump_workflow(new)
