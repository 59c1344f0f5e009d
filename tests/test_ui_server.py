"""The editor's server side without a browser: schema endpoint, YAML round trip with cache keys,
allowed roots, uploads, plugins and previews."""
from __future__ import annotations

import io
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from ui_testkit import ROOT, as_javascript, browser_client, make_project

from graphcore.keys import compute_keys
from graphcore.loader import dump_workflow, load_workflow, parse_workflow
from graphcore.types import TYPES
from graphcore.validation import compile_workflow
from ui.app import create_app
from ui.config import PathNotAllowed, safe_filename
from ui.graphjson import YAML_KEY, param_widgets, rebase_paths
from ui.preview import flow_to_rgb, preview_value
from ui.server import EditorServer


@pytest.fixture()
def project(tmp_path: Path):
    config = make_project(tmp_path)
    server = EditorServer(config)
    assert not server.registry.errors, server.registry.errors
    return config, server


@pytest.fixture()
def client(project):
    config, server = project
    with browser_client(create_app(config, server=server), config) as c:
        yield c


def keys_of(wf) -> dict[str, str]:
    return compute_keys(compile_workflow(wf, registry()), run_salt="fixed")


_registry = None


def registry():
    global _registry
    from graphcore.registry import build_registry

    if _registry is None:
        _registry = build_registry(entry_points=False, env=False)
    return _registry


# --- schema -----------------------------------------------------------------------------


def test_schema_endpoint_lists_nodes_types_and_widgets(client):
    schema = client.get("/talkgraph/schema").json()
    assert {"Range", "MovingAverage", "Wobble"} <= set(schema["nodes"])
    assert schema["nodes"]["Wobble"]["origin"].startswith("plugin:")
    # The editor takes connectability from here; it must be exactly the engine's rule.
    for source, t in schema["types"].items():
        assert t["color"].startswith("#")
        for target in schema["types"]:
            assert (target in t["connects_to"]) == TYPES.can_connect(source, target), (source, target)
    widgets = {w["name"]: w for w in schema["nodes"]["Range"]["widgets"]}
    assert widgets["num"]["kind"] == "int" and widgets["num"]["min"] == 1 and widgets["num"]["max"] == 100_000_000
    assert widgets["start"]["kind"] == "float" and widgets["start"]["default"] == 0.0
    assert {w["name"]: w["kind"] for w in schema["nodes"]["Math"]["widgets"]}["op"] == "combo"
    load = {w["name"]: w for w in schema["nodes"]["LoadArray"]["widgets"]}["path"]
    assert load["kind"] == "file" and load["mode"] == "read" and load["extensions"] == [".npy"]
    assert {w["name"]: w["kind"] for w in schema["nodes"]["RandomArray"]["widgets"]} == {
        "shape": "yaml", "seed": "yaml", "scale": "float"}


def test_widgets_from_json_schema_kinds():
    from enum import Enum
    from typing import Literal

    from pydantic import BaseModel, Field

    class Mode(str, Enum):
        a = "a"
        b = "b"

    class P(BaseModel):
        flag: bool = True
        mode: Mode = Mode.a
        pick: Literal[1, 2, 3] = 2
        name: str = "x"
        ratio: float = Field(0.5, gt=0, lt=1)

    kinds = {w["name"]: w for w in param_widgets(P.model_json_schema())}
    assert kinds["flag"]["kind"] == "toggle"
    assert kinds["mode"]["kind"] == "combo" and kinds["mode"]["choices"] == ["a", "b"]
    assert kinds["pick"]["kind"] == "combo" and kinds["pick"]["choices"] == [1, 2, 3]
    assert kinds["name"]["kind"] == "text"
    assert kinds["ratio"]["min"] == 0 and kinds["ratio"]["max"] == 1 and set(kinds["ratio"]["exclusive"]) == {
        "exclusiveMinimum", "exclusiveMaximum"}


# --- YAML round trip ---------------------------------------------------------------------


