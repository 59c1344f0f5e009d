"""Files and folders a node writes outside the cache (OutputFile / OutputFolder parameters).

A node writes an output file under `part_path(path)` (`.<stem>.<writer tag>.part<suffix>`
next to it) and renames it into place when complete, so a killed run never leaves a
truncated file at `path`; the `.part` file it leaves is swept by the next run once its
process is gone (`sweep_part_files`, graphcore/liveness.py).

At commit the engine records what the node wrote: a file's sha256, or a folder's manifest hash
(sha256 over the sorted relative paths, sizes and mtimes of every file in the tree: cheap even
for a Zarr dataset of thousands of chunks, since no file is read). On a cache hit it checks the
record against the disk; a file or folder that is gone or changed makes the hit a miss, and the
node runs again, so an entry never claims a dataset that is no longer there.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from .fingerprint import file_content_hash
from .liveness import host_tag, writer_gone, writer_tag

_PART = re.compile(r"^\.(?P<stem>.*)\.(?:(?P<host>[0-9a-f]{8})-)?(?P<pid>\d+)\.part(?P<suffix>.*)$")


def part_path(path: str | os.PathLike, tag: str | None = None) -> Path:
    """Where this process writes `path` before renaming it into place."""
    p = Path(path)
    return p.with_name(f".{p.stem}.{tag or writer_tag()}.part{p.suffix}")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yields `part_path(path)` to write; renames it to `path` when the block completes, and
    removes it if the block raises. Creates the folder."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(target)
    try:
        yield part
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)


def part_files(path: str | os.PathLike) -> list[tuple[Path, tuple[str, int]]]:
    """The `.part` files of `path` next to it, each with its writer (host tag, pid); those
    written before part names carried a host tag count as this host's."""
    p = Path(path)
    try:
        names = os.listdir(p.parent)
    except OSError:
        return []
    out = []
    for name in names:
        m = _PART.match(name)
        if m and m.group("stem") == p.stem and m.group("suffix") in (p.suffix, p.suffix or ".mp4"):
            out.append((p.parent / name, (m.group("host") or host_tag(), int(m.group("pid")))))
    return out


def sweep_part_files(paths: Iterable[str | os.PathLike], *, only_gone: bool = True,
                     writer: str | None = None) -> tuple[int, int]:
    """Remove `.part` files next to `paths` left by writers of this host that are gone (or,
    with `only_gone=False`, those of `writer`, a tag known to be gone). (count, bytes)."""
    count = size = 0
    for path in paths:
        for part, tag in part_files(path):
            if writer is not None and f"{tag[0]}-{tag[1]}" != writer:
                continue
            try:
                st = part.stat()
            except OSError:
                continue
            if only_gone and not writer_gone(tag, st.st_mtime):
                continue
            try:
                part.unlink()
            except OSError:
                continue
            count, size = count + 1, size + st.st_size
    return count, size


class MissingOutput(Exception):
    """A node finished without writing an output file or folder it declares."""


def folder_manifest(path: str | os.PathLike) -> dict[str, int | str]:
    """{"manifest_sha256", "files", "bytes"} of the tree under `path` (which must be a folder)."""
    root = os.fspath(path)
    if not os.path.isdir(root):
        raise FileNotFoundError(root)
    h = hashlib.sha256(b"folder-manifest/1\0")
    n_files = n_bytes = 0
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        rel_folder = os.path.relpath(folder, root)
        for name in sorted(names):
            st = os.stat(os.path.join(folder, name), follow_symlinks=True)
            rel = name if rel_folder == "." else f"{rel_folder}/{name}".replace(os.sep, "/")
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            n_files += 1
            n_bytes += st.st_size
    return {"manifest_sha256": h.hexdigest(), "files": n_files, "bytes": n_bytes}


def record_outputs(files: Mapping[str, str], folders: Mapping[str, str]) -> dict[str, dict]:
    """What a finished node wrote, for its cache entry: parameter -> record."""
    records: dict[str, dict] = {}
    for name, path in files.items():
        if not Path(path).is_file():
            raise MissingOutput(f"did not write its output file '{name}' = {path}")
        records[name] = {"path": path, "sha256": file_content_hash(path)}
    for name, path in folders.items():
        if not Path(path).is_dir():
            raise MissingOutput(f"did not write its output folder '{name}' = {path}")
        records[name] = {"path": path, "folder": True, **folder_manifest(path)}
    return records


def stale_output(records: Mapping[str, Mapping], files: Mapping[str, str], folders: Mapping[str, str]) -> str | None:
    """On a cache hit: why the files or folders the node wrote no longer match its entry, or
    None when every one is still there, unchanged."""
    for name, path in files.items():
        record = records.get(name)
        if record is None or record.get("path") != path:
            return f"its entry does not record the output file '{name}' = {path}"
        try:
            if file_content_hash(path) != record.get("sha256"):
                return f"the output file '{name}' = {path} was changed since it was written"
        except OSError:
            return f"the output file '{name}' = {path} is gone"
    for name, path in folders.items():
        record = records.get(name)
        if record is None or record.get("path") != path or not record.get("folder"):
            return f"its entry does not record the output folder '{name}' = {path}"
        try:
            now = folder_manifest(path)
        except OSError as exc:
            gone = not os.path.isdir(path)
            return f"the output folder '{name}' = {path} " + ("is gone" if gone else f"cannot be listed: {exc}")
        if now["manifest_sha256"] != record.get("manifest_sha256"):
            return (f"the output folder '{name}' = {path} was changed since it was written "
                    f"({now['files']} files, {now['bytes']} bytes; it had {record.get('files')} files, "
                    f"{record.get('bytes')} bytes)")
    return None
