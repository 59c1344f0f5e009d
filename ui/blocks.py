"""The Gradio page: a toolbar, the node editor (a gr.HTML hosting litegraph) and side tabs
for the run, the outputs, the YAML and the cache.

Talking to the editor:
- page -> server: buttons that need the graph run a small JS function first that puts the
  editor's graph JSON (`TalkGraph.serializeJSON()`) into a hidden textbox, which is the
  handler's input; a click on a node fires the editor's custom `nodeselect` event.
- server -> page: handlers write a command into the editor component's value
  (`{"seq", "graph"?, "status"?, "problems"?, "path"?}`); the editor watches its value and
  applies it. A run streams: its handler is a generator yielding a status snapshot a few times
  a second, and Gradio pushes each one to the browser as it is produced.
"""
from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from graphcore.workflow import Problem, WorkflowError

from .config import SESSION_COOKIE, PathNotAllowed, valid_session_id
from .graphjson import GraphError
from .preview import Preview, curve_table
from .runs import Run
from .server import EditorServer, problem_json

STATIC = Path(__file__).parent / "static"
STATIC_FILES = ("widgets.js", "palette.js", "history.js", "layout.js", "editor.js")
POLL_SECONDS = 0.25
STATUS_HEADERS = ["node", "type", "state", "detail"]

EDITOR_HTML = """
<div class="tg-editor">
  <aside class="tg-palette">
    <input class="tg-search" type="search" placeholder="Search nodes…" aria-label="Search nodes">
    <div class="tg-palette-list"></div>
    <div class="tg-legend"></div>
  </aside>
  <div class="tg-canvas-wrap">
    <canvas class="tg-canvas" tabindex="0"></canvas>
    <div class="tg-path"></div>
    <div class="tg-tools" role="toolbar" aria-label="Canvas">
      <button type="button" data-action="undo" title="Undo (Ctrl+Z)">↶</button>
      <button type="button" data-action="redo" title="Redo (Ctrl+Shift+Z)">↷</button>
      <button type="button" data-action="layout" title="Arrange the nodes in layers">Arrange</button>
      <button type="button" data-action="group" title="Group the selected nodes">Group</button>
      <button type="button" data-action="fit" title="Show the whole graph">Fit</button>
    </div>
    <div class="tg-hint"></div>
    <div class="tg-toast" role="status"></div>
  </div>
</div>
"""

# The quoted 'nodeselect' declares the custom event to Gradio (see gr.HTML.__getattr__).
EDITOR_JS = "window.TalkGraph.mount(element, {props, watch, select: (id) => trigger('nodeselect', {node_id: id})});"
GRAPH_JS = "(graph, ...rest) => [window.TalkGraph.serializeJSON(), ...rest]"
SAVE_JS = "(graph, ...rest) => [window.TalkGraph.serializeForSave(), ...rest]"
# Opening something else asks first when the canvas has unsaved changes; the handler gets the answer.
DISCARD_JS = "(...args) => [...args.slice(0, -1), window.TalkGraph.confirmDiscard() ? 'yes' : 'no']"
LAST_JS = "() => [window.localStorage.getItem('talkgraph.last') || '']"

CONFIRMED = "confirmed"
CLEAR_JS = ("(x) => window.confirm('Delete every entry of the cache? Everything will be computed again.') ? "
            f"'{CONFIRMED}' : ''")

_seq = itertools.count(1)


def command(**parts: Any) -> dict[str, Any]:
    """A value for the editor component; `seq` makes every command a change."""
    return {"seq": next(_seq), **parts}


def static_version() -> str:
    """Changes when the editor's JS changes, so browsers never run a stale copy."""
    return str(int(max((STATIC / f).stat().st_mtime for f in (*STATIC_FILES, "editor.css"))))