def test_roundtrip_through_the_browser_keeps_meaning_and_keys(project):
    config, server = project
    path = config.root / "workflows" / "roundtrip.yaml"
    original = load_workflow(path)
    graph, problems = server.open_workflow("workflows/roundtrip.yaml")
    assert problems == []
    # What the page sends back: the same JSON after JavaScript's number handling.
    back = as_javascript(json.loads(json.dumps(graph)))
    params = {n["id"]: n["params"] for n in back["nodes"]}
    assert params["const"]["value"] == {YAML_KEY: "5.0"}  # untyped: the text keeps 5.0 a float
    wf, problems = server.workflow_from_graph(back, config.session_dir("0" * 32))
    assert problems == []
    assert wf.path == path
    assert wf.nodes == original.nodes  # params, inputs (edges and literals), layout (incl. extra keys)
    assert wf.meta == original.meta
    assert keys_of(wf) == keys_of(original)
    text = dump_workflow(wf)
    reread = parse_workflow(text, path)
    assert keys_of(reread) == keys_of(original)
    assert yaml.safe_load(text)["nodes"]["data"]["layout"] == {"x": 10, "y": 20, "note": "keep me"}


def test_editor_changes_reach_the_yaml_and_layout_stays_out_of_keys(project):
    config, server = project
    graph, _ = server.open_workflow("workflows/small.yaml")
    for i, node in enumerate(graph["nodes"]):
        node["layout"] = {"x": 500 + 40 * i, "y": 7}
    wf, _ = server.workflow_from_graph(graph, config.session_dir("1" * 32))
    original = load_workflow(config.root / "workflows" / "small.yaml")
    assert keys_of(wf) == keys_of(original)  # only positions changed
    next(n for n in graph["nodes"] if n["id"] == "smooth")["params"]["window"] = 9
    wf2, _ = server.workflow_from_graph(graph, config.session_dir("1" * 32))
    k1, k2 = keys_of(wf), keys_of(wf2)
    assert k1["t"] == k2["t"] and k1["wave"] == k2["wave"]
    assert k1["smooth"] != k2["smooth"] and k1["stats"] != k2["stats"]
    assert yaml.safe_load(dump_workflow(wf2))["nodes"]["smooth"]["params"] == {"window": 9}


def test_bad_yaml_text_in_a_parameter_is_a_problem_on_that_node(project):
    config, server = project
    graph = {"path": None, "nodes": [{"id": "v", "type": "Value", "params": {"value": {YAML_KEY: "[1, 2"}}}]}
    _, problems = server.workflow_from_graph(graph, config.session_dir("2" * 32))
    assert len(problems) == 1 and problems[0].node_id == "v" and "value" in problems[0].message


def test_save_elsewhere_rewrites_relative_paths_and_keeps_keys(project):
    config, server = project
    graph, _ = server.open_workflow("workflows/roundtrip.yaml")
    dest, text, moved = server.save(graph, "workflows/sub/moved.yaml", config.session_dir("3" * 32))
    assert dest == config.root / "workflows" / "sub" / "moved.yaml"
    assert sorted(moved) == ["data.path", "save.path"]
    saved = yaml.safe_load(dest.read_text())
    assert saved["nodes"]["data"]["params"]["path"] == "../../assets/ramp.npy"
    moved_wf = load_workflow(dest)
    # The same files as before, seen from the new folder.
    assert (moved_wf.base_dir / "../../assets/ramp.npy").resolve() == config.root / "assets" / "ramp.npy"
    assert (moved_wf.base_dir / moved_wf.nodes["save"].params["path"]).resolve() == \
        config.root / "workflows" / "out" / "smoothed.npy"
    # Nodes without file parameters keep their keys; the path text is itself a parameter, so
    # `data` (and what depends on it) gets new keys for the same file.
    original = load_workflow(config.root / "workflows" / "roundtrip.yaml")
    assert keys_of(moved_wf)["const"] == keys_of(original)["const"]


def test_rebase_leaves_absolute_paths_alone(project):
    config, _ = project
    wf = parse_workflow("version: 1\nnodes:\n  a: {type: LoadArray, params: {path: /abs/x.npy}}\n",
                        config.root / "workflows" / "x.yaml")
    assert rebase_paths(wf, registry(), config.root) == []


def test_yaml_endpoint_dumps_what_the_editor_shows(client):
    graph = client.get("/talkgraph/workflow", params={"path": "workflows/small.yaml"}).json()["graph"]
    text = client.post("/talkgraph/yaml", json=as_javascript(graph)).json()["yaml"]
    doc = yaml.safe_load(text)
    assert doc["nodes"]["t"]["params"] == {"start": 0.0, "stop": 6.28, "num": 64}
    assert isinstance(doc["nodes"]["t"]["params"]["start"], float)
    assert doc["nodes"]["wave"]["inputs"] == {"x": "t.array"}


