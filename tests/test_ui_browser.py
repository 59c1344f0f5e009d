"""The editor in a real browser: Debian chromium driven by Playwright, against `graphrun ui`
started on a free localhost port (opened with the token URL it prints). Screenshots go to
test-artifacts/ui/."""
from __future__ import annotations

import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from ui_testkit import ROOT, make_project

from graphcore.keys import compute_keys
from graphcore.loader import load_workflow
from graphcore.registry import build_registry
from graphcore.validation import compile_workflow

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = ROOT / "test-artifacts" / "ui"
EXAMPLE = ROOT / "workflows" / "examples" / "signal.yaml"
SHIPPED = ("hdtf.yaml", "train_audio2head.yaml", "examples/signal.yaml")  # opened and saved unchanged
READY = "window.TalkGraph && window.TalkGraph.graph && document.querySelector('#tg-editor .tg-node-item')"

if not Path(CHROMIUM).exists():
    pytest.skip("Debian chromium is not installed (make system installs it)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui-project")
    config = make_project(root)
    if EXAMPLE.exists():  # the engine's example workflow, in the same place as in the repository
        (root / "workflows" / "examples").mkdir()
        shutil.copy(EXAMPLE, root / "workflows" / "examples" / "signal.yaml")
    (root / "workflows" / "shipped" / "examples").mkdir(parents=True)
    for name in SHIPPED:  # a few of the repository's own files, for layout and formatting
        shutil.copy(ROOT / "workflows" / name, root / "workflows" / "shipped" / name)
    return config


@pytest.fixture(scope="module")
def server(project):
    """`graphrun ui` with a plugin given on the command line."""
    port = free_port()
    log = open(project.root / "server.log", "w")
    env = {k: v for k, v in os.environ.items() if k not in ("GRAPHRUN_PLUGINS", "GRAPHRUN_CACHE")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from graphcore.cli import main; sys.exit(main())", "ui",
         "--port", str(port), "--root", str(project.root), "--cache", project.cache_url,
         "--upload-dir", str(project.upload_dir), "--plugins", project.plugin_paths[0]],
        cwd=project.root, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 120
    url = None
    while True:
        # the URL with the launch token, as printed for the user to open
        found = re.search(r"(http://\S+/\?token=\S+)", (project.root / "server.log").read_text())
        try:
            if found:
                url = found.group(1)
                token = url.split("token=", 1)[1]
                urllib.request.urlopen(urllib.request.Request(
                    f"http://127.0.0.1:{port}/talkgraph/workflows", headers={"X-TalkGraph-Token": token}), timeout=2)
                break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail("the editor did not start:\n" + (project.root / "server.log").read_text())
        time.sleep(0.3)
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def open_page(browser, server, errors: list[str], viewport: tuple[int, int] = (1600, 1000)):
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    pg = context.new_page()
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(server)
    pg.wait_for_function(READY, timeout=60_000)
    pg.wait_for_function("() => document.querySelector('#tg-queue') !== null")
    pg.set_default_timeout(30_000)
    return context, pg


@pytest.fixture()
def page(browser, server):
    """A fresh browser session on the editor; fails the test on any console error."""
    errors: list[str] = []
    context, pg = open_page(browser, server, errors)
    yield pg
    context.close()
    assert errors == [], errors


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def graph(page) -> dict:
    return page.evaluate("TalkGraph.serialize()")


def node(page, node_id: str) -> dict:
    return next(n for n in graph(page)["nodes"] if n["id"] == node_id)


def add_from_palette(page, node_type: str, search: str = "") -> None:
    page.fill("#tg-editor .tg-search", search)
    page.click(f"#tg-editor .tg-node-item[data-type={node_type}]")


def place(page, positions: dict[str, tuple[int, int]]) -> None:
    """Move nodes to known places and fit the view (the mouse then finds their slots)."""
    page.evaluate("""(pos) => {
        for (const n of TalkGraph.graph._nodes) if (pos[n.tgId]) n.pos = pos[n.tgId];
        TalkGraph.fit();
    }""", {k: list(v) for k, v in positions.items()})


def drag(page, start: list[float], end: list[float]) -> None:
    page.mouse.move(*start)
    page.mouse.down()
    for k in range(1, 13):
        page.mouse.move(start[0] + (end[0] - start[0]) * k / 12, start[1] + (end[1] - start[1]) * k / 12)
    page.mouse.up()
    page.wait_for_timeout(150)


def connect_by_mouse(page, source: str, out_port: str, target: str, in_port: str) -> None:
    a = page.evaluate("([n, p]) => TalkGraph.slotPagePosition(n, false, p)", [source, out_port])
    b = page.evaluate("([n, p]) => TalkGraph.slotPagePosition(n, true, p)", [target, in_port])
    drag(page, a, b)


def open_workflow(page, path: str) -> None:
    page.click("#tg-workflow input")
    page.get_by_role("option", name=path, exact=True).click()
    page.click("#tg-open")
    page.wait_for_function("(p) => TalkGraph.state.path === p && TalkGraph.graph._nodes.length > 0", arg=path)