def head_html() -> str:
    v = static_version()
    tags = ['<link rel="stylesheet" href="talkgraph/lib/css/litegraph.css">',
            f'<link rel="stylesheet" href="talkgraph/static/editor.css?v={v}">',
            '<script src="talkgraph/lib/build/litegraph.core.js"></script>']
    tags += [f'<script src="talkgraph/static/{f}?v={v}"></script>' for f in STATIC_FILES]
    return "\n".join(tags)


def session_dir(server: EditorServer, request: gr.Request | None) -> Path:
    """The caller's upload folder, named by the session cookie the app sets on every browser."""
    sid = None
    if request is not None:
        cookies = getattr(request, "cookies", None)
        sid = cookies.get(SESSION_COOKIE) if cookies is not None else None
        if not valid_session_id(sid) and request.session_hash:
            sid = hashlib.sha256(request.session_hash.encode()).hexdigest()[:32]
    if not valid_session_id(sid):
        raise gr.Error("no session: reload the page")
    return server.config.session_dir(sid)


def problems_markdown(problems: list[Problem]) -> str:
    if not problems:
        return ""
    lines = [f"**{len(problems)} problem{'s' if len(problems) != 1 else ''}:**"]
    lines += [f"- {'`' + p.node_id + '`: ' if p.node_id else ''}{p.message}" + (f" (line {p.line})" if p.line else "")
              for p in problems]
    return "\n".join(lines)


def parse_graph(text: str) -> Any:
    try:
        return json.loads(text or "")
    except json.JSONDecodeError:
        raise gr.Error("the editor sent no graph") from None


def start_workflow(server: EditorServer, initial: str | None, last: str | None) -> str | None:
    """What the page opens with: the workflow named on the command line, else the one this
    browser had open last, else workflows/hdtf.yaml; None (an empty canvas) if none exists."""
    files = server.config.workflow_files()
    for candidate in (initial, last, "workflows/hdtf.yaml"):
        if candidate and candidate in files:
            return candidate
    return None


