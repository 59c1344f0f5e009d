"""What a training run is: the fingerprint `last.pt` records so that a run resumes only the
state of the same run (model, result-changing settings, data), never a stale one.

Cheap by design: a local dataset folder is identified by its manifest (relative paths, sizes
and modification times of its files, graphcore/outputs.py), so regenerating or editing the data
in place changes the identity without reading a byte of it; an fsspec URL by its files' names
and sizes; in-memory training data (personalisation on one target video) by a hash of its arrays.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from typing import Any

from graphcore.outputs import folder_manifest

# TrainConfig fields that do not change what a run computes: a run may be extended (`steps`),
# moved to another device or given other logging/threads, and still resume.
NOT_RESULTS = frozenset({"steps", "device", "log_every", "checkpoint_every", "max_minutes", "resume", "progress_bar",
                         "threads"})


def digest(value: Any) -> str:
    """sha256 of a JSON-able description (sorted keys; numbers and paths as text)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def dataset_fingerprint(url: str | os.PathLike) -> dict[str, Any]:
    """{"path", "content"} of a dataset folder or fsspec URL ("missing" when there is none)."""
    url = os.fspath(url)
    if "://" not in url or url.startswith("file://"):
        path = url[len("file://"):] if url.startswith("file://") else url
        try:
            return {"path": os.path.abspath(path), "content": folder_manifest(path)["manifest_sha256"]}
        except OSError:
            return {"path": os.path.abspath(path), "content": "missing"}
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    try:
        found = fs.find(root, detail=True)
    except FileNotFoundError:
        return {"path": url, "content": "missing"}
    listing = sorted((name[len(root):], info.get("size")) for name, info in found.items())
    return {"path": url, "content": digest(listing)}


def arrays_fingerprint(arrays: Iterable[Any]) -> str:
    """sha256 over arrays' shapes, dtypes and bytes (numpy arrays or torch tensors)."""
    import numpy as np

    h = hashlib.sha256()
    for a in arrays:
        if hasattr(a, "detach"):
            a = a.detach().cpu().numpy()
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()
