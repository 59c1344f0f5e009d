"""What the editor server may touch: its folders, the allowed-roots rule, upload naming.

The browser names files by path (a workflow to open, an output to preview, a parameter
value); every such path goes through `UIConfig.check` so the app reads and writes only
under its allowed roots: the workflow folders, the data folders (assets/, out/ and any
`--data` folder) and the upload folder. Symlinks are resolved first, so a link that points
outside a root is refused like any other outside path.
"""
from __future__ import annotations

import dataclasses
import os
import re
import secrets
import unicodedata
from pathlib import Path

SESSION_COOKIE = "talkgraph_session"
_SESSION_RE = re.compile(r"^[0-9a-f]{32}$")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
WORKFLOW_SUFFIXES = (".yaml", ".yml")


class PathNotAllowed(PermissionError):
    """A path outside the folders the app may read or write. The message says which roots are allowed."""


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

    @classmethod
    def create(
        cls,
        root: str | os.PathLike | None = None,
        *,
        data_dirs: list[str | os.PathLike] = (),  # type: ignore[assignment]
        upload_dir: str | os.PathLike | None = None,
        cache_url: str | None = None,
        plugin_paths: list[str] = (),  # type: ignore[assignment]
    ) -> UIConfig:
        """Defaults: workflows/ for workflows, assets/ and out/ for data, under `root` (the cwd)."""
        base = Path(root or Path.cwd()).expanduser().resolve()
        upload = Path(upload_dir).expanduser() if upload_dir else default_upload_dir()
        upload.mkdir(parents=True, exist_ok=True)
        data = [base / "assets", base / "out", *(Path(d).expanduser() for d in data_dirs)]
        return cls(
            root=base,
            workflow_dirs=[(base / "workflows").resolve()],
            data_dirs=[d.resolve() if d.is_absolute() else (base / d).resolve() for d in data],
            upload_dir=upload.resolve(),
            cache_url=cache_url,
            plugin_paths=[str(p) for p in plugin_paths],
        )

    # --- the allowed-roots rule ---

    def allowed_roots(self, session_dir: Path | None = None) -> list[Path]:
        """The workflow and data folders, plus the caller's own upload folder (never another session's)."""
        return [*self.workflow_dirs, *self.data_dirs, *([session_dir.resolve()] if session_dir else [])]

    def resolve(self, path: str | os.PathLike, base: Path | None = None) -> Path:
        """Absolute, symlink-free form of a path from the browser (relative to `base` or the root)."""
        text = os.fspath(path)
        if "\x00" in text:
            raise PathNotAllowed("a path may not contain NUL characters")
        p = Path(text).expanduser()
        if not p.is_absolute():
            p = (base or self.root) / p
        return p.resolve()

    def is_allowed(self, path: str | os.PathLike, *, base: Path | None = None, session_dir: Path | None = None) -> bool:
        try:
            self.check(path, base=base, session_dir=session_dir)
        except PathNotAllowed:
            return False
        return True

    def check(self, path: str | os.PathLike, roots: list[Path] | None = None, *, base: Path | None = None,
              session_dir: Path | None = None) -> Path:
        """The resolved path if it lies under one of `roots` (default: every allowed root)."""
        resolved = self.resolve(path, base)
        roots = self.allowed_roots(session_dir) if roots is None else roots
        if not any(resolved == r or resolved.is_relative_to(r) for r in roots):
            shown = ", ".join(self.display(r) for r in roots)
            raise PathNotAllowed(f"{os.fspath(path)!r} is outside the folders this app may use ({shown})")
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
        if not _SESSION_RE.match(session_id or ""):
            raise PathNotAllowed("invalid session id")
        d = self.upload_dir / session_id
        d.mkdir(parents=True, exist_ok=True)
        return d


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