def build_blocks(server: EditorServer, initial: str | None = None) -> gr.Blocks:
    files = server.config.workflow_files()
    with gr.Blocks(title="talkgraph editor", fill_width=True) as demo:
        run_state = gr.State(None)
        # One compact row: the canvas gets the height (a 1280x720 screen shows the whole editor).
        with gr.Row(elem_id="tg-toolbar", equal_height=True):
            wf_choice = gr.Dropdown(files, value=initial if initial in files else None, label="Workflow",
                                    show_label=False, container=False, scale=3, min_width=200, elem_id="tg-workflow")
            open_btn = gr.Button("Open", size="sm", scale=0, min_width=60, elem_id="tg-open")
            upload_btn = gr.UploadButton("Upload YAML", file_types=[".yaml", ".yml"], size="sm", scale=0, min_width=104,
                                         elem_id="tg-upload-yaml")
            new_btn = gr.Button("New", size="sm", scale=0, min_width=52, elem_id="tg-new")
            save_as = gr.Textbox(label="Save as", show_label=False, container=False, placeholder="Save as workflows/….yaml",
                                 scale=2, min_width=170, elem_id="tg-save-as")
            save_btn = gr.Button("Save", size="sm", scale=0, min_width=60, elem_id="tg-save")
            download_btn = gr.DownloadButton("Download", size="sm", scale=0, min_width=90, interactive=False,
                                             elem_id="tg-download")
            check_btn = gr.Button("Check", size="sm", scale=0, min_width=60, elem_id="tg-check")
            run_btn = gr.Button("Run", variant="primary", size="sm", scale=0, min_width=60, elem_id="tg-run")
            cancel_btn = gr.Button("Cancel", variant="stop", size="sm", scale=0, min_width=68, elem_id="tg-cancel")
        with gr.Row(equal_height=False):
            with gr.Column(scale=5, min_width=560):
                editor = gr.HTML(command(), html_template=EDITOR_HTML, js_on_load=EDITOR_JS, head=head_html(),
                                 elem_id="tg-editor", padding=False, apply_default_css=False)
                graph_box = gr.Textbox(visible="hidden", elem_id="tg-graph")
                proceed_box = gr.Textbox(visible="hidden", elem_id="tg-proceed")
                last_box = gr.Textbox(visible="hidden", elem_id="tg-last")
                message = gr.Markdown(elem_id="tg-message")
            with gr.Column(scale=2, min_width=320):
                with gr.Tabs(elem_id="tg-tabs") as tabs:
                    with gr.Tab("Run", id="run"):
                        run_summary = gr.Markdown(elem_id="tg-run-summary")
                        queue_md = gr.Markdown(elem_id="tg-queue")
                        clear_queue_btn = gr.Button("Drop waiting runs", size="sm", elem_id="tg-clear-queue")
                        status_table = gr.Dataframe(headers=STATUS_HEADERS, interactive=False, elem_id="tg-status",
                                                    wrap=True, max_height=360)
                        run_log = gr.Textbox(label="Log", lines=6, max_lines=14, interactive=False, elem_id="tg-log")
                    with gr.Tab("Outputs", id="outputs"):
                        output_choice = gr.Dropdown([], label="Output (node.port)", elem_id="tg-output")
                        out_summary = gr.Markdown(elem_id="tg-out-summary")
                        out_video = gr.Video(visible=False, elem_id="tg-out-video", interactive=False)
                        out_gallery = gr.Gallery(visible=False, columns=4, height=300, elem_id="tg-out-gallery",
                                                 interactive=False)
                        out_plot = gr.LinePlot(x="x", y="value", color="series", visible=False, height=280,
                                               elem_id="tg-out-plot")
                        out_bars = gr.BarPlot(x="name", y="value", visible=False, height=260, elem_id="tg-out-bars")
                        out_audio = gr.Audio(visible=False, interactive=False, elem_id="tg-out-audio")
                        out_json = gr.JSON(visible=False, elem_id="tg-out-json")
                    with gr.Tab("YAML", id="yaml"):
                        yaml_view = gr.Code(language="yaml", interactive=False, lines=20, elem_id="tg-yaml")
                    with gr.Tab("Cache", id="cache"):
                        cache_md = gr.Markdown(elem_id="tg-cache-info")
                        with gr.Row():
                            refresh_btn = gr.Button("Refresh", elem_id="tg-cache-refresh")
                            clear_btn = gr.Button("Clear cache", variant="stop", elem_id="tg-cache-clear")
                        confirm_box = gr.Textbox(visible="hidden", elem_id="tg-confirm")

        out_components = [out_summary, out_video, out_gallery, out_plot, out_bars, out_audio, out_json]

        # --- cache ---

        def cache_text() -> str:
            try:
                info = server.cache_info()
            except Exception as exc:  # an unreachable remote cache must not break the page
                return f"cache unavailable: {exc}"
            return (f"**{info['entries']}** entries, **{info['bytes'] / 1e6:.2f} MB** "
                    f"({info['seconds']:.1f} s of compute) in `{info['url']}`")

        def clear_cache(confirmed: str) -> tuple[str, str]:
            # The page asks first (CLEAR_JS); a call without that answer clears nothing.
            if confirmed != CONFIRMED:
                return cache_text(), "The cache was not cleared."
            removed = server.clear_cache()
            return cache_text(), f"Cleared the cache ({removed} entries)."

        # --- opening ---

        def loaded(graph: dict[str, Any], problems: list[Problem], path: str | None) -> tuple:
            note = problems_markdown(problems)
            if not note and path:
                note = f"Opened `{path}`."
            return (command(graph=graph, problems=[problem_json(p) for p in problems], status={}, previews={}),
                    path or "", note, [], "", "")

        open_outputs = [editor, save_as, message, status_table, run_log, run_summary]
        declined = tuple(gr.skip() for _ in open_outputs)

        def open_workflow(path: str | None, proceed: str, request: gr.Request) -> tuple:
            if proceed == "no":
                return declined
            if not path:
                raise gr.Error("choose a workflow first")
            try:
                graph, problems = server.open_workflow(path, session_dir(server, request))
            except (PathNotAllowed, WorkflowError) as exc:
                raise gr.Error(str(exc)) from None
            return loaded(graph, problems, graph["path"])

        def upload_yaml(file: Any, proceed: str, request: gr.Request) -> tuple:
            if proceed == "no":
                return declined
            path = Path(file if isinstance(file, str) else file.name)
            if not server.config.is_allowed(path, roots=[server.config.gradio_dir.resolve()]):
                raise gr.Error("that file was not uploaded through this page")  # a FileData naming any server file
            try:
                text = path.read_text(encoding="utf-8")
                graph, problems = server.parse_upload(text, path.name, session_dir(server, request))
            except UnicodeDecodeError:
                raise gr.Error("the uploaded file is not UTF-8 text") from None
            except WorkflowError as exc:
                raise gr.Error(str(exc)) from None
            result = loaded(graph, problems, graph["path"])
            return (result[0], f"workflows/{Path(graph['path']).name}", *result[2:])  # save among the workflows

        def new_workflow(proceed: str) -> tuple:
            if proceed == "no":
                return declined
            return loaded({"path": None, "description": "", "nodes": []}, [], None)

        open_btn.click(open_workflow, [wf_choice, proceed_box], open_outputs, js=DISCARD_JS)
        upload_btn.upload(upload_yaml, [upload_btn, proceed_box], open_outputs, js=DISCARD_JS)
        new_btn.click(new_workflow, [proceed_box], open_outputs, js=DISCARD_JS)

        # --- saving and checking ---

        def save(graph_text: str, target: str, request: gr.Request) -> tuple:
            graph = parse_graph(graph_text)
            sdir = session_dir(server, request)
            target = (target or "").strip() or (graph.get("path") or "")
            if not target:
                raise gr.Error("give a file name under workflows/ in “Save as”")
            try:
                dest, text, moved = server.save(graph, target, sdir)
            except (PathNotAllowed, GraphError) as exc:
                raise gr.Error(str(exc)) from None
            except WorkflowError as exc:
                return (command(problems=[problem_json(p) for p in exc.problems]), gr.skip(), gr.skip(),
                        problems_markdown(exc.problems), gr.skip())
            shown = server.config.display(dest)
            note = f"Saved `{shown}`." + (f" Relative paths rewritten for the new folder: {', '.join(moved)}." if moved else "")
            if moved:  # show the rewritten paths
                cmd = command(graph=server.open_workflow(str(dest), sdir)[0], problems=[], saved=True)
            else:
                cmd = command(path=shown, problems=[], saved=True)
            choices = server.config.workflow_files()
            return (cmd, gr.update(value=str(dest), interactive=True), text, note,
                    gr.update(choices=choices, value=shown if shown in choices else None))

        def check(graph_text: str, request: gr.Request) -> tuple:
            graph = parse_graph(graph_text)
            wf, problems = server.check(graph, session_dir(server, request))
            yaml_text = gr.skip()
            if not problems:
                yaml_text = server.to_yaml(graph, session_dir(server, request))
            note = problems_markdown(problems) or "No problems: the workflow is ready to run."
            return command(problems=[problem_json(p) for p in problems]), note, yaml_text

        save_btn.click(save, [graph_box, save_as], [editor, download_btn, yaml_view, message, wf_choice], js=SAVE_JS)
        check_btn.click(check, [graph_box], [editor, message, yaml_view], js=GRAPH_JS)

        # --- running: a queue, one run at a time; Cancel stops this page's run ---

        run_outputs = [editor, message, run_summary, status_table, run_log, run_state, output_choice, cache_md,
                       queue_md, tabs]

        def run(graph_text: str, request: gr.Request) -> Iterator[tuple]:
            graph = parse_graph(graph_text)
            sdir = session_dir(server, request)
            started, problems = server.start_run(graph, sdir)
            if started is None:
                note = problems_markdown(problems)
                yield (command(problems=[problem_json(p) for p in problems]), note, "Not started.",
                       gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.Tabs(selected="run"))
                return
            # The Run tab is shown now, with the first answer, never later: a tab switched after
            # the run would land under whatever the user clicked meanwhile.
            skips = (gr.skip(),) * 6
            yield (gr.skip(), f"Run {started.id} queued.", gr.skip(), *skips[:5], server.queue.describe(),
                   gr.Tabs(selected="run"))
            while started.waiting:
                ahead = server.queue.ahead_of(started)
                yield (gr.skip(), f"Run {started.id} waits for {ahead} run{'s' if ahead != 1 else ''} ahead of it.",
                       gr.skip(), *skips[:5], server.queue.describe(), gr.skip())
                started.wait_started(POLL_SECONDS * 2)
            if not started.was_started:  # cancelled before its turn: the canvas stays with the run it shows
                yield (gr.skip(), f"Run {started.id} was cancelled before it started.", gr.skip(), *skips[:5],
                       server.queue.describe(), gr.skip())
                return
            yield from stream_run(started, sdir)

        def stream_run(active: Run, sdir: Path) -> Iterator[tuple]:
            seen = -1
            shown: set[str] = set()
            first = True
            while True:
                finished = active.wait(POLL_SECONDS)
                if active.version != seen or finished:
                    seen = active.version
                    snap = active.snapshot()
                    previews = {}
                    for node_id, st in snap["nodes"].items():
                        if st.get("state") in ("done", "cached") and node_id not in shown:
                            shown.add(node_id)
                            thumb = server.thumbnail(active, node_id, sdir)
                            if thumb is not None:
                                previews[node_id] = thumb
                    summary = run_summary_text(snap)
                    # The first status of a run replaces every badge and preview of the last one.
                    cmd = command(status=snap, problems=[], previews=previews, reset=first)
                    first = False
                    if finished:
                        outputs = active.outputs()
                        yield (cmd, summary, summary, active.table(), active.log_text(), active,
                               gr.update(choices=outputs, value=None), cache_text(), server.queue.describe(), gr.skip())
                        return
                    yield (cmd, "", summary, active.table(), active.log_text(), gr.skip(), gr.skip(), gr.skip(),
                           server.queue.describe(), gr.skip())

        def cancel(request: gr.Request) -> tuple[str, str]:
            runs = server.cancel_runs(session_dir(server, request))
            note = (f"Cancelling run {', '.join(str(r.id) for r in runs)}: the running node stops at its next "
                    "progress point; what finished stays cached.") if runs else "Nothing to cancel."
            return note, server.queue.describe()

        def drop_waiting(request: gr.Request) -> tuple[str, str]:
            runs = server.cancel_runs(session_dir(server, request), waiting_only=True)
            return (f"Dropped {len(runs)} waiting run{'s' if len(runs) != 1 else ''}.", server.queue.describe())

        # trigger_mode="multiple": a Run while one runs is queued, never ignored; no concurrency
        # limit, so that each queued run's stream (and Cancel) answers at once.
        run_btn.click(run, [graph_box], run_outputs, js=GRAPH_JS, trigger_mode="multiple", concurrency_limit=None)
        cancel_btn.click(cancel, None, [message, queue_md], concurrency_limit=None)
        clear_queue_btn.click(drop_waiting, None, [message, queue_md], concurrency_limit=None)

        # --- outputs ---

        def show_output(active: Run | None, output: str | None, request: gr.Request) -> list[Any]:
            hidden = [gr.update(visible=False) for _ in out_components[1:]]
            if active is None or not output:
                return ["", *hidden]
            try:
                p = server.preview(active, output, session_dir(server, request))
            except Exception as exc:  # e.g. the cache was cleared since the run
                return [f"cannot show `{output}`: {exc}", *hidden]
            return [f"`{output}`: {p.summary}", *preview_updates(p)]

        def select_node(active: Run | None, evt: gr.EventData) -> Any:
            node_id = getattr(evt, "_data", {}).get("node_id")
            if active is None or not node_id:
                return gr.skip()
            mine = [o for o in active.outputs() if o.split(".", 1)[0] == node_id]
            return gr.update(value=mine[0]) if mine else gr.skip()

        output_choice.change(show_output, [run_state, output_choice], out_components)
        editor.nodeselect(select_node, [run_state], [output_choice])

        # --- page load: the start state ---

        def on_load(last: str, request: gr.Request) -> tuple:
            graph_cmd: Any = gr.skip()
            note = ""
            start = start_workflow(server, initial, last)
            if start:
                try:
                    graph, problems = server.open_workflow(start, session_dir(server, request))
                    graph_cmd = command(graph=graph, problems=[problem_json(p) for p in problems])
                    note = problems_markdown(problems) or f"Opened `{start}`."
                except (PathNotAllowed, WorkflowError) as exc:
                    note = f"cannot open {start}: {exc}"
            errors = "\n".join(f"- plugin {e.plugin}: {e.message}" for e in server.registry.errors)
            if errors:
                note = (note + "\n\n" if note else "") + "**Plugins that failed to load:**\n" + errors
            files = server.config.workflow_files()  # files may have appeared since the server started
            return (cache_text(), graph_cmd, note, start or "", gr.update(choices=files, value=start if start in files else None),
                    server.queue.describe())

        demo.load(on_load, [last_box], [cache_md, editor, message, save_as, wf_choice, queue_md], js=LAST_JS)
        refresh_btn.click(cache_text, None, cache_md)
        clear_btn.click(clear_cache, [confirm_box], [cache_md, message], js=CLEAR_JS)
    return demo