def states(page) -> dict[str, str | None]:
    return {k: v["status"] for k, v in page.evaluate("TalkGraph.nodeStates()").items()}


# --- tests ---------------------------------------------------------------------------------


def test_page_loads_with_palette_and_no_console_errors(page):
    cats = page.eval_on_selector_all("#tg-editor .tg-category", "els => els.map(e => e.dataset.category)")
    assert {"basic", "signal", "io", "plugin_demo"} <= set(cats)
    assert page.locator("#tg-editor .tg-legend-item").count() >= 3
    # ports are coloured by type, with the colours of the engine's type schema
    dot = page.eval_on_selector("#tg-editor .tg-node-item[data-type=Stats] .tg-dots:last-of-type .tg-dot",
                                "e => getComputedStyle(e).backgroundColor")
    assert dot == "rgb(192, 128, 224)"  # Metrics: #c080e0
    page.fill("#tg-editor .tg-search", "moving")
    assert page.locator("#tg-editor .tg-node-item:visible").all_inner_texts() == ["MovingAverage"]
    shot(page, "01-loaded")


def test_add_two_nodes_from_the_palette_and_connect_them(page):
    add_from_palette(page, "Range", "range")
    add_from_palette(page, "MovingAverage", "")
    place(page, {"range": (40, 60), "moving_average": (380, 60)})
    connect_by_mouse(page, "range", "array", "moving_average", "x")
    assert node(page, "moving_average")["inputs"] == {"x": {"node": "range", "port": "array"}}
    shot(page, "02-connected")


def test_incompatible_connection_is_refused(page):
    add_from_palette(page, "Stats", "stats")
    add_from_palette(page, "MovingAverage", "")
    place(page, {"stats": (40, 60), "moving_average": (380, 60)})
    connect_by_mouse(page, "stats", "metrics", "moving_average", "x")  # Metrics cannot feed an Array
    assert node(page, "moving_average")["inputs"] == {}
    toast = page.inner_text("#tg-editor .tg-toast")
    assert "cannot connect" in toast and "stats.metrics" in toast and "moving_average.x" in toast, toast
    place(page, {"moving_average": (40, 60), "stats": (380, 60)})
    connect_by_mouse(page, "moving_average", "y", "stats", "x")  # the other way round is fine
    assert node(page, "stats")["inputs"] == {"x": {"node": "moving_average", "port": "y"}}
    shot(page, "03-refused")


def test_change_a_parameter(page):
    add_from_palette(page, "MovingAverage", "moving")
    place(page, {"moving_average": (100, 100)})
    assert node(page, "moving_average")["params"] == {}  # defaults are not written out
    page.mouse.click(*page.evaluate("TalkGraph.widgetPagePosition('moving_average', 'window')"))
    page.fill("#tg-editor .graphdialog input", "9")
    page.keyboard.press("Enter")
    page.wait_for_function("TalkGraph.serialize().nodes[0].params.window === 9")
    # the combo of an enum parameter
    add_from_palette(page, "Function", "function")
    place(page, {"moving_average": (100, 100), "function": (100, 300)})
    page.mouse.click(*page.evaluate("TalkGraph.widgetPagePosition('function', 'fn')"))
    page.locator(".litecontextmenu .litemenu-entry", has_text="tanh").click()
    assert node(page, "function")["params"] == {"fn": "tanh"}
    shot(page, "04-parameter")


def test_widget_position_of_a_node_not_drawn_yet(page):
    """A node added and moved in the same tick has not been drawn: its widget position must still
    be a real point on its widget (CI once clicked at y = NaN here)."""
    x, y, top, bottom = page.evaluate("""() => {
        const n = TalkGraph.addNode('MovingAverage', [120, 140]);
        const [x, y] = TalkGraph.widgetPagePosition(n.tgId, 'window');
        const r = TalkGraph.canvas.canvas.getBoundingClientRect();
        return [x, y, r.top, r.bottom];
    }""")
    assert all(math.isfinite(v) for v in (x, y)) and top <= y <= bottom


