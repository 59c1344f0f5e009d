"""The editor's HTTP surface, attacked the way another site or another local user would: a
real server on 127.0.0.1 (uvicorn in a thread) and plain HTTP requests, one test per hole of
issue 17. Each of these tests failed against the editor before the fix (see the issue's note)."""
from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from ui_testkit import make_project

from ui.app import create_app

pytestmark = pytest.mark.timeout(300)


class Live:
    def __init__(self, url: str, config: Any, token: str | None) -> None:
        self.url, self.config, self.token = url, config, token
        self.host = url.split("//", 1)[1].rstrip("/")

    def client(self, *, login: bool = True, **kw: Any) -> httpx.Client:
        """A browser-like client: with the launch token it opens the printed URL first (which
        sets its cookie), as a user clicking the link would."""
        c = httpx.Client(base_url=self.url, timeout=60, **kw)
        if login:
            c.get("/", params={"token": self.token} if self.token else None)
        return c


@pytest.fixture()
def live(tmp_path):
    config = make_project(tmp_path / "project")
    app = create_app(config)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started:
        assert thread.is_alive() and time.time() < deadline, "the editor did not start"
        time.sleep(0.05)
    yield Live(f"http://127.0.0.1:{port}", config, getattr(config, "token", None))
    server.should_exit = True
    thread.join(30)


def call(client: httpx.Client, api: str, *data: Any) -> tuple[str, Any]:
    """Call a Gradio endpoint the way its API documents it; (last SSE event, its data)."""
    r = client.post(f"/gradio_api/call/{api}", json={"data": list(data)})
    if r.status_code != 200:
        return f"http {r.status_code}", r.text
    event, payload = "", None
    with client.stream("GET", f"/gradio_api/call/{api}/{r.json()['event_id']}") as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                text = line.split(":", 1)[1].strip()
                try:
                    payload = json.loads(text)
                except json.JSONDecodeError:
                    payload = text
    return event, payload


def graph_json(*nodes: dict) -> str:
    return json.dumps({"path": None, "description": "", "nodes": list(nodes)})


def everything_under(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file() and p.stat().st_size < 1 << 20)


# --- the token ------------------------------------------------------------------------------


def test_every_endpoint_needs_the_launch_token(live):
    anonymous = live.client(login=False)
    for path in ("/", "/talkgraph/schema", "/talkgraph/workflows", "/gradio_api/info", "/config",
                 "/talkgraph/static/editor.js"):
        assert anonymous.get(path).status_code in (401, 403), path
    assert anonymous.get("/", params={"token": "not-the-token"}).status_code in (401, 403)
    assert live.token and len(live.token) >= 32
    user = live.client()
    assert user.get("/").status_code == 200 and "talkgraph" in user.get("/").text
    assert user.get("/talkgraph/workflows").status_code == 200
    # scripts may send it as a header instead of a cookie
    assert anonymous.get("/talkgraph/workflows", headers={"X-TalkGraph-Token": live.token}).status_code == 200


def test_clear_cache_needs_the_token_and_a_confirmation(live):
    user = live.client()
    event, _ = call(user, "run", graph_json({"id": "t", "type": "Range", "params": {"num": 8}, "inputs": {}}))
    assert event == "complete"
    cache_dir = Path(live.config.cache_url)
    entries = lambda: len(list((cache_dir / "refs").glob("*")))  # noqa: E731
    assert entries() == 1
    assert call(live.client(login=False), "clear_cache", "")[0].startswith("http 40")
    assert entries() == 1
    event, data = call(user, "clear_cache", "")  # no confirmation from the page
    assert entries() == 1, (event, data)
    event, data = call(user, "clear_cache", "confirmed")
    assert event == "complete" and entries() == 0, data


# --- files crossing the HTTP boundary ---------------------------------------------------------


def test_a_gradio_filedata_path_cannot_name_a_file_on_the_server(live, tmp_path):
    secret = tmp_path / "private" / "notes.yaml"
    secret.parent.mkdir()
    secret.write_text("version: 1\nnodes:\n  my_private_node: {type: Range}\n")
    user = live.client()
    event, data = call(user, "upload_yaml", {"path": str(secret), "meta": {"_type": "gradio.FileData"}})
    assert "my_private_node" not in json.dumps(data), data
    assert "my_private_node" not in everything_under(live.config.upload_dir)


