"""What the editor server may touch: its folders, the allowed-roots rule, upload naming, and
who may talk to it (the launch token, the host names it answers to).

The browser names files by path (a workflow to open, an output to preview, a parameter
value); every such path goes through `UIConfig.check` so the app reads and writes only
under its allowed roots: the workflow folders, the data folders (assets/, out/ and any
`--data` folder) and the caller's own upload folder. Symlinks are resolved first, so a link
that points outside a root is refused like any other outside path (graphcore/paths.py; the
engine's validation applies the same rule to every path parameter of a workflow).

Upload folders: `<upload-dir>/<folder>/`, where the folder name is an HMAC of the session
cookie under a key kept in the upload dir: a path shown in a saved YAML names the folder but
gives away no session id, and the folder stays the same across restarts.
"""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import re
import secrets
import unicodedata
from pathlib import Path

from graphcore.paths import AllowedRoots, PathNotAllowed

SESSION_COOKIE = "talkgraph_session"
_SESSION_RE = re.compile(r"^[0-9a-f]{32}$")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
WORKFLOW_SUFFIXES = (".yaml", ".yml")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
SESSION_KEY_FILE = ".session-key"

__all__ = ["PathNotAllowed", "UIConfig", "SESSION_COOKIE", "safe_filename", "unique_path"]


def default_upload_dir() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("talkgraph")) / "ui-uploads"


