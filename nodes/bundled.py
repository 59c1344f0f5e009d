"""Bundled files a node falls back to, declared so that their content keys the cache.

A node whose parameter may be left empty (a checkpoint, the face model) reads a file shipped in
assets/ instead; `Node.implicit_files` names it, so that retraining the bundled checkpoint
invalidates exactly the results made with it.
"""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def fallback(name: str, param_value: str | None, bundled: str | Path, connected: frozenset[str] = frozenset(),
             port: str | None = None) -> dict[str, Path]:
    """{name: bundled file} when the node will use it: the parameter is empty and `port` (the
    input that would override it, if any) is not connected."""
    if param_value or (port is not None and port in connected):
        return {}
    path = Path(bundled)
    return {name: path if path.is_absolute() else REPO_ROOT / path}
