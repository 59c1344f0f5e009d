"""`graphrun ui`: the node editor as a local web app (Gradio mounted in a FastAPI app).

    graphrun ui [WORKFLOW] [--host 127.0.0.1] [--port 7860] [--plugins PATH]... [--data DIR]...
                [--cache URL] [--root DIR] [--upload-dir DIR] [--allow-host NAME]...

Who may use it: every request needs the per-launch token printed with the URL at start
(`http://127.0.0.1:7860/?token=...`, like Jupyter; opening that URL keeps the token in an
HttpOnly, SameSite=Strict cookie), must name the app by an allowed host (loopback names unless
`--allow-host`; DNS rebinding sends another name) and, when the browser says where it comes
from (Origin, Sec-Fetch-Site), come from the editor's own page. Files Gradio serves
(`/gradio_api/file=`) must lie in the caller's allowed roots or Gradio's own private folder.

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
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse

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


LOGIN_PAGE = """<!doctype html><meta charset="utf-8"><title>talkgraph editor</title>
<body style="font:15px system-ui;margin:3em;max-width:40em;color:#222">
<h2>talkgraph editor</h2>
<p>This editor opens only with its secret link: the URL that <code>graphrun ui</code> printed in its
terminal when it started (<code>http://…/?token=…</code>). Open that link, or paste the token here.</p>
<form method="get" action="./"><input name="token" size="48" autofocus> <button>Open</button></form>
</body>"""
FILE_ROUTES = ("/gradio_api/file=", "/file=")


def _cookies(scope: dict) -> SimpleCookie:
    raw = b"; ".join(v for k, v in scope["headers"] if k == b"cookie").decode("latin-1")
    jar = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:
        jar = SimpleCookie()
    return jar


class GuardMiddleware:
    """Refuses, before anything else runs: a Host header that is not an allowed name, a request
    another site sent (Origin or Sec-Fetch-Site), a request without the launch token, and a file
    request for a path outside the caller's roots. `?token=` on a page URL sets the token cookie
    and redirects to the same URL without it."""

    def __init__(self, app: Any, config: Any) -> None:
        self.app, self.config = app, config

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        from urllib.parse import parse_qs, urlencode, urlsplit

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope.get("method", "GET")
        host = headers.get("host", "")
        if not self.config.host_allowed(host):
            await self._refuse(scope, receive, send, 403, f"unknown host {host!r}: this editor answers to "
                               f"{', '.join(self.config.allowed_hosts)} (add a name with --allow-host)")
            return
        origin = headers.get("origin")
        if origin is not None and (origin == "null" or urlsplit(origin).netloc.lower() != host.lower()):
            await self._refuse(scope, receive, send, 403, "cross-origin requests are refused")
            return
        site = headers.get("sec-fetch-site", "")
        navigation = method == "GET" and headers.get("sec-fetch-mode") == "navigate"
        if site in ("cross-site", "same-site") and not navigation:
            await self._refuse(scope, receive, send, 403, "requests from other sites are refused")
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        given = (query.get("token") or [None])[0]
        if given is not None and self.config.token_ok(given) and method == "GET" and scope["type"] == "http":
            rest = {k: v for k, v in query.items() if k != "token"}
            target = scope.get("root_path", "") + scope["path"] + ("?" + urlencode(rest, doseq=True) if rest else "")
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(self.config.auth_cookie, self.config.token, httponly=True, samesite="strict", path="/")
            await response(scope, receive, send)
            return
        auth = headers.get("authorization", "")
        presented = [headers.get("x-talkgraph-token"), auth[6:].strip() if auth.lower().startswith("token ") else None]
        cookie = _cookies(scope).get(self.config.auth_cookie)
        presented.append(cookie.value if cookie is not None else None)
        if not any(self.config.token_ok(t) for t in presented):
            if method == "GET" and "text/html" in headers.get("accept", "") and scope["type"] == "http":
                await HTMLResponse(LOGIN_PAGE, status_code=401)(scope, receive, send)
            else:
                await self._refuse(scope, receive, send, 401, "this editor needs its token (see the URL printed at start)")
            return
        path = scope["path"]
        for prefix in FILE_ROUTES:
            if path.startswith(prefix) and not self._file_allowed(path[len(prefix):], scope):
                await self._refuse(scope, receive, send, 403, "this file is outside the folders this session may read")
                return
        await self.app(scope, receive, send)

    def _file_allowed(self, raw: str, scope: dict) -> bool:
        """Gradio's own (private, per-app) folder, or the caller's allowed roots; never a URL."""
        from urllib.parse import unquote

        from .config import SESSION_COOKIE, valid_session_id

        text = unquote(raw)
        if "://" in text:
            return False
        sid = _cookies(scope).get(SESSION_COOKIE)
        session = self.config.session_dir(sid.value) if sid is not None and valid_session_id(sid.value) else None
        return self.config.is_allowed(text, session_dir=session) or self.config.is_allowed(
            text, roots=[self.config.gradio_dir.resolve()])

    @staticmethod
    async def _refuse(scope: dict, receive: Any, send: Any, status: int, message: str) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        response = JSONResponse({"detail": message}, status_code=status) if scope["path"].startswith(
            ("/gradio_api", "/talkgraph", "/config")) else PlainTextResponse(message, status_code=status)
        await response(scope, receive, send)


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
        current = _cookies(scope).get(SESSION_COOKIE)
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

    # Gradio keeps uploads and served copies here: a private folder of this app, not the shared /tmp/gradio.
    os.environ["GRADIO_TEMP_DIR"] = str(config.gradio_dir)
    server = server or EditorServer(config)
    app = FastAPI(title="talkgraph editor", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.token = config.token
    app.add_middleware(SessionCookieMiddleware)
    app.add_middleware(GuardMiddleware, config=config)  # added last: runs first
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
    mounted = gr.mount_gradio_app(
        app, blocks, path="/",
        # What Gradio may copy into its cache and serve; GuardMiddleware narrows serving to the caller's session.
        allowed_paths=[str(r) for r in [*config.allowed_roots(), config.upload_dir]],
        footer_links=[], theme=gr.themes.Default(),
        max_file_size=config.max_upload_bytes,
    )
    # Gradio checks that a FileData sent as input names a file in its upload folder only once it
    # thinks it was launched; mounted, it never is, and would copy any file the request names.
    blocks.has_launched = True
    return mounted


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
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="another host name the browser may use to reach the editor (repeatable; default: loopback names)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Open the node editor (Gradio) in the browser."""
    args = parse_args(argv)
    from .config import UIConfig

    hosts = list(args.allow_host)
    if args.host not in ("0.0.0.0", "::", ""):
        hosts.append(args.host)  # the address it listens on is a name it answers to
    config = UIConfig.create(args.root, data_dirs=args.data, upload_dir=args.upload_dir, cache_url=args.cache,
                             plugin_paths=args.plugins, allowed_hosts=hosts)
    try:
        app = create_app(config, args.workflow)
    except EditorLibraryMissing as exc:
        print(f"graphrun ui: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else f"[{args.host}]" if ":" in args.host else args.host
    print(f"talkgraph editor: http://{shown}:{args.port}/?token={config.token}  (open this link; Ctrl-C to stop)",
          flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