# --- allowed roots, uploads, plugins -------------------------------------------------------


@pytest.mark.parametrize("path", [
    "../outside.yaml", "workflows/../../outside.yaml", "/etc/passwd", "workflows/../plugins/wobble.py",
    "assets/../../x.yaml", "workflows/small.yaml\x00.png",
])
def test_workflow_paths_outside_the_roots_are_refused(client, path):
    r = client.get("/talkgraph/workflow", params={"path": path})
    assert r.status_code == 403, r.text


def test_allowed_roots_rule(project, tmp_path):
    config, _ = project
    assert config.check("workflows/small.yaml") == config.root / "workflows" / "small.yaml"
    assert config.is_allowed("assets/ramp.npy")
    mine, theirs = config.session_dir("a" * 32), config.session_dir("b" * 32)
    assert config.is_allowed(mine / "x.npy", session_dir=mine)
    assert not config.is_allowed(theirs / "x.npy", session_dir=mine)  # uploads are per session
    assert not config.is_allowed(mine / "x.npy")
    (theirs / "w.yaml").write_text("version: 1\nnodes: {}\n")
    with pytest.raises(PathNotAllowed):
        config.check_workflow_path(theirs / "w.yaml", mine)
    assert config.check_workflow_path(theirs / "w.yaml", theirs) == theirs / "w.yaml"
    assert not config.is_allowed("plugins/wobble.py")
    assert not config.is_allowed("workflows/../plugins/wobble.py")
    outside = tmp_path.parent / "elsewhere.txt"
    assert not config.is_allowed(outside)
    # A symlink inside a root that points outside it is outside.
    os.symlink(tmp_path / "plugins", config.root / "assets" / "link")
    assert not config.is_allowed("assets/link/wobble.py")
    with pytest.raises(PathNotAllowed):
        config.check_workflow_path("assets/ramp.npy")  # not a workflow
    with pytest.raises(PathNotAllowed):
        config.session_dir("../../etc")


def test_run_refuses_files_outside_the_roots(project):
    config, server = project
    graph = {"path": None, "nodes": [
        {"id": "load", "type": "LoadArray", "params": {"path": str(config.root / "plugins" / "wobble.py")}},
        {"id": "save", "type": "SaveArray", "params": {"path": "/tmp/elsewhere.npy"}, "inputs": {"array": {"node": "load", "port": "array"}}},
    ]}
    run, problems = server.start_run(graph, config.session_dir("4" * 32))
    assert run is None
    assert {p.node_id for p in problems if p.kind == "path-root" and "outside" in p.message} == {"load", "save"}


@pytest.mark.parametrize("name,expected", [
    ("../../evil.py", "evil.py"), ("..\\..\\win.WAV", "win.wav"), (".hidden", "hidden"),
    ("a b/c d.mp4", "c_d.mp4"), ("", "upload"), ("ünïcode.png", "unicode.png"), ("x" * 300 + ".npy", "x" * 80 + ".npy"),
])
def test_safe_filename(name, expected):
    assert safe_filename(name) == expected


def test_upload_goes_to_the_session_folder_with_a_safe_name(client, project):
    config, _ = project
    r = client.post("/talkgraph/upload", files={"file": ("../../../evil name.npy", io.BytesIO(b"abc"))})
    assert r.status_code == 200, r.text
    stored = Path(r.json()["path"])
    sid = client.cookies.get("talkgraph_session")
    assert stored == config.session_dir(sid) / "evil_name.npy" and stored.read_bytes() == b"abc"
    assert sid not in str(stored)  # the folder is named by an HMAC of the session id, not the id
    # the same bytes again: the same file (parameters, and so keys, stay the same)
    again = client.post("/talkgraph/upload", files={"file": ("evil name.npy", io.BytesIO(b"abc"))}).json()["path"]
    assert Path(again) == stored
    other = client.post("/talkgraph/upload", files={"file": ("evil name.npy", io.BytesIO(b"xyz"))}).json()["path"]
    assert Path(other) != stored and Path(other).parent == stored.parent