def test_save_and_compare_the_yaml(page, project):
    open_workflow(page, "workflows/roundtrip.yaml")
    shot(page, "05-opened")
    page.fill("#tg-save-as textarea", "workflows/saved/roundtrip_copy.yaml")
    page.click("#tg-save")
    saved = project.root / "workflows" / "saved" / "roundtrip_copy.yaml"
    page.wait_for_function("() => document.querySelector('#tg-message').innerText.includes('Saved')")
    original = load_workflow(project.root / "workflows" / "roundtrip.yaml")
    copy = load_workflow(saved)
    registry = build_registry(entry_points=False, env=False)
    # Saved one folder down, so relative paths were rewritten to name the same files ...
    assert copy.nodes["data"].params["path"] == "../../assets/ramp.npy"
    # ... and layouts are as the file had them: nothing was moved, so no positions were added
    assert {k: v.layout for k, v in copy.nodes.items()} == {k: v.layout for k, v in original.nodes.items()}
    assert copy.nodes["data"].layout == {"x": 10, "y": 20, "note": "keep me"}
    # ... and saved back in its own folder it is the same workflow with the same keys.
    open_workflow(page, "workflows/roundtrip.yaml")
    page.fill("#tg-save-as textarea", "workflows/roundtrip_again.yaml")
    page.click("#tg-save")
    again = project.root / "workflows" / "roundtrip_again.yaml"
    page.wait_for_function("() => document.querySelector('#tg-message').innerText.includes('roundtrip_again')")
    with page.expect_download() as download:  # Download gives the file just saved
        page.click("#tg-download")
    assert Path(download.value.path()).read_text() == again.read_text()
    copy = load_workflow(again)
    assert {k: (v.type, v.params, v.inputs) for k, v in copy.nodes.items()} == \
        {k: (v.type, v.params, v.inputs) for k, v in original.nodes.items()}
    # nothing changed, so the text is the original's, comments and formatting included
    assert again.read_text() == (project.root / "workflows" / "roundtrip.yaml").read_text()
    keys = lambda wf: compute_keys(compile_workflow(wf, registry), run_salt="fixed")  # noqa: E731
    assert keys(copy) == keys(original)
    # the YAML tab shows the text that was written
    page.click("button[role=tab]:has-text('YAML')")
    shown = page.locator("#tg-yaml .cm-content").inner_text()
    assert yaml.safe_load(shown) == yaml.safe_load(again.read_text())


def test_validation_problems_show_on_the_offending_node(page):
    add_from_palette(page, "Range", "range")
    add_from_palette(page, "MovingAverage", "")
    place(page, {"range": (40, 60), "moving_average": (380, 60)})
    page.click("#tg-check")
    page.wait_for_function("TalkGraph.nodeStates().moving_average.problems.length > 0")
    problems = page.evaluate("TalkGraph.nodeStates()")
    assert problems["range"]["problems"] == []
    assert "x" in " ".join(problems["moving_average"]["problems"])
    assert "problem" in page.inner_text("#tg-message")
    shot(page, "06-problems")


def test_open_run_done_then_cached(page):
    path = "workflows/examples/signal.yaml" if EXAMPLE.exists() else "workflows/small.yaml"
    open_workflow(page, path)
    ids = [n["id"] for n in graph(page)["nodes"]]
    page.click("#tg-run")
    page.wait_for_function("Object.values(TalkGraph.nodeStates()).every(s => s.status === 'done')", timeout=120_000)
    page.wait_for_function("() => document.querySelector('#tg-run-summary').innerText.startsWith('Finished')")
    assert set(states(page)) == set(ids)
    table = page.locator("#tg-status").inner_text()
    assert table.count("done") >= len(ids)
    shot(page, "07-run-done")
    # the outputs of a node: click it on the canvas, its output is previewed
    page.click("button[role=tab]:has-text('Outputs')")
    target = "smooth" if "smooth" in ids else ids[-1]
    pos = page.evaluate("""(id) => {
        const n = TalkGraph.graph._nodes.find(n => n.tgId === id);
        const s = TalkGraph.canvas.ds.convertOffsetToCanvas([n.pos[0] + n.size[0] / 2, n.pos[1] - 10]);
        const r = TalkGraph.canvas.canvas.getBoundingClientRect();
        return [r.left + s[0], r.top + s[1]];
    }""", target)
    page.mouse.click(*pos)
    page.wait_for_function("(id) => document.querySelector('#tg-out-summary').innerText.includes(id + '.')", arg=target)
    page.locator("#tg-out-plot").wait_for(state="visible")
    shot(page, "08-output")
    page.click("#tg-run")
    page.wait_for_function("Object.values(TalkGraph.nodeStates()).every(s => s.status === 'cached')", timeout=60_000)
    page.wait_for_function("() => document.querySelector('#tg-run-summary').innerText.includes('cached')")
    shot(page, "09-run-cached")
    # the cache panel: size, then clear
    page.click("button[role=tab]:has-text('Cache')")
    info = page.locator("#tg-cache-info").inner_text()
    assert f"{len(ids)} entries" in info and "MB" in info
    page.once("dialog", lambda d: d.dismiss())  # asked first: "no" clears nothing
    page.click("#tg-cache-clear")
    page.wait_for_function("() => document.querySelector('#tg-message').innerText.includes('not cleared')")
    assert f"{len(ids)} entries" in page.locator("#tg-cache-info").inner_text()
    page.once("dialog", lambda d: d.accept())
    page.click("#tg-cache-clear")
    page.wait_for_function("() => document.querySelector('#tg-cache-info').innerText.startsWith('0 entries')")
    assert f"({len(ids)} entries)" in page.inner_text("#tg-message")


