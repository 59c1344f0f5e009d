"""`graphrun ui`: the node editor as a local web app (Gradio mounted in a FastAPI app).

    graphrun ui [WORKFLOW] [--host 127.0.0.1] [--port 7860] [--plugins PATH]... [--data DIR]...
                [--cache URL] [--root DIR] [--upload-dir DIR]

Besides the Gradio page, the app serves:
- /talkgraph/lib/...      the editor library (litegraph.js) from ui/node_modules, installed by
                          `npm ci` in ui/ (never copied into the repository), so the page works offline;
- /talkgraph/static/...   the editor's own JS and CSS (ui/static);
- /talkgraph/schema       nodes, port types (with the engine's `connects_to`) and parameter widgets;
- /talkgraph/workflows, /talkgraph/workflow?path=, POST /talkgraph/yaml: listing, reading and
                          dumping workflows (the same operations the page's buttons use);
- POST /talkgraph/upload  a file for a file parameter, stored in the session's upload folder.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home: the app must work offline

# At module level: FastAPI resolves the routes' (string) annotations in this module's namespace.
from fastapi import FastAPI, HTTPException, Request, UploadFile

UI_DIR = Path(__file__).parent
LITEGRAPH_DIR = UI_DIR / "node_modules" / "litegraph.js"


class EditorLibraryMissing(RuntimeError):
    pass


def litegraph_dir() -> Path:
    if not (LITEGRAPH_DIR / "build" / "litegraph.core.js").is_file():
        raise EditorLibraryMissing(
            f"the editor library is not installed ({LITEGRAPH_DIR} is missing): run `make npm` "
            "or `cd ui && npm ci` once (it installs the pinned litegraph.js from the npm registry)"
        )
    return LITEGRAPH_DIR


class SessionCookieMiddleware:
    """Gives every browser a random session id (cookie), which names its upload folder.
    Set on the request too, so the very first request already has its session."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        from .config import SESSION_COOKIE, new_session_id, valid_session_id

        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = b"; ".join(v for k, v in scope["headers"] if k == b"cookie").decode("latin-1")
        jar = SimpleCookie()
        try:
            jar.load(raw)
        except Exception:
            jar = SimpleCookie()
        current = jar.get(SESSION_COOKIE)
        if current is not None and valid_session_id(current.value):
            await self.app(scope, receive, send)
            return
        sid = new_session_id()
        cookie = f"{SESSION_COOKIE}={sid}".encode()
        headers = [(k, v) for k, v in scope["headers"] if k != b"cookie"]
        headers.append((b"cookie", (raw + "; " if raw else "").encode("latin-1") + cookie))
        scope = {**scope, "headers": headers}

        async def send_with_cookie(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"set-cookie", cookie + b"; Path=/; HttpOnly; SameSite=Strict")]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def create_app(config: Any, initial: str | None = None, server: Any = None) -> Any:
    """The FastAPI app with the editor mounted at /."""
    import gradio as gr
    from fastapi.staticfiles import StaticFiles

    from graphcore.workflow import WorkflowError

    from .blocks import build_blocks
    from .config import SESSION_COOKIE, PathNotAllowed
    from .graphjson import GraphError
    from .server import EditorServer, problem_json

    server = server or EditorServer(config)
    app = FastAPI(title="talkgraph editor", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(SessionCookieMiddleware)
    app.mount("/talkgraph/lib", StaticFiles(directory=litegraph_dir()), name="talkgraph-lib")
    app.mount("/talkgraph/static", StaticFiles(directory=UI_DIR / "static"), name="talkgraph-static")

    def sdir(request: Request) -> Path:
        try:
            return config.session_dir(request.cookies.get(SESSION_COOKIE, ""))
        except PathNotAllowed as exc:
            raise HTTPException(400, str(exc)) from None

    @app.get("/talkgraph/schema")
    def schema() -> dict[str, Any]:
        return server.schema()

    @app.get("/talkgraph/workflows")
    def workflows() -> list[str]:
        return config.workflow_files()

    @app.get("/talkgraph/workflow")
    def workflow(path: str, request: Request) -> dict[str, Any]:
        try:
            graph, problems = server.open_workflow(path, sdir(request))
        except PathNotAllowed as exc:
            raise HTTPException(403, str(exc)) from None
        except WorkflowError as exc:
            raise HTTPException(422, {"problems": [problem_json(p) for p in exc.problems]}) from None
        return {"graph": graph, "problems": [problem_json(p) for p in problems]}

    @app.post("/talkgraph/yaml")
    async def to_yaml(request: Request) -> dict[str, Any]:
        try:
            return {"yaml": server.to_yaml(await request.json(), sdir(request))}
        except (GraphError, ValueError) as exc:
            raise HTTPException(400, str(exc)) from None
        except PathNotAllowed as exc:
            raise HTTPException(403, str(exc)) from None
        except WorkflowError as exc:
            raise HTTPException(422, {"problems": [problem_json(p) for p in exc.problems]}) from None

    @app.post("/talkgraph/upload")
    def upload(request: Request, file: UploadFile) -> dict[str, Any]:
        try:
            stored = server.save_upload(sdir(request), file.filename or "upload", file.file)
        except ValueError as exc:
            raise HTTPException(413, str(exc)) from None
        return {"path": str(stored), "name": stored.name}

    blocks = build_blocks(server, initial)
    return gr.mount_gradio_app(
        app, blocks, path="/",
        allowed_paths=[str(r) for r in [*config.allowed_roots(), config.upload_dir]],  # session folders: random names
        footer_links=[], theme=gr.themes.Default(),
        max_file_size=config.max_upload_bytes,
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="graphrun ui", description="Open the node editor in the browser.")
    p.add_argument("workflow", nargs="?", help="a workflow under workflows/ to open at start")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--plugins", action="append", default=[], metavar="PATH",
                   help="extra node plugin file or folder (repeatable; also $GRAPHRUN_PLUGINS)")
    p.add_argument("--data", action="append", default=[], metavar="DIR",
                   help="another folder the editor may read files from (repeatable)")
    p.add_argument("--cache", default=None, metavar="URL", help="cache location (default $GRAPHRUN_CACHE or the user cache)")
    p.add_argument("--root", default=None, help="project folder holding workflows/, assets/, out/ (default: the current folder)")
    p.add_argument("--upload-dir", default=None, help="where uploads are kept, one folder per browser session")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Open the node editor (Gradio) in the browser."""
    args = parse_args(argv)
    from .config import UIConfig

    config = UIConfig.create(args.root, data_dirs=args.data, upload_dir=args.upload_dir, cache_url=args.cache,
                             plugin_paths=args.plugins)
    try:
        app = create_app(config, args.workflow)
    except EditorLibraryMissing as exc:
        print(f"graphrun ui: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    print(f"talkgraph editor: http://{args.host}:{args.port}/  (Ctrl-C to stop)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
