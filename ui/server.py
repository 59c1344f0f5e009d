"""The editor's server-side operations, independent of Gradio: open, parse, save, validate
and run workflows, uploads, the cache panel and output previews.

Everything the browser names goes through the allowed-roots rule of `UIConfig`; the node
registry (and with it the plugins) is built once from the server's own configuration.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import TypeAdapter

from graphcore.loader import dump_workflow, load_workflow, parse_workflow
from graphcore.registry import NodeRegistry, build_registry
from graphcore.types import TYPES
from graphcore.validation import compile_workflow, validate
from graphcore.workflow import Problem, Workflow, WorkflowError

from .config import PathNotAllowed, UIConfig, safe_filename, unique_path
from .graphjson import GraphError, editor_schema, graph_to_workflow, rebase_paths, workflow_to_graph
from .preview import Preview, preview_value
from .runs import Run, RunQueue
from .thumbnails import rank, read_output, thumbnail
from .yamledit import same, save_text

UNTITLED = "untitled.yaml"


def problem_json(p: Problem) -> dict[str, Any]:
    return {"node_id": p.node_id, "message": p.message, "line": p.line, "kind": p.kind, "text": str(p)}


class EditorServer:
    def __init__(self, config: UIConfig, registry: NodeRegistry | None = None) -> None:
        self.config = config
        # Plugins come from --plugins and $GRAPHRUN_PLUGINS only: nothing from the browser reaches this.
        self.registry = registry if registry is not None else build_registry(config.plugin_paths)
        self._schema: dict[str, Any] | None = None
        self._cache: Any = None
        self.queue = RunQueue()

    # --- schema ---

    def schema(self) -> dict[str, Any]:
        if self._schema is None:
            self._schema = editor_schema(self.registry)
        return self._schema

    # --- reading workflows ---

    def open_workflow(self, path: str, session_dir: Path | None = None) -> tuple[dict[str, Any], list[Problem]]:
        """A workflow file under the workflow folders (or the caller's uploads) as graph JSON, with
        every problem it has, so they show on the nodes at once (a file that is no workflow at all
        raises WorkflowError)."""
        resolved = self.config.check_workflow_path(path, session_dir)
        problems: list[Problem] = []
        wf = load_workflow(resolved, problems=problems)
        return self._opened(wf, resolved, problems, session_dir)

    def parse_upload(self, text: str, filename: str, session_dir: Path) -> tuple[dict[str, Any], list[Problem]]:
        """An uploaded YAML: kept (sanitised name) in the session folder, which becomes its
        folder for relative paths, and parsed like any workflow file."""
        name = safe_filename(filename, "workflow")
        if not name.lower().endswith((".yaml", ".yml")):
            name += ".yaml"
        target = self._store(session_dir, name, text.encode("utf-8"))
        problems: list[Problem] = []
        wf = parse_workflow(text, target, problems=problems)
        return self._opened(wf, target, problems, session_dir)

    def _opened(self, wf: Workflow, path: Path, problems: list[Problem],
                session_dir: Path | None) -> tuple[dict[str, Any], list[Problem]]:
        problems = problems + self.validate(wf, session_dir)
        return workflow_to_graph(wf, self.registry, self.config.display(path)), problems

    def validate(self, wf: Workflow, session_dir: Path | None) -> list[Problem]:
        """The engine's validation, with every path a node reads or writes kept inside the
        caller's roots (path parameters, set or default, and Path literals)."""
        return validate(wf, self.registry, roots=self.config.roots(session_dir))

    # --- graph JSON -> workflow ---

    def workflow_from_graph(self, graph: Any, session_dir: Path) -> tuple[Workflow, list[Problem]]:
        path_text = graph.get("path") if isinstance(graph, dict) else None
        # Untitled: relative paths mean what they will mean once saved among the workflows.
        path = self.config.check_workflow_path(path_text, session_dir) if path_text else self.config.untitled_dir / UNTITLED
        return graph_to_workflow(graph, self.registry, path)

    def to_yaml(self, graph: Any, session_dir: Path) -> str:
        wf, problems = self.workflow_from_graph(graph, session_dir)
        if problems:
            raise WorkflowError(problems)
        return dump_workflow(wf)

    def save(self, graph: Any, target: str, session_dir: Path) -> tuple[Path, str, list[str]]:
        """Write the editor's workflow to `target` (a .yaml under the workflow folders or the
        uploads). Relative file paths are rewritten to name the same files from the new folder.
        The file's own text is edited where the workflow changed and kept elsewhere (ui/yamledit.py),
        so saving what was opened, unchanged, changes nothing. Returns the file, its text and the
        rewritten parameters."""
        wf, problems = self.workflow_from_graph(graph, session_dir)
        if problems:
            raise WorkflowError(problems)
        source = wf.path
        dest = self.config.check_workflow_path(target, session_dir)
        moved = rebase_paths(wf, self.registry, dest.parent)
        wf.path = dest
        base = dest if dest.is_file() else source if source is not None and source.is_file() else None
        text = save_text(wf, base.read_text(encoding="utf-8") if base is not None else None, self.param_equal)
        if dest.is_file() and dest.read_text(encoding="utf-8") == text:
            return dest, text, moved  # nothing to write: the file says this already
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, dest)
        return dest, text, moved

    def param_equal(self, node_type: str, name: str, a: Any, b: Any) -> bool:
        """Whether two values of a parameter are one value once the node's declared type reads
        them (a float parameter's `2` and `2.0`); for untyped parameters only identical values are."""
        if same(a, b):
            return True
        if node_type not in self.registry:
            return False
        field = self.registry.get(node_type).Params.model_fields.get(name)
        if field is None or field.annotation in (Any, None):
            return False
        try:
            adapter = TypeAdapter(field.annotation)
            return adapter.dump_python(adapter.validate_python(a), mode="json") == adapter.dump_python(
                adapter.validate_python(b), mode="json")
        except Exception:  # a value the type refuses: a real difference (validation reports it)
            return False

    # --- checking ---

    def check(self, graph: Any, session_dir: Path) -> tuple[Workflow | None, list[Problem]]:
        """Every problem: malformed parameter text, the engine's validation, and files outside the allowed roots."""
        try:
            wf, problems = self.workflow_from_graph(graph, session_dir)
        except (GraphError, PathNotAllowed) as exc:
            return None, [Problem(str(exc), kind="editor")]
        problems += self.validate(wf, session_dir)
        return wf, problems

    # --- running ---

    def start_run(self, graph: Any, session_dir: Path) -> tuple[Run | None, list[Problem]]:
        """Check the graph and queue a run of it (RunQueue: one run at a time, in order)."""
        wf, problems = self.check(graph, session_dir)
        if problems or wf is None:
            return None, problems
        try:
            bound = compile_workflow(wf, self.registry)
        except WorkflowError as exc:
            return None, exc.problems
        label = graph.get("path") or "untitled" if isinstance(graph, dict) else "untitled"
        run = Run(bound, cache=self.cache(), plugin_paths=self.config.plugin_paths, start=False,
                  label=label, owner=session_dir.name)
        return self.queue.submit(run), []

    def cancel_runs(self, session_dir: Path, *, waiting_only: bool = False) -> list[Run]:
        """Cancel this session's running run (unless `waiting_only`) and its waiting runs."""
        return self.queue.cancel(session_dir.name, waiting_only=waiting_only)

    def thumbnail(self, run: Run, node_id: str, session_dir: Path) -> dict[str, Any] | None:
        """The picture, curves or numbers drawn on a node after it ran (ui/thumbnails.py): its
        most telling stored output, read from the cache."""
        key = run.keys.get(node_id)
        bound = run.graph.nodes.get(node_id)
        if key is None or bound is None:
            return None
        from graphcore.plan import is_in_process

        if is_in_process(bound.cls):
            return None
        ports = sorted((p for p, spec in bound.cls.outputs.items() if spec.port_type.persistent),
                       key=lambda p: rank(TYPES.ancestors(bound.cls.outputs[p].port_type.name)))
        path_ok = lambda p: self.config.is_allowed(p, session_dir=session_dir)  # noqa: E731
        for port in ports[:3]:
            port_type = bound.cls.outputs[port].port_type
            try:
                value, total = read_output(self.cache(), key, port, port_type)
                thumb = thumbnail(value, TYPES.ancestors(port_type.name), path_ok, total)
            except Exception:  # e.g. the cache was cleared meanwhile: no picture rather than an error
                continue
            if thumb is not None:
                return {**thumb, "port": port}
        return None

    # --- cache panel ---

    def cache(self) -> Any:
        if self._cache is None:
            from graphcore.cache import CacheStore

            self._cache = CacheStore(self.config.cache_url)
        return self._cache

    def cache_info(self) -> dict[str, Any]:
        entries = self.cache().ls()
        return {
            "url": self.cache().url,
            "entries": len(entries),
            "bytes": int(sum(e.size_bytes for e in entries)),
            "seconds": float(sum(e.seconds for e in entries)),
        }

    def clear_cache(self) -> int:
        return self.cache().clear()

    # --- uploads ---

    def save_upload(self, session_dir: Path, filename: str, stream: BinaryIO) -> Path:
        """Store an uploaded file in the session folder under a sanitised name; an identical
        earlier upload of the same name is reused, so re-uploading keeps parameters (and keys) stable."""
        name = safe_filename(filename)
        tmp = unique_path(session_dir, f".incoming-{os.getpid()}-{name}")
        size = 0
        digest = hashlib.sha256()
        try:
            with open(tmp, "wb") as out:
                while chunk := stream.read(1 << 20):
                    size += len(chunk)
                    if size > self.config.max_upload_bytes:
                        raise ValueError(f"upload larger than {self.config.max_upload_bytes} bytes")
                    digest.update(chunk)
                    out.write(chunk)
            existing = session_dir / name
            if existing.is_file() and _sha256(existing) == digest.hexdigest():
                return existing
            dest = unique_path(session_dir, name)
            os.replace(tmp, dest)
            return dest
        finally:
            tmp.unlink(missing_ok=True)

    def _store(self, session_dir: Path, name: str, data: bytes) -> Path:
        existing = session_dir / name
        if existing.is_file() and existing.read_bytes() == data:
            return existing
        dest = unique_path(session_dir, name)
        dest.write_bytes(data)
        return dest

    # --- outputs ---

    def preview(self, run: Run, output: str, session_dir: Path) -> Preview:
        node_id, _, port = output.partition(".")
        if run.report is None or node_id not in run.graph.nodes:
            raise KeyError(f"no output {output!r} in the last run")
        value = run.report.open_output(node_id, port)  # a streamed sequence: only the frames shown are read
        port_type = run.graph.nodes[node_id].cls.outputs[port].port_type
        return preview_value(value, TYPES.ancestors(port_type.name),
                             lambda p: self.config.is_allowed(p, session_dir=session_dir))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