PREVIEW_SLOTS = ("video", "gallery", "plot", "bars", "audio", "json")


def preview_updates(p: Preview) -> list[Any]:
    """Updates for the output components, in PREVIEW_SLOTS order: the fitting ones shown, the rest hidden."""
    shown: dict[str, Any] = {}
    if p.kind == "video":
        shown["video"] = p.file
    elif p.kind == "images":
        shown["gallery"] = [p.file] if p.file else p.images
    elif p.kind == "plot":
        shown["plot"] = pd.DataFrame(curve_table(p.curves))
    elif p.kind == "bars":
        shown["bars"] = pd.DataFrame({"name": list(p.bars), "value": list(p.bars.values())})
        shown["json"] = p.data
    elif p.kind == "audio":
        shown["audio"] = p.file or p.audio
    else:  # gr.JSON reads a bare string as JSON text: wrap it
        shown["json"] = {"value": p.data} if isinstance(p.data, str) else p.data
    updates = []
    for slot in PREVIEW_SLOTS:
        if slot not in shown:
            updates.append(gr.update(visible=False))
        elif slot == "bars":
            updates.append(gr.update(value=shown[slot], sort=list(p.bars), visible=True))  # keep the metrics' order
        else:
            updates.append(gr.update(value=shown[slot], visible=True))
    return updates


def run_summary_text(snap: dict[str, Any]) -> str:
    counts: dict[str, int] = {}
    for s in snap["nodes"].values():
        counts[s.get("state", "pending")] = counts.get(s.get("state", "pending"), 0) + 1
    parts = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    if snap["running"]:
        return f"Running… {parts} ({snap['elapsed']:.1f} s)"
    if snap.get("cancelled"):
        return f"**Cancelled** after {snap['elapsed']:.1f} s: {parts} (what finished is cached)"
    if snap["error"]:
        return f"**Run failed:** {snap['error']}"
    verdict = "Finished" if snap["ok"] else "**Finished with failures**"
    return f"{verdict} in {snap['elapsed']:.1f} s: {parts}"

