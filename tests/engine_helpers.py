"""Shared helpers for the engine tests (scheduler, CLI, plugins, dask, crash)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from graphcore.events import Event
from graphcore.loader import load_workflow
from graphcore.node import RunContext
from graphcore.registry import NodeRegistry, build_registry
from graphcore.validation import compile_workflow
from graphcore.workflow import BoundGraph

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
TEST_NODES = TESTS / "engine_nodes.py"  # loaded as a plugin file, so dask workers can find it too


def engine_registry() -> NodeRegistry:
    """Built-ins plus the test nodes, loaded the way a `--plugins` file is."""
    registry = build_registry([TEST_NODES], entry_points=False, env=False)
    assert not registry.errors, registry.errors
    return registry


def write_workflow(folder: Path, text: str, name: str = "wf.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def compile_file(path: Path, registry: NodeRegistry | None = None) -> BoundGraph:
    return compile_workflow(load_workflow(path), registry or engine_registry())


class Recorder:
    """An event listener that keeps every event."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def nodes(self, kind: str) -> set[str]:
        return {e.node_id for e in self.events if e.kind == kind}

    def count(self, kind: str, node_id: str) -> int:
        return sum(1 for e in self.events if e.kind == kind and e.node_id == node_id)


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GRAPHRUN_PLUGINS", "GRAPHRUN_CACHE")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    env["COLUMNS"] = "200"
    env.update(extra)
    return env


def graphrun(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120,
             ) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh interpreter, as a user would."""
    return subprocess.run([sys.executable, "-m", "graphcore.cli", *map(str, args)], cwd=cwd, env=env or subprocess_env(),
                          capture_output=True, text=True, timeout=timeout, check=False)


def ctx_for(tmp_path: Path, node: str = "n", logs: list | None = None) -> RunContext:
    """A RunContext for calling a node's run() directly; events go to `logs` when given."""
    logs = logs if logs is not None else []
    return RunContext(node_id=node, node_type=node, key="k" * 64, tmp_dir=tmp_path, workflow_dir=tmp_path,
                      emit=lambda kind, data: logs.append((kind, data)))