def test_every_browser_gets_its_own_session_cookie(project):
    config, server = project
    app = create_app(config, server=server)
    with browser_client(app, config) as a, browser_client(app, config) as b:
        a.get("/talkgraph/workflows")
        b.get("/talkgraph/workflows")
        assert a.cookies.get("talkgraph_session") != b.cookies.get("talkgraph_session")
        assert len(a.cookies.get("talkgraph_session")) == 32


def test_plugins_come_only_from_the_server_configuration(project):
    config, server = project
    # A graph naming a plugin file and a node type it would define changes nothing.
    graph = {"path": None, "plugins": [str(config.root / "plugins")], "nodes": [
        {"id": "x", "type": "NotRegistered", "params": {}, "inputs": {}}]}
    before = server.registry.names()
    _, problems = server.check(graph, config.session_dir("5" * 32))
    assert server.registry.names() == before
    assert any(p.node_id == "x" and p.kind == "unknown-type" for p in problems)
    app = create_app(config, server=server)
    assert not [r.path for r in app.routes if "plugin" in getattr(r, "path", "")]


def test_workflow_list_and_open(client):
    assert client.get("/talkgraph/workflows").json() == [
        "workflows/roundtrip.yaml", "workflows/small.yaml", "workflows/sub/copy.yaml", "workflows/unknown.yaml"]
    graph = client.get("/talkgraph/workflow", params={"path": "workflows/small.yaml"}).json()["graph"]
    assert [n["id"] for n in graph["nodes"]] == ["t", "wave", "smooth", "stats"]
    assert all(n["pos"] is None for n in graph["nodes"])  # no positions in the file: the editor lays them out
    graph = client.get("/talkgraph/workflow", params={"path": "workflows/roundtrip.yaml"}).json()["graph"]
    assert next(n for n in graph["nodes"] if n["id"] == "data")["pos"] == [10, 20]


# --- previews ------------------------------------------------------------------------------


def test_previews_pick_a_fitting_view():
    ok = lambda p: True  # noqa: E731
    frames = np.zeros((30, 8, 8, 3), np.uint8)
    p = preview_value(frames, {"Frames", "Array"}, ok)
    assert p.kind == "images" and len(p.images) == 8 and p.images[0][0].shape == (8, 8, 3)
    flow = np.zeros((2, 4, 4, 2), np.float32)
    flow[..., 0] = 1.0
    p = preview_value(flow, {"FlowField", "Array"}, ok)
    assert p.kind == "images" and p.images[0][0].dtype == np.uint8 and p.images[0][0].shape == (4, 4, 3)
    assert preview_value(np.zeros((10, 3)), {"Array"}, ok).kind == "plot"
    assert preview_value({"psnr": 30.0, "ssim": 0.9}, {"Metrics"}, ok).kind == "bars"
    assert preview_value("not a file.txt", {"Path"}, ok).kind == "json"


def test_a_streamed_sequence_is_previewed_from_the_frames_shown_only(monkeypatch):
    import ui.preview
    from graphcore.stream import Chunks

    frames = (np.arange(600, dtype=np.uint32)[:, None, None, None] * 7 + np.zeros((1, 6, 5, 3), np.uint32)).astype(np.uint8)
    read: list[tuple[int, int]] = []

    def rows(a: int, b: int) -> np.ndarray:
        read.append((a, b))
        return frames[a:b].copy()

    monkeypatch.setattr(ui.preview, "LAZY_WHOLE_BYTES", 0)  # (600 small frames would be read whole)
    lazy = preview_value(Chunks(frames.shape, frames.dtype, 50, rows), {"Frames", "Array"}, lambda p: True)
    whole = preview_value(frames, {"Frames", "Array"}, lambda p: True)
    assert [label for _, label in lazy.images] == [label for _, label in whole.images]  # the same frame numbers
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(lazy.images, whole.images))
    assert sum(b - a for a, b in read) <= 8 * 50  # at most the chunks holding the 8 frames shown, never all 600
    assert "shape (600, 6, 5, 3)" in lazy.summary and "in the frames shown" in lazy.summary


def test_audio_preview_plays_through_gradio():
    import dataclasses

    import gradio as gr

    @dataclasses.dataclass
    class Clip:
        samples: np.ndarray
        sample_rate: int

    p = preview_value(Clip(np.sin(np.linspace(0, 100, 1600)).astype(np.float32), 16000), {"Audio"}, lambda _: True)
    assert p.kind == "audio" and p.audio[0] == 16000
    assert gr.Audio().postprocess(p.audio) is not None  # the player accepts it