def test_plugin_node_appears_in_the_palette(page):
    page.fill("#tg-editor .tg-search", "wobble")
    item = page.locator("#tg-editor .tg-node-item[data-type=Wobble]")
    assert item.is_visible() and "plugin" in item.inner_text()
    assert page.locator("#tg-editor .tg-category[data-category=plugin_demo]").count() == 1
    item.click()
    assert node(page, "wobble")["type"] == "Wobble"
    shot(page, "10-plugin")


def test_upload_a_workflow_and_a_file_for_a_parameter(page, project, tmp_path):
    flow = tmp_path / "my small flow.yaml"
    flow.write_text((project.root / "workflows" / "small.yaml").read_text())
    with page.expect_file_chooser() as chooser:
        page.click("#tg-upload-yaml")
    chooser.value.set_files(str(flow))
    page.wait_for_function("() => (TalkGraph.state.path || '').endsWith('/my_small_flow.yaml')")
    path = project.root / page.evaluate("TalkGraph.state.path")  # shown relative to the project
    assert path.parent.parent == project.upload_dir  # uploads/<session>/my_small_flow.yaml
    assert [n["id"] for n in graph(page)["nodes"]] == ["t", "wave", "smooth", "stats"]
    # a file parameter: the node's upload button sends the file to the same session folder
    add_from_palette(page, "LoadArray", "loadarray")
    place(page, {"load_array": (40, 420)})
    data = tmp_path / "../ramp copy.npy"
    data.write_bytes((project.root / "assets" / "ramp.npy").read_bytes())
    with page.expect_file_chooser() as chooser:
        page.mouse.click(*page.evaluate("TalkGraph.widgetPagePosition('load_array', 'upload path…')"))
    chooser.value.set_files(str(data))
    page.wait_for_function("() => TalkGraph.serialize().nodes.some(n => n.id === 'load_array' && n.params.path)")
    stored = Path(node(page, "load_array")["params"]["path"])
    assert stored == path.parent / "ramp_copy.npy" and stored.read_bytes() == data.read_bytes()
    page.click("#tg-check")
    page.wait_for_function("() => document.querySelector('#tg-message').innerText.includes('No problems')")
    shot(page, "11-uploads")


def test_live_progress_and_a_failure(page):
    page.evaluate("""() => TalkGraph.load({path: null, description: "", nodes: [
        {id: "t", type: "Range", params: {num: 32}, inputs: {}, pos: [40, 40]},
        {id: "slow", type: "Slow", params: {steps: 12, delay: 0.4}, inputs: {x: {node: "t", port: "array"}}, pos: [340, 40]},
        {id: "done_after", type: "Stats", params: {}, inputs: {x: {node: "slow", port: "y"}}, pos: [640, 40]},
        {id: "boom", type: "Boom", params: {}, inputs: {x: {node: "t", port: "array"}}, pos: [340, 260]},
        {id: "never", type: "Stats", params: {}, inputs: {x: {node: "boom", port: "y"}}, pos: [640, 260]},
    ]})""")
    page.click("#tg-run")
    # live: the slow node is seen running, with its progress i/n, while the run goes on
    page.wait_for_function("""() => { const s = TalkGraph.nodeStates().slow;
        return s.status === 'running' && s.n === 12 && s.i >= 2 && s.i < 12; }""", timeout=60_000)
    assert "Running" in page.inner_text("#tg-run-summary")
    shot(page, "12-running")
    page.wait_for_function("() => TalkGraph.nodeStates().done_after.status === 'done'", timeout=60_000)
    s = page.evaluate("TalkGraph.nodeStates()")
    assert (s["t"]["status"], s["slow"]["status"], s["boom"]["status"], s["never"]["status"]) == \
        ("done", "done", "failed", "skipped")
    assert "always fails" in s["boom"]["error"]
    page.wait_for_function("() => document.querySelector('#tg-run-summary').innerText.includes('failures')")
    table = page.locator("#tg-status").inner_text()
    assert "failed" in table and "skipped" in table
    shot(page, "13-failed")


def test_a_node_of_an_unknown_type_is_kept_and_flagged(page, project):
    open_workflow(page, "workflows/unknown.yaml")
    page.wait_for_function("() => TalkGraph.nodeStates().mystery.problems.length > 0")
    assert "NotInstalled" in " ".join(page.evaluate("TalkGraph.nodeStates()")["mystery"]["problems"])
    shot(page, "14-unknown-type")
    page.fill("#tg-save-as textarea", "workflows/unknown_saved.yaml")
    page.click("#tg-save")
    page.wait_for_function("() => document.querySelector('#tg-message').innerText.includes('unknown_saved')")
    saved = load_workflow(project.root / "workflows" / "unknown_saved.yaml")
    original = load_workflow(project.root / "workflows" / "unknown.yaml")
    assert {k: (v.type, v.params, v.inputs) for k, v in saved.nodes.items()} == \
        {k: (v.type, v.params, v.inputs) for k, v in original.nodes.items()}


