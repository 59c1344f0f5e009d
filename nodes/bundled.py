"""Files shipped in the `assets` package (sample inputs, the face model, project-trained
checkpoints), found through importlib.resources so that a checkout, an editable install and
an installed wheel all find them.

Nodes fall back to these files when a parameter is left empty; they declare them (the
`fallback` of an InputFile parameter or of a port's FileSource) so that their content keys
the cache: retraining a bundled checkpoint invalidates exactly the results made with it.
"""
from __future__ import annotations

import functools
import importlib.resources
from pathlib import Path

PACKAGE = "assets"


@functools.cache
def assets_root() -> Path:
    """The folder of the installed `assets` package."""
    try:
        root = importlib.resources.files(PACKAGE)
    except ModuleNotFoundError:
        raise RuntimeError("talkgraph's `assets` package is not importable: reinstall talkgraph "
                           "(`make setup`, or `pip install -e .`)") from None
    if not isinstance(root, Path):  # e.g. installed inside a zip file
        raise RuntimeError(f"talkgraph's assets must be installed as files, not inside an archive ({root})")
    return root


def asset_path(relative: str) -> Path:
    """The absolute path of a bundled file, named relative to assets/ ("checkpoints/x.pt")."""
    return assets_root().joinpath(*relative.split("/"))