def test_video_preview_respects_the_roots(tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\0")
    assert preview_value(str(video), {"Path"}, lambda p: True).kind == "video"
    refused = preview_value(str(video), {"Path"}, lambda p: False)
    assert refused.kind == "json" and "outside" in refused.summary


def test_flow_colour_coding_direction_and_magnitude():
    flow = np.zeros((1, 1, 4, 2), np.float32)
    flow[0, 0] = [[1, 0], [0, 1], [-1, 0], [0, 0]]
    rgb = flow_to_rgb(flow, max_magnitude=1.0)[0, 0]
    assert len({tuple(c) for c in rgb[:3]}) == 3  # three directions, three hues
    assert tuple(rgb[3]) == (0, 0, 0)  # no motion is black


# --- the CLI and runs ----------------------------------------------------------------------


def test_graphrun_ui_passes_its_options_to_the_editor(capsys):
    from graphcore.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["ui", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "graphrun ui" in out and "--plugins" in out and "127.0.0.1" in out


def test_run_from_the_editor_folds_events_into_node_states(project):
    config, server = project
    graph, _ = server.open_workflow("workflows/small.yaml")
    run, problems = server.start_run(graph, config.session_dir("6" * 32))
    assert problems == [] and run is not None
    assert run.wait(120)
    snap = run.snapshot()
    assert not snap["running"] and snap["ok"]
    assert {n: s["state"] for n, s in snap["nodes"].items()} == dict.fromkeys(["t", "wave", "smooth", "stats"], "done")
    assert run.outputs() == ["t.array", "wave.y", "smooth.y", "stats.metrics"]
    sdir = config.session_dir("6" * 32)
    assert server.preview(run, "stats.metrics", sdir).kind == "bars"
    assert server.preview(run, "smooth.y", sdir).kind == "plot"
    assert server.cache_info()["entries"] == 4
    again, _ = server.start_run(graph, config.session_dir("6" * 32))
    assert again.wait(120)
    assert {s["state"] for s in again.snapshot()["nodes"].values()} == {"cached"}
    assert server.clear_cache() == 4 and server.cache_info()["entries"] == 0


def test_progress_and_failures_in_the_node_states(project):
    from graphcore.events import Event

    config, server = project
    graph, _ = server.open_workflow("workflows/small.yaml")
    wf, _ = server.workflow_from_graph(graph, config.session_dir("7" * 32))
    from graphcore.validation import compile_workflow as compile_
    from ui.runs import Run

    run = Run(compile_(wf, server.registry), cache=None, plugin_paths=[], start=False)
    run.on_event(Event("started", "r", "smooth", "MovingAverage"))
    run.on_event(Event("progress", "r", "smooth", "MovingAverage", data={"i": 3, "n": 10, "message": "col"}))
    assert run.nodes["smooth"].to_json() == {"state": "running", "i": 3, "n": 10, "message": "col"}
    run.on_event(Event("failed", "r", "smooth", "MovingAverage", data={"error": "boom in frame 4"}))
    run.on_event(Event("skipped", "r", "stats", "Stats", data={"error": "upstream smooth failed"}))
    assert run.nodes["smooth"].state == "failed" and run.nodes["smooth"].error == "boom in frame 4"
    assert run.nodes["stats"].state == "skipped"
    assert any("boom in frame 4" in line for line in run.log)


def test_every_preview_kind_is_accepted_by_its_gradio_component(tmp_path):
    import dataclasses

    import gradio as gr

    from ui.blocks import PREVIEW_SLOTS, preview_updates

    @dataclasses.dataclass
    class Coeffs:  # a record with a curve-like field
        expression: np.ndarray
        image_size: tuple

    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\0")
    rng = np.random.default_rng(0)
    values = {
        "frames": (rng.integers(0, 255, (20, 16, 16, 3), dtype=np.uint8), {"Frames", "Array"}, "gallery"),
        "mask": (rng.random((3, 16, 16), dtype=np.float32), {"Mask", "Array"}, "gallery"),
        "flow": (rng.standard_normal((2, 16, 16, 2)).astype(np.float32), {"FlowField", "Array"}, "gallery"),
        "landmarks": (rng.random((4, 478, 2), dtype=np.float32) * 200, {"Landmarks", "Array"}, "gallery"),
        "curves": (rng.standard_normal((50, 6)), {"Array"}, "plot"),
        "heatmap": (rng.standard_normal((40, 80)), {"Array"}, "gallery"),
        "record": (Coeffs(rng.standard_normal((30, 33)).astype(np.float32), (64, 64)), {"MorphCoeffs"}, "plot"),
        "metrics": ({"psnr": 31.2, "ssim": 0.91}, {"Metrics"}, "bars"),
        "video": (str(video), {"Path"}, "video"),
        "other": ({"nested": [1, "a"]}, {"Dict"}, "json"),
    }
    components = {"video": gr.Video(), "gallery": gr.Gallery(), "plot": gr.LinePlot(x="x", y="value", color="series"),
                  "bars": gr.BarPlot(x="name", y="value"), "audio": gr.Audio(), "json": gr.JSON()}
    for name, (value, types, slot) in values.items():
        updates = dict(zip(PREVIEW_SLOTS, preview_updates(preview_value(value, types, lambda p: True))))
        assert updates[slot]["visible"] is True, name
        for shown, update in updates.items():
            if update.get("visible"):
                assert components[shown].postprocess(update["value"]) is not None, (name, shown)


def test_a_missing_editor_library_is_a_clear_error(tmp_path, monkeypatch, capsys):
    import ui.app

    monkeypatch.setattr(ui.app, "LITEGRAPH_DIR", tmp_path / "node_modules" / "litegraph.js")
    assert ui.app.main(["--root", str(tmp_path), "--upload-dir", str(tmp_path / "up")]) == 2
    assert "npm ci" in capsys.readouterr().err


# --- saving keeps the file's text --------------------------------------------------------------


SHIPPED = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "workflows").rglob("*.yaml"))


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """A copy of the repository's workflows (saving writes files), served as the editor serves them."""
    from ui.config import UIConfig

    root = tmp_path_factory.mktemp("shipped")
    shutil.copytree(ROOT / "workflows", root / "workflows")
    config = UIConfig.create(root, upload_dir=root / "uploads", cache_url=str(root / "cache"))
    return config, EditorServer(config)