@dataclasses.dataclass
class UIConfig:
    root: Path  # the project folder: relative paths from the browser resolve against it
    workflow_dirs: list[Path]
    data_dirs: list[Path]
    upload_dir: Path
    cache_url: str | None = None
    plugin_paths: list[str] = dataclasses.field(default_factory=list)
    max_upload_bytes: int = 1 << 30
    # Who may talk to the app: the per-launch secret (in the URL printed at start) and the names
    # the Host header may carry (loopback by default; DNS rebinding sends another name).
    token: str = dataclasses.field(default_factory=lambda: secrets.token_urlsafe(32))
    allowed_hosts: list[str] = dataclasses.field(default_factory=lambda: list(LOOPBACK_HOSTS))

    @classmethod
    def create(
        cls,
        root: str | os.PathLike | None = None,
        *,
        data_dirs: list[str | os.PathLike] = (),  # type: ignore[assignment]
        upload_dir: str | os.PathLike | None = None,
        cache_url: str | None = None,
        plugin_paths: list[str] = (),  # type: ignore[assignment]
        allowed_hosts: list[str] = (),  # type: ignore[assignment]
    ) -> UIConfig:
        """Defaults: workflows/ for workflows, assets/ and out/ for data, under `root` (the cwd);
        loopback host names, plus `allowed_hosts`."""
        base = Path(root or Path.cwd()).expanduser().resolve()
        upload = Path(upload_dir).expanduser() if upload_dir else default_upload_dir()
        upload.mkdir(parents=True, exist_ok=True)
        os.chmod(upload, 0o700)  # other local users: nothing to read here
        data = [base / "assets", base / "out", *(Path(d).expanduser() for d in data_dirs)]
        return cls(
            root=base,
            workflow_dirs=[(base / "workflows").resolve()],
            data_dirs=[d.resolve() if d.is_absolute() else (base / d).resolve() for d in data],
            upload_dir=upload.resolve(),
            cache_url=cache_url,
            plugin_paths=[str(p) for p in plugin_paths],
            allowed_hosts=[*LOOPBACK_HOSTS, *(h.strip().lower() for h in allowed_hosts if h.strip())],
        )

    @property
    def gradio_dir(self) -> Path:
        """Gradio's own upload/cache folder for this app (GRADIO_TEMP_DIR), private to the user."""
        d = self.upload_dir / ".gradio"
        d.mkdir(mode=0o700, exist_ok=True)
        return d

    @property
    def untitled_dir(self) -> Path:
        """Where an untitled workflow is, for its relative paths: where Save would put it."""
        return self.workflow_dirs[0]

    # --- the allowed-roots rule ---

    def allowed_roots(self, session_dir: Path | None = None) -> list[Path]:
        """The workflow and data folders, plus the caller's own upload folder (never another session's)."""
        return [*self.workflow_dirs, *self.data_dirs, *([session_dir.resolve()] if session_dir else [])]

    def roots(self, session_dir: Path | None = None, roots: list[Path] | None = None) -> AllowedRoots:
        """The allowed roots as the engine's validation takes them (shown relative to the project)."""
        folders = self.allowed_roots(session_dir) if roots is None else roots
        return AllowedRoots(folders, shown=[self.display(r) for r in folders])

    def resolve(self, path: str | os.PathLike, base: Path | None = None) -> Path:
        """Absolute, symlink-free form of a path from the browser (relative to `base` or the root)."""
        return AllowedRoots(()).resolve(path, base or self.root)

    def is_allowed(self, path: str | os.PathLike, *, base: Path | None = None, session_dir: Path | None = None,
                   roots: list[Path] | None = None) -> bool:
        try:
            self.check(path, roots, base=base, session_dir=session_dir)
        except PathNotAllowed:
            return False
        return True

    def check(self, path: str | os.PathLike, roots: list[Path] | None = None, *, base: Path | None = None,
              session_dir: Path | None = None) -> Path:
        """The resolved path if it lies under one of `roots` (default: every allowed root)."""
        resolved = self.roots(session_dir, roots).check(path, base or self.root)
        if not isinstance(resolved, Path):
            raise PathNotAllowed(f"{os.fspath(path)!r}: the editor reads and writes local files only")
        return resolved

    def check_workflow_path(self, path: str | os.PathLike, session_dir: Path | None = None) -> Path:
        """A workflow file the app may read or write: a .yaml under a workflow folder or the caller's uploads."""
        resolved = self.check(path, [*self.workflow_dirs, *([session_dir.resolve()] if session_dir else [])])
        if resolved.suffix.lower() not in WORKFLOW_SUFFIXES:
            raise PathNotAllowed(f"{os.fspath(path)!r} is not a workflow file (expected .yaml or .yml)")
        return resolved

    def display(self, path: Path) -> str:
        """A path as shown in the browser: relative to the project root when inside it."""
        return path.relative_to(self.root).as_posix() if path.is_relative_to(self.root) else str(path)

    def workflow_files(self) -> list[str]:
        """Every workflow under the workflow folders, for the Open menu."""
        found: list[str] = []
        for d in self.workflow_dirs:
            if d.is_dir():
                found += [self.display(p) for p in sorted(d.rglob("*")) if p.suffix.lower() in WORKFLOW_SUFFIXES and p.is_file()]
        return found

    # --- per-session upload folders ---

    def session_dir(self, session_id: str) -> Path:
        """The session's upload folder: named by an HMAC of the session id, never the id itself."""
        if not _SESSION_RE.match(session_id or ""):
            raise PathNotAllowed("invalid session id")
        name = hmac.new(self._session_key(), session_id.encode(), hashlib.sha256).hexdigest()[:32]
        d = self.upload_dir / name
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        return d

    def _session_key(self) -> bytes:
        """A random key kept (0600) in the upload folder; made once, atomically (a whole file or none)."""
        key_file = self.upload_dir / SESSION_KEY_FILE
        if not key_file.exists():
            tmp = key_file.with_name(f"{SESSION_KEY_FILE}-{os.getpid()}-{secrets.token_hex(4)}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
            try:
                os.link(tmp, key_file)
            except FileExistsError:  # another server made it first: use that one
                pass
            finally:
                tmp.unlink()
        return key_file.read_bytes()

    # --- who may talk to the app ---

    def host_allowed(self, host_header: str) -> bool:
        """Whether a Host header (name[:port]) names this app under one of its allowed host names."""
        host = host_header.strip().lower()
        if host.startswith("["):  # [::1]:7860
            name = host[1:].split("]", 1)[0]
        else:
            name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        return bool(name) and name in self.allowed_hosts

    def token_ok(self, value: str | None) -> bool:
        return bool(value) and hmac.compare_digest(str(value).encode(), self.token.encode())

    @property
    def auth_cookie(self) -> str:
        """The token cookie's name, distinct per launch (two editors on one host keep their own)."""
        return "talkgraph_auth_" + hashlib.sha256(self.token.encode()).hexdigest()[:10]


def new_session_id() -> str:
    return secrets.token_hex(16)


def valid_session_id(value: str | None) -> bool:
    return bool(value and _SESSION_RE.match(value))


def safe_filename(name: str, default: str = "upload") -> str:
    """A file name that cannot climb out of or hide in a folder: base name only, [A-Za-z0-9._-]."""
    name = unicodedata.normalize("NFKD", name or "").encode("ascii", "ignore").decode()
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem.strip("."):  # "name" or ".name": no extension
        stem, ext = name, ""
    stem = _UNSAFE_CHARS.sub("_", stem).strip("._-")[:80]
    ext = _UNSAFE_CHARS.sub("", ext)[:12].lower()
    stem = stem or default
    return f"{stem}.{ext}" if ext else stem


def unique_path(folder: Path, name: str) -> Path:
    """`folder/name`, or `folder/name-2.ext`, ... when that name is taken."""
    candidate = folder / name
    stem, suffix = candidate.stem, candidate.suffix
    i = 2
    while candidate.exists():
        candidate = folder / f"{stem}-{i}{suffix}"
        i += 1
    return candidate