def test_files_are_not_served_without_the_token(live):
    known = live.config.root / "workflows" / "small.yaml"
    anonymous = live.client(login=False)
    for url in (f"/gradio_api/file={known}", f"/file={known}"):
        r = anonymous.get(url)
        assert r.status_code in (401, 403) and "Range" not in r.text, url


def test_uploads_are_private_to_their_session_and_their_paths_name_no_session_id(live):
    alice, bob = live.client(), live.client()
    r = alice.post("/talkgraph/upload", files={"file": ("portrait.npy", b"alice's bytes")})
    assert r.status_code == 200, r.text
    stored = r.json()["path"]
    assert alice.cookies.get("talkgraph_session") not in stored  # the path (and a saved YAML) leaks no session id
    assert alice.get(f"/gradio_api/file={stored}").status_code == 200
    assert bob.get(f"/gradio_api/file={stored}").status_code in (401, 403, 404)
    # nor through the editor's own routes: another session's folder is outside bob's roots
    folder = str(Path(stored).parent)
    assert bob.get("/talkgraph/workflow", params={"path": f"{folder}/x.yaml"}).status_code == 403


def test_path_parameters_outside_the_roots_are_problems(live, tmp_path):
    user = live.client()
    nodes = [
        {"id": "train", "type": "TrainAnimationGenerator", "params": {"work_dir": str(tmp_path / "anywhere")},
         "inputs": {"dataset": {"node": "synth", "port": "dataset"}}},
        {"id": "synth", "type": "MakeSyntheticDataset", "params": {"path": "../out/synth.zarr"}, "inputs": {}},
        {"id": "yi", "type": "TrainAudioToExpressionPose", "params": {}, "inputs": {"dataset": {"$yaml": "/etc"}}},
        {"id": "a2h", "type": "EvaluateAudio2Head", "params": {"figures_dir": "/tmp/figures"},
         "inputs": {"dataset": {"node": "synth", "port": "dataset"}}},
    ]
    event, data = call(user, "check", graph_json(*nodes))
    assert event == "complete", data
    problems = {(p["node_id"], p["message"].split(":")[0]) for p in data[0]["problems"] if "outside" in p["message"]}
    assert {("train", "param 'work_dir'"), ("yi", "input 'dataset'"), ("a2h", "param 'figures_dir'")} <= problems


def test_relative_paths_of_an_untitled_workflow_resolve_in_the_workflow_folder(live):
    user = live.client()
    nodes = [{"id": "t", "type": "Range", "params": {"num": 4}, "inputs": {}},
             {"id": "save", "type": "SaveArray", "params": {"path": "untitled_out.npy"},
              "inputs": {"array": {"node": "t", "port": "array"}}}]
    event, data = call(user, "run", graph_json(*nodes))
    assert event == "complete", data
    assert (live.config.root / "workflows" / "untitled_out.npy").is_file()
    assert not list(live.config.upload_dir.rglob("untitled_out.npy"))


# --- other sites -------------------------------------------------------------------------------


def test_a_foreign_host_header_is_refused(live):
    """DNS rebinding: a page on attacker.example whose name now resolves to 127.0.0.1."""
    user = live.client()
    port = live.url.rsplit(":", 1)[1]
    for host in (f"attacker.example:{port}", "attacker.example"):
        r = user.get("/talkgraph/workflows", headers={"Host": host})
        assert r.status_code in (400, 403) and "small.yaml" not in r.text, host
    assert user.get("/talkgraph/workflows", headers={"Host": f"localhost:{port}"}).status_code == 200


def test_a_cross_site_upload_is_refused(live):
    before = sorted(p.name for p in live.config.upload_dir.rglob("*") if p.is_file())
    for client in (live.client(login=False), live.client()):  # a page elsewhere may even ride on the cookie
        r = client.post("/talkgraph/upload", files={"file": ("evil.npy", b"x" * 1000)},
                        headers={"Origin": "http://attacker.example"})
        assert r.status_code in (401, 403), r.text
    assert sorted(p.name for p in live.config.upload_dir.rglob("*") if p.is_file()) == before
    # the editor's own page may
    same = live.client().post("/talkgraph/upload", files={"file": ("fine.npy", b"x")}, headers={"Origin": live.url})
    assert same.status_code == 200
