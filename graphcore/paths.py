"""Allowed roots: the folders (and URL prefixes) a workflow's paths may name.

A path parameter (InputFile, InputPath, OutputFile, OutputFolder, OutputPath) or a literal for a
Path-typed input names a place the node reads or writes. `validate(wf, registry, roots=...)`
reports every such path outside the roots; the editor always passes its roots, the CLI when
given `--allow-root`. A path is resolved first (relative to the workflow's folder, `~`
expanded, symlinks followed), so `../` and links out of a root are outside. `file://` URLs are
local paths; any other URL (`s3://bucket/x`) is inside only under a root given as a URL prefix.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote, urlparse


class PathNotAllowed(PermissionError):
    """A path outside the allowed roots; the message names the roots."""


def is_url(text: str) -> bool:
    """`scheme://...` other than file:// (those are local paths)."""
    return "://" in text and not text.startswith("file://")


def _local(text: str) -> str:
    return unquote(urlparse(text).path) if text.startswith("file://") else text


class AllowedRoots:
    """Local folders and URL prefixes; `check` resolves a path and says whether it lies inside one."""

    def __init__(self, roots: Iterable[str | os.PathLike], *, shown: Iterable[str] | None = None) -> None:
        self.folders: list[Path] = []
        self.prefixes: list[str] = []
        for root in roots:
            text = os.fspath(root)
            if is_url(text):
                self.prefixes.append(text if text.endswith("/") else text + "/")
            else:
                self.folders.append(Path(_local(text)).expanduser().resolve())
        self._shown = list(shown) if shown is not None else None

    def __bool__(self) -> bool:
        return bool(self.folders or self.prefixes)

    def describe(self) -> str:
        if self._shown is not None:
            return ", ".join(self._shown)
        return ", ".join([*(str(f) for f in self.folders), *self.prefixes]) or "none"

    def resolve(self, path: str | os.PathLike, base: Path | None = None) -> Path:
        """Absolute, symlink-free form of a local path (relative to `base`, else the current folder)."""
        text = _local(os.fspath(path))
        if "\x00" in text:
            raise PathNotAllowed("a path may not contain NUL characters")
        p = Path(text).expanduser()
        if not p.is_absolute():
            p = (base or Path.cwd()) / p
        return p.resolve()

    def check(self, path: str | os.PathLike, base: Path | None = None) -> Path | str:
        """The resolved path (a URL as given) if it lies inside a root; else PathNotAllowed."""
        text = os.fspath(path)
        if is_url(text):
            if any(text.startswith(p) or text + "/" == p for p in self.prefixes):
                return text
            raise PathNotAllowed(f"{text!r} is a URL outside the allowed roots ({self.describe()})")
        resolved = self.resolve(text, base)
        if not any(resolved == r or resolved.is_relative_to(r) for r in self.folders):
            raise PathNotAllowed(f"{text!r} is outside the allowed folders ({self.describe()})")
        return resolved

    def contains(self, path: str | os.PathLike, base: Path | None = None) -> bool:
        try:
            self.check(path, base)
        except PathNotAllowed:
            return False
        return True