def open_tab(page, name: str, content_selector: str) -> None:
    """Click a tab until its content shows: on a loaded machine the first click can land
    before Gradio has wired the tab buttons, and is then lost."""
    for _ in range(3):
        page.click(f"button[role=tab]:has-text('{name}')")
        try:
            page.locator(content_selector).wait_for(state="visible", timeout=10_000)
            return
        except Exception:
            continue
    page.locator(content_selector).wait_for(state="visible", timeout=10_000)


def test_a_video_output_plays_in_the_outputs_tab(page):
    page.evaluate("""() => TalkGraph.load({path: null, description: "", nodes: [
        {id: "clip", type: "WriteClip", params: {frames: 20}, inputs: {}, pos: [60, 60]}]})""")
    page.click("#tg-run")
    page.wait_for_function("() => TalkGraph.nodeStates().clip.status === 'done'", timeout=60_000)
    page.wait_for_function("() => document.querySelector('#tg-run-summary').innerText.startsWith('Finished')")
    open_tab(page, "Outputs", "#tg-output input")
    page.click("#tg-output input")
    page.get_by_role("option", name="clip.path", exact=True).click()
    page.wait_for_function("""() => { const v = document.querySelector('#tg-out-video video');
        return v && v.readyState >= 1 && v.duration > 0.5; }""", timeout=30_000)
    shot(page, "15-video")


# --- the editing a ComfyUI user expects --------------------------------------------------------


def toast(page) -> str:
    return page.inner_text("#tg-editor .tg-toast")


def overlapping(boxes: dict[str, list[float]]) -> list[tuple[str, str]]:
    ids = sorted(boxes)
    out = []
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            x, y = boxes[a], boxes[b]
            if x[0] < y[0] + y[2] and y[0] < x[0] + x[2] and x[1] < y[1] + y[3] and y[1] < x[1] + x[3]:
                out.append((a, b))
    return out


def test_the_page_needs_the_token(browser, server):
    context = browser.new_context()
    pg = context.new_page()
    response = pg.goto(server.split("?", 1)[0])  # the URL without its token
    assert response.status == 401 and "token" in pg.content()
    assert not pg.evaluate("!!window.TalkGraph")
    context.close()


def test_start_state_empty_hint_then_the_last_workflow(browser, server):
    errors: list[str] = []
    context, pg = open_page(browser, server, errors)
    assert pg.evaluate("TalkGraph.graph._nodes.length") == 0
    assert "empty workflow" in pg.inner_text("#tg-editor .tg-hint").lower()
    open_workflow(pg, "workflows/small.yaml")
    assert not pg.locator("#tg-editor .tg-hint").is_visible()
    pg.reload()  # the same browser comes back: it finds what it had open
    pg.wait_for_function(READY, timeout=60_000)
    pg.wait_for_function("() => TalkGraph.state.path === 'workflows/small.yaml' && TalkGraph.graph._nodes.length === 4")
    context.close()
    assert errors == [], errors


def test_palette_clicks_place_nodes_without_overlap(page):
    for _ in range(6):
        add_from_palette(page, "Range", "range")
    add_from_palette(page, "MovingAverage", "moving")
    assert overlapping(page.evaluate("TalkGraph.nodeBoxes()")) == []
    page.evaluate("TalkGraph.fit()")
    connect_by_mouse(page, "range_4", "array", "moving_average", "x")  # the wire lands on the node it aims at
    assert node(page, "moving_average")["inputs"] == {"x": {"node": "range_4", "port": "array"}}


def test_files_without_positions_get_a_layered_layout(page):
    open_workflow(page, "workflows/shipped/hdtf.yaml")
    page.wait_for_function("() => Object.values(TalkGraph.nodeStates()).some(s => s.problems.length)")  # no assets here
    boxes = page.evaluate("TalkGraph.nodeBoxes()")  # each with the problem text under its node
    assert len(boxes) == 11 and overlapping(boxes) == []
    g = graph(page)
    for spec in g["nodes"]:  # layers: every edge runs to the right
        for src in spec["inputs"].values():
            if isinstance(src, dict) and "node" in src:
                assert boxes[src["node"]][0] + boxes[src["node"]][2] < boxes[spec["id"]][0], (src["node"], spec["id"])
    assert all(n["layout"] is None for n in g["nodes"])  # nothing placed by the user: the file keeps no positions
    shot(page, "16-layered-layout")


def test_readable_at_1280x720(browser, server):
    errors: list[str] = []
    context, pg = open_page(browser, server, errors, viewport=(1280, 720))
    open_workflow(pg, "workflows/shipped/hdtf.yaml")
    view = pg.evaluate("""() => { const r = TalkGraph.canvas.canvas.getBoundingClientRect();
        return {scale: TalkGraph.canvas.ds.scale, top: r.top, bottom: r.bottom, width: r.width}; }""")
    assert view["scale"] >= 0.6, view  # litegraph draws node text from 0.6 up
    assert view["bottom"] <= 720 and view["width"] >= 560, view  # the whole editor in view
    # the first layer's nodes are on screen with their widgets
    first = pg.evaluate("TalkGraph.canvasToPage([TalkGraph.graph._nodes.find(n => n.tgId === 'portrait').pos[0], "
                        "TalkGraph.graph._nodes.find(n => n.tgId === 'portrait').pos[1]])")
    assert view["top"] <= first[1] <= view["bottom"]
    shot(pg, "17-1280x720")
    context.close()
    assert errors == [], errors


