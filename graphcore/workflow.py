"""The in-memory form of a workflow file (YAML format v1, see docs/workflow-format.md).

    version: 1
    nodes:
      audio:
        type: LoadAudio
        params: {path: assets/sample.wav}
      feats:
        type: AudioFeatures
        params: {variant: mfcc_pitch}
        inputs: {audio: audio.audio}       # other_id.port, or a literal value

Source lines are kept on every piece so that problems can name them. Layout (editor
positions) is carried along but never enters cache keys.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # node.py imports types.py, which needs nothing from here; avoid the cycle anyway
    from .node import Node

FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class Edge:
    """An input fed by another node's output: `node.port`."""

    node: str
    port: str

    def __str__(self) -> str:
        return f"{self.node}.{self.port}"


@dataclasses.dataclass(frozen=True)
class Literal:
    """An input given directly in the file (a number, a string, a list)."""

    value: Any


@dataclasses.dataclass
class NodeSpec:
    id: str
    type: str
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    inputs: dict[str, Edge | Literal] = dataclasses.field(default_factory=dict)
    # Source positions (1-based lines) for messages; None when built in code. They are not
    # part of a workflow's meaning, so they do not take part in equality.
    line: int | None = dataclasses.field(default=None, compare=False)
    param_lines: dict[str, int] = dataclasses.field(default_factory=dict, compare=False)
    input_lines: dict[str, int] = dataclasses.field(default_factory=dict, compare=False)
    # Editor layout: {"x": .., "y": ..} and anything else the editor keeps; not part of keys.
    layout: dict[str, Any] | None = None


@dataclasses.dataclass
class Workflow:
    nodes: dict[str, NodeSpec]
    version: int = FORMAT_VERSION
    path: Path | None = None  # the file it was read from; relative file paths resolve against its folder
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)  # free-form `description:` etc.
    # Editor layout of the whole graph (e.g. {"groups": [{"title", "bounding", "color"}]}); never in a key.
    layout: dict[str, Any] | None = None

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path is not None else Path.cwd()


@dataclasses.dataclass
class Problem:
    """One thing wrong with a workflow, located as precisely as we can."""

    message: str
    node_id: str | None = None
    line: int | None = None
    column: int | None = None
    path: str | None = None  # the workflow file
    kind: str = "invalid"  # yaml | unknown-type | unknown-port | unknown-param | missing-input | type-mismatch | cycle | param | file | ...

    def __str__(self) -> str:
        where = self.path or "<workflow>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        who = f" node '{self.node_id}':" if self.node_id else ""
        return f"{where}:{who} {self.message}"


class WorkflowError(Exception):
    """Raised with every problem found, so that all of them are reported at once."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclasses.dataclass
class BoundNode:
    """A node spec resolved against the registry: class found, parameters validated,
    literal inputs converted by their port types. Produced by `validation.compile_workflow`."""

    spec: NodeSpec
    cls: type[Node]
    params: Any  # an instance of cls.Params
    inputs: dict[str, Edge | Literal]

    @property
    def id(self) -> str:
        return self.spec.id


@dataclasses.dataclass
class BoundGraph:
    """A validated workflow, ready to schedule: nodes by id and `order`, a topological order."""

    workflow: Workflow
    nodes: dict[str, BoundNode]
    order: list[str]

    def upstream(self, node_id: str) -> list[str]:
        return sorted({e.node for e in self.nodes[node_id].inputs.values() if isinstance(e, Edge)})

    def downstream(self, node_id: str) -> list[str]:
        return [n for n in self.order if node_id in self.upstream(n)]