@pytest.mark.parametrize("name", SHIPPED)
def test_saving_a_shipped_workflow_unchanged_is_a_no_op(shipped, name):
    config, server = shipped
    path = config.root / name
    before = path.read_bytes()
    graph, _ = server.open_workflow(name)
    back = as_javascript(json.loads(json.dumps(graph)))  # what the page sends back, untouched
    dest, text, moved = server.save(back, name, config.session_dir("9" * 32))
    assert moved == [] and path.read_bytes() == before


def test_an_edit_changes_only_its_own_line(shipped):
    import difflib

    config, server = shipped
    name = "workflows/hdtf.yaml"
    before = (config.root / name).read_text()
    graph, _ = server.open_workflow(name)
    graph = as_javascript(json.loads(json.dumps(graph)))
    node = next(n for n in graph["nodes"] if n["id"] == "video")
    node["params"]["chunk"] = 4
    graph["layout"] = {"groups": [{"title": "audio", "bounding": [0, 0, 400, 300]}]}
    server.save(graph, name, config.session_dir("9" * 32))
    after = (config.root / name).read_text()
    changed = [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
               if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert changed == [
        "-    params: {checkpoint: ../assets/checkpoints/hdtf_flow_video_tiny.pt, matting: true, chunk: 8}",
        "+    params: {checkpoint: ../assets/checkpoints/hdtf_flow_video_tiny.pt, matting: true, chunk: 4}",
        "+layout:", "+  groups:", "+    - title: audio", "+      bounding: [0, 0, 400, 300]",
    ]
    assert load_workflow(config.root / name).layout == {"groups": [{"title": "audio", "bounding": [0, 0, 400, 300]}]}
    assert "# " not in before or all(line in after for line in before.splitlines() if line.lstrip().startswith("#"))


# --- the run queue, previews on nodes -----------------------------------------------------------


SLOW = {"path": None, "nodes": [
    {"id": "t", "type": "Range", "params": {"num": 8}, "inputs": {}},
    {"id": "slow", "type": "Slow", "params": {"steps": 100, "delay": 0.05}, "inputs": {"x": {"node": "t", "port": "array"}}},
]}


def test_runs_queue_in_order_and_cancel_stops_at_a_progress_point(project):
    config, server = project
    mine, theirs = config.session_dir("c" * 32), config.session_dir("d" * 32)
    first, _ = server.start_run(SLOW, mine)
    second, _ = server.start_run(SLOW, mine)
    other, _ = server.start_run({"path": None, "nodes": SLOW["nodes"][:1]}, theirs)
    deadline = time.time() + 60
    while first.snapshot()["nodes"]["slow"].get("i", 0) < 3:
        assert time.time() < deadline
        time.sleep(0.05)
    assert second.waiting and other.waiting and server.queue.ahead_of(other) == 2
    assert "waiting" in server.queue.describe() and "running" in server.queue.describe()
    cancelled = server.cancel_runs(mine)  # the running one and the waiting one, not another page's
    assert set(cancelled) == {first, second}
    assert first.wait(30) and second.wait(30) and other.wait(60)
    snap = first.snapshot()
    assert snap["cancelled"] and snap["nodes"]["slow"]["state"] == "cancelled" and snap["nodes"]["slow"]["i"] < 100
    assert snap["nodes"]["t"]["state"] == "done"
    assert {s["state"] for s in second.snapshot()["nodes"].values()} == {"cancelled"}
    assert other.snapshot()["ok"]  # ran after the cancelled ones, from the cache
    assert other.snapshot()["nodes"]["t"]["state"] == "cached"


def test_thumbnails_read_only_the_rows_they_show(tmp_path):
    from graphcore.cache import CacheStore
    from graphcore.types import TYPES
    from ui.thumbnails import read_output, thumbnail

    pytest.importorskip("nodes.types")  # registers Frames
    frames_type = TYPES.get("Frames")
    cache = CacheStore(str(tmp_path / "cache"))
    frames = np.zeros((120, 32, 48, 3), np.uint8)
    frames[:, :, :, 0] = np.arange(120, dtype=np.uint8)[:, None, None]
    with cache.writer("k" * 64) as w:
        w.save("frames", frames_type, frames)
        w.commit({"node_id": "n", "node_type": "T"})

    class NoWholeLoads:  # the cache, minus whole-entry reads
        def __getattr__(self, name):
            if name == "load":
                raise AssertionError("a thumbnail read the whole entry")
            return getattr(cache, name)

    value, total = read_output(NoWholeLoads(), "k" * 64, "frames", frames_type)
    assert total == 120 and value.shape == (3, 32, 48, 3)
    assert [int(f[0, 0, 0]) for f in value] == [0, 60, 119]  # first, middle, last
    thumb = thumbnail(value, TYPES.ancestors("Frames"), lambda p: True, total)
    assert thumb["kind"] == "image" and thumb["src"].startswith("data:image/png;base64,")
    assert thumb["label"] == "120 frames, 48×32"


def test_morph_coeffs_preview_plots_expression_and_pose_over_time():
    import dataclasses

    from ui.thumbnails import thumbnail

    @dataclasses.dataclass
    class Coeffs:  # the fields of nodes.types.MorphCoeffs (ui never imports nodes)
        shape: np.ndarray
        expression: np.ndarray
        pose: np.ndarray
        error: np.ndarray
        image_size: tuple

    t = np.linspace(0, 6, 40)[:, None]
    value = Coeffs(np.linspace(-1, 1, 60), np.sin(t * np.arange(33)), np.cos(t * np.arange(6)), np.zeros(40), (64, 64))
    p = preview_value(value, {"MorphCoeffs"}, lambda p: True)
    assert p.kind == "plot"
    series = {name.split("[")[0] for name in p.curves}
    assert series == {"expression", "pose"}  # not the identity (shape) vector, not the all-zero error
    assert all(len(c) == 40 for c in p.curves.values()) and len([n for n in p.curves if n.startswith("expression")]) == 8
    thumb = thumbnail(value, {"MorphCoeffs"}, lambda p: True)
    assert [panel["title"] for panel in thumb["panels"]] == ["expression", "pose"]


def test_a_float_parameter_written_as_an_integer_is_not_a_change(project):
    _, server = project
    assert server.param_equal("RandomArray", "scale", 2, 2.0)  # typed float: one value
    assert not server.param_equal("Value", "value", 5, 5.0)  # untyped: two values (two cache keys)
    assert not server.param_equal("MovingAverage", "window", 5, 7)