def test_undo_and_redo(page):
    add_from_palette(page, "Range", "range")
    add_from_palette(page, "MovingAverage", "moving")
    place(page, {"range": (40, 60), "moving_average": (380, 60)})
    connect_by_mouse(page, "range", "array", "moving_average", "x")
    page.mouse.click(*page.evaluate("TalkGraph.widgetPagePosition('moving_average', 'window')"))
    page.fill("#tg-editor .graphdialog input", "9")
    page.keyboard.press("Enter")
    page.wait_for_function("() => TalkGraph.serialize().nodes[1].params.window === 9")
    page.wait_for_timeout(200)
    page.click("#tg-editor .tg-canvas", position={"x": 5, "y": 300})  # focus the canvas, not a text box
    page.keyboard.press("Control+z")
    page.wait_for_function("() => TalkGraph.serialize().nodes[1].params.window === undefined")
    assert node(page, "moving_average")["inputs"] == {"x": {"node": "range", "port": "array"}}
    page.keyboard.press("Control+z")
    page.wait_for_function("() => Object.keys(TalkGraph.serialize().nodes[1].inputs).length === 0")
    page.click("#tg-editor .tg-tools button[data-action=undo]")
    page.wait_for_function("() => TalkGraph.serialize().nodes.length === 1")
    page.keyboard.press("Control+Shift+z")
    page.wait_for_function("() => TalkGraph.serialize().nodes.length === 2")
    page.click("#tg-editor .tg-tools button[data-action=redo]")
    page.keyboard.press("Control+y")
    page.wait_for_function("() => TalkGraph.serialize().nodes[1].params.window === 9")
    assert node(page, "moving_average")["inputs"] == {"x": {"node": "range", "port": "array"}}


def test_two_quick_adds_are_two_undo_steps(page):
    # Both adds in one task, as when a busy browser runs queued clicks before the snapshot timer.
    page.evaluate("TalkGraph.addNode('Range'); TalkGraph.addNode('MovingAverage')")
    page.wait_for_function("() => TalkGraph.graph._nodes.length === 2 && TalkGraph.canUndo()")
    page.wait_for_timeout(200)
    page.click("#tg-editor .tg-tools button[data-action=undo]")
    page.wait_for_function("() => TalkGraph.graph._nodes.length !== 2")
    assert [n["type"] for n in graph(page)["nodes"]] == ["Range"]


def test_unsaved_changes_are_not_discarded_without_asking(page):
    open_workflow(page, "workflows/small.yaml")
    page.evaluate("TalkGraph.graph._nodes.find(n => n.tgId === 'smooth').properties.params.window = 11; TalkGraph.changed()")
    page.wait_for_function("() => TalkGraph.isDirty() && document.querySelector('.tg-path').innerText.includes('unsaved')")
    asked: list[str] = []

    def answer(dialog, accept: bool) -> None:
        asked.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda d: answer(d, False))
    page.click("#tg-new")
    page.wait_for_timeout(1500)
    assert asked and "unsaved" in asked[0] and len(graph(page)["nodes"]) == 4  # kept
    page.once("dialog", lambda d: answer(d, True))
    page.click("#tg-new")
    page.wait_for_function("() => TalkGraph.graph._nodes.length === 0")
    assert len(asked) == 2


def test_ctrl_s_saves_and_ctrl_enter_runs(page, project):
    open_workflow(page, "workflows/small.yaml")
    page.fill("#tg-save-as textarea", "workflows/keys_saved.yaml")
    page.evaluate("TalkGraph.graph._nodes.find(n => n.tgId === 'smooth').properties.params.window = 7; TalkGraph.changed()")
    page.click("#tg-editor .tg-canvas", position={"x": 5, "y": 300})
    page.keyboard.press("Control+s")
    page.wait_for_function("() => document.querySelector('#tg-message').innerText.includes('keys_saved')")
    assert load_workflow(project.root / "workflows" / "keys_saved.yaml").nodes["smooth"].params["window"] == 7
    page.wait_for_function("() => !TalkGraph.isDirty()")
    page.keyboard.press("Control+Enter")
    page.wait_for_function("Object.values(TalkGraph.nodeStates()).every(s => ['done', 'cached'].includes(s.status))",
                           timeout=120_000)


def test_groups_are_saved_in_the_layout(page, project):
    open_workflow(page, "workflows/small.yaml")
    page.evaluate("""() => { TalkGraph.canvas.deselectAllNodes();
        for (const n of TalkGraph.graph._nodes) if (['t', 'wave'].includes(n.tgId)) TalkGraph.canvas.selectNode(n, true); }""")
    page.click("#tg-editor .tg-tools button[data-action=group]")
    page.wait_for_function("() => TalkGraph.graph._groups.length === 1")
    page.fill("#tg-save-as textarea", "workflows/grouped.yaml")
    page.click("#tg-save")
    page.wait_for_function("() => document.querySelector('#tg-message').innerText.includes('grouped')")
    saved = yaml.safe_load((project.root / "workflows" / "grouped.yaml").read_text())
    (group,) = saved["layout"]["groups"]
    assert group["title"] == "group 1" and len(group["bounding"]) == 4
    page.click("#tg-new")
    page.wait_for_function("() => TalkGraph.graph._groups.length === 0")
    open_workflow(page, "workflows/grouped.yaml")
    page.wait_for_function("() => TalkGraph.graph._groups.length === 1 && TalkGraph.graph._groups[0].title === 'group 1'")
    shot(page, "18-group")


def test_refusals_name_the_reason_and_the_port(page):
    page.evaluate("""() => TalkGraph.load({path: null, description: "", nodes: [
        {id: "portrait", type: "LoadImage", params: {path: "x.png"}, inputs: {}, pos: [40, 40]},
        {id: "clip", type: "LoadVideo", params: {path: "x.mp4"}, inputs: {}, pos: [40, 260]},
        {id: "detect", type: "DetectLandmarks", params: {}, inputs: {}, pos: [420, 40]}]})""")
    connect_by_mouse(page, "portrait", "image", "detect", "image")
    assert node(page, "detect")["inputs"] == {"image": {"node": "portrait", "port": "image"}}
    # onto the node's body again: its one Image input is taken
    a = page.evaluate("TalkGraph.slotPagePosition('portrait', false, 'image')")
    body = page.evaluate("""() => { const n = TalkGraph.graph._nodes.find(n => n.tgId === 'detect');
        return TalkGraph.canvasToPage([n.pos[0] + n.size[0] / 2, n.pos[1] + n.size[1] - 12]); }""")
    drag(page, a, body)
    assert "detect.image is already connected" in toast(page), toast(page)
    # the other input of its exactly-one group
    connect_by_mouse(page, "clip", "frames", "detect", "frames")
    assert "exactly one of 'image', 'frames'" in toast(page) and "'image' is already connected" in toast(page)
    assert node(page, "detect")["inputs"] == {"image": {"node": "portrait", "port": "image"}}


def test_an_image_feeds_a_frames_input_through_an_adapter(page):
    page.evaluate("""() => TalkGraph.load({path: null, description: "", nodes: [
        {id: "portrait", type: "LoadImage", params: {path: "x.png"}, inputs: {}, pos: [40, 40]},
        {id: "save", type: "SaveVideo", params: {}, inputs: {}, pos: [640, 40]}]})""")
    connect_by_mouse(page, "portrait", "image", "save", "frames")
    g = {n["id"]: n for n in graph(page)["nodes"]}
    assert g["image_to_frames"]["type"] == "ImageToFrames"
    assert g["image_to_frames"]["inputs"] == {"image": {"node": "portrait", "port": "image"}}
    assert g["save"]["inputs"]["frames"] == {"node": "image_to_frames", "port": "frames"}
    assert "inserted image_to_frames" in toast(page)
    assert overlapping(page.evaluate("TalkGraph.nodeBoxes()")) == []


def test_check_reports_both_inputs_of_an_exactly_one_group(page):
    page.evaluate("""() => TalkGraph.load({path: null, description: "", nodes: [
        {id: "portrait", type: "LoadImage", params: {path: "x.png"}, inputs: {}, pos: [40, 40]},
        {id: "frames", type: "ImageToFrames", params: {}, inputs: {image: {node: "portrait", port: "image"}}, pos: [40, 260]},
        {id: "detect", type: "DetectLandmarks", params: {}, inputs: {image: {node: "portrait", port: "image"},
         frames: {node: "frames", port: "frames"}}, pos: [420, 40]}]})""")
    page.click("#tg-check")
    page.wait_for_function("() => TalkGraph.nodeStates().detect.problems.length > 0")
    assert any("exactly one of the inputs 'image', 'frames' (both are connected)" in p
               for p in page.evaluate("TalkGraph.nodeStates().detect.problems"))


SLOW_GRAPH = """(steps) => TalkGraph.load({path: null, description: "", nodes: [
    {id: "t", type: "Range", params: {num: 16}, inputs: {}, pos: [40, 40]},
    {id: "slow", type: "Slow", params: {steps: steps, delay: 0.25}, inputs: {x: {node: "t", port: "array"}}, pos: [340, 40]},
    {id: "after", type: "Stats", params: {}, inputs: {x: {node: "slow", port: "y"}}, pos: [640, 40]}]})"""


def test_a_second_run_is_queued_and_cancel_stops_at_the_next_progress_point(page):
    page.evaluate(SLOW_GRAPH, 200)
    page.click("#tg-run")
    page.wait_for_function("() => { const s = TalkGraph.nodeStates().slow; return s.status === 'running' && s.i >= 2; }",
                           timeout=60_000)
    page.click("#tg-run")  # while one runs: queued, not ignored
    page.wait_for_function("() => document.querySelector('#tg-queue').innerText.includes('waiting')")
    assert "running" in page.inner_text("#tg-queue")
    shot(page, "19-queued")
    page.click("#tg-cancel")  # this page's running run and its waiting one
    page.wait_for_function("() => TalkGraph.nodeStates().slow.status === 'cancelled'", timeout=30_000)
    page.wait_for_function("() => document.querySelector('#tg-run-summary').innerText.includes('Cancelled')")
    s = page.evaluate("TalkGraph.nodeStates()")
    assert s["slow"]["i"] < 200 and s["after"]["status"] == "cancelled" and s["t"]["status"] == "done"
    page.wait_for_function("() => !document.querySelector('#tg-queue').innerText.includes('waiting')")
    shot(page, "20-cancelled")
    # finished work stayed cached
    page.evaluate(SLOW_GRAPH, 2)
    page.click("#tg-run")
    page.wait_for_function("() => TalkGraph.nodeStates().after.status === 'done'", timeout=60_000)
    assert page.evaluate("TalkGraph.nodeStates().t.status") == "cached"


def test_a_tab_opened_during_a_run_stays_open_when_the_run_ends(page):
    """The cause of the old flaky Outputs click (issue 17): the Run tab used to be selected when a
    run *ended* (an event chained after the run stream), i.e. under whatever the user had opened
    meanwhile, so the Outputs dropdown vanished under the click. It is selected with the run's
    first answer only."""
    page.evaluate(SLOW_GRAPH, 60)
    page.click("#tg-run")
    page.wait_for_function("() => TalkGraph.nodeStates().slow.status === 'running'", timeout=60_000)
    open_tab(page, "Outputs", "#tg-output input")
    assert page.evaluate("TalkGraph.nodeStates().slow.status") == "running", "the run ended too soon to tell"
    page.wait_for_function("() => TalkGraph.nodeStates().after.status === 'done'", timeout=120_000)
    # the run's last answer (the message beside the canvas: the Run tab's summary is not drawn now)
    page.wait_for_function("() => document.querySelector('#tg-message').innerText.startsWith('Finished')")
    page.click("#tg-output input")
    page.get_by_role("option", name="after.metrics", exact=True).click()
    page.wait_for_function("() => document.querySelector('#tg-out-summary').textContent.trim().length > 0")
    assert page.locator("button[role=tab][aria-selected=true]").inner_text().strip() == "Outputs"


def test_previews_are_drawn_on_the_nodes_after_a_run(page):
    page.evaluate("""() => TalkGraph.load({path: null, description: "", nodes: [
        {id: "clip", type: "WriteClip", params: {frames: 20, path: "out/preview_clip.mp4"}, inputs: {}, pos: [40, 40]},
        {id: "t", type: "Range", params: {num: 64, stop: 6.28}, inputs: {}, pos: [40, 300]},
        {id: "wave", type: "Function", params: {fn: "sin"}, inputs: {x: {node: "t", port: "array"}}, pos: [340, 300]},
        {id: "stats", type: "Stats", params: {}, inputs: {x: {node: "wave", port: "y"}}, pos: [640, 300]},
        {id: "coeffs", type: "WaveCoeffs", params: {}, inputs: {}, pos: [640, 40]}]})""")
    page.click("#tg-run")
    page.wait_for_function("() => Object.values(TalkGraph.nodeStates()).every(s => s.previewReady)", timeout=120_000)
    kinds = {k: v["preview"] for k, v in page.evaluate("TalkGraph.nodeStates()").items()}
    assert kinds == {"clip": "image", "t": "curves", "wave": "curves", "stats": "text", "coeffs": "curves"}
    titles = page.evaluate("TalkGraph.graph._nodes.find(n => n.tgId === 'coeffs').tgPreview.panels.map(p => p.title)")
    assert titles == ["expression", "pose"]  # over time, not the identity vector
    assert overlapping(page.evaluate("TalkGraph.nodeBoxes()")) == []
    shot(page, "21-previews")
    # and in the Outputs tab, the coefficients as curves over time
    open_tab(page, "Outputs", "#tg-output input")
    page.click("#tg-output input")
    page.get_by_role("option", name="coeffs.coeffs", exact=True).click()
    page.wait_for_function("() => document.querySelector('#tg-out-summary').innerText.includes('expression 33')")
    page.locator("#tg-out-plot").wait_for(state="visible")


@pytest.mark.parametrize("name", SHIPPED)
def test_saving_an_unchanged_shipped_workflow_changes_nothing(page, project, name):
    path = project.root / "workflows" / "shipped" / name
    before = path.read_bytes()
    open_workflow(page, f"workflows/shipped/{name}")
    page.click("#tg-editor .tg-canvas", position={"x": 5, "y": 300})
    page.keyboard.press("Control+s")
    page.wait_for_function("(n) => document.querySelector('#tg-message').innerText.includes('Saved')", arg=name)
    assert path.read_bytes() == before
