"""Sweeping what interrupted writers left in a cache, and gc.

An interrupted writer (killed, out of disk, its machine gone) can leave: an attempt folder no
ref points to, its pending marker, a temp file of a local commit, and `.part` files next to
the output files its node was writing. Each carries its writer's tag (graphcore/liveness.py),
so:

* `sweep_dead_writers` (every run, at its start: it lists only `pending/` and `tmp/`) removes
  the leftovers of writers of this host whose process is gone, at once;
* `sweep` (gc and clear) also removes leftovers of other hosts' writers inactive for an hour,
  orphan attempts without a marker (earlier versions), refs of older formats, refs whose data
  was deleted by hand, and stray last-use files;
* `gc` sweeps, frees the quarantine, then evicts entries down to a size.
"""
from __future__ import annotations

import dataclasses
import json
import posixpath
import time
from typing import Any

from .cache import _KEY_RE, EntryMeta, _lenient, _OldFormat, decode_ref, eviction_order
from .cache_files import TEMP_PREFIX
from .liveness import parse_tag, writer_gone
from .outputs import sweep_part_files

STALE_AFTER_S = 3600  # inactivity after which another host's leftovers are swept
STAGED_INPUTS_KEPT_S = 86400  # input files staged for dask workers (inputs/<sha256>)


@dataclasses.dataclass
class SweepReport:
    attempts: int = 0  # attempt folders deleted
    bytes: int = 0  # their size, plus temp and part files
    temp_files: int = 0
    part_files: int = 0
    markers: int = 0  # pending markers of finished or dead writers
    refs: int = 0  # refs removed: outdated format, or their data gone
    inputs: int = 0  # staged input files not staged again for a day

    def add(self, other: SweepReport) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    @property
    def total(self) -> int:
        return self.attempts + self.temp_files + self.part_files + self.refs + self.inputs

    def describe(self) -> str:
        parts = [f"{n} {what}" for n, what in ((self.attempts, "unfinished attempts"), (self.temp_files, "temp files"),
                                                (self.part_files, ".part files"), (self.refs, "stale refs"),
                                                (self.inputs, "staged input files")) if n]
        return ", ".join(parts)


@dataclasses.dataclass
class GcReport:
    max_size: int
    total_before: int
    total_after: int
    evicted: list[EntryMeta]
    kept: int
    swept: int  # orphaned attempts removed
    dry_run: bool
    sweep: SweepReport = dataclasses.field(default_factory=SweepReport)
    quarantine_freed: int = 0  # quarantined entries whose data was deleted
    quarantine_bytes: int = 0

    @property
    def freed_bytes(self) -> int:
        return self.total_before - self.total_after


def _remove_attempt(store: Any, key: str, attempt: str, report: SweepReport) -> None:
    path = store._attempt_path(key, attempt)
    report.bytes += store._files.tree_size(path)
    store._files.remove_tree(path)
    store._files.remove_empty_dir(store._path("objects", key))
    report.attempts += 1


def _live_attempt(store: Any, key: str) -> str | None:
    return _lenient(store._files.read(store._ref_path(key))).get("attempt")


def _sweep_markers(store: Any, older_than_s: float | None, report: SweepReport) -> None:
    """Pending markers: a writer that committed or aborted removed its own; what is left is
    a writer at work, or one that died. `older_than_s=None`: only this host's dead writers."""
    files, now = store._files, time.time()
    for name in files.list_names(store._path("pending")):
        if not name.endswith(".json") or name.count(".") < 2:
            continue
        key, attempt = name[:-5].rsplit(".", 1)
        path = store._path("pending", name)
        try:
            marker = json.loads(files.read(path) or b"")
        except ValueError:
            marker = {}
        gone = writer_gone(parse_tag(str(marker.get("writer", ""))), marker.get("started"))
        if gone is None:  # another host's writer: judge by the attempt's last activity
            if older_than_s is None:
                continue
            active = _attempt_activity(store, key, attempt) if _KEY_RE.match(key) and _KEY_RE.match(attempt) else None
            active = active or files.mtime(path) or 0.0
            gone = now - active >= older_than_s
        if not gone:
            continue
        if _KEY_RE.match(key) and _KEY_RE.match(attempt) and _live_attempt(store, key) != attempt:
            if files.exists(store._attempt_path(key, attempt)):
                _remove_attempt(store, key, attempt, report)
        n, size = sweep_part_files(marker.get("files") or [], only_gone=False, writer=marker.get("writer"))
        report.part_files += n
        report.bytes += size
        files.remove(path)
        report.markers += 1


def _sweep_temp_files(store: Any, older_than_s: float | None, report: SweepReport) -> None:
    """tmp/ (named by writer) and, from earlier versions, `.tmp-*` next to refs and stamps."""
    files, now = store._files, time.time()
    folders = [("tmp", False)] + ([("refs", True), ("used", True)] if older_than_s is not None else [])
    for folder, legacy in folders:
        for name in files.list_names(store._path(folder)):
            if legacy and not name.startswith(TEMP_PREFIX):
                continue
            path = store._path(folder, name)
            mtime = files.mtime(path)
            gone = None if legacy else writer_gone(parse_tag(name), mtime)
            if gone is None:
                gone = older_than_s is not None and (mtime is None or now - mtime >= older_than_s)
            if gone:
                report.bytes += len(files.read(path) or b"")
                files.remove(path)
                report.temp_files += 1


def sweep_dead_writers(store: Any) -> SweepReport:
    """Leftovers of this host's writers whose process is gone (cheap: two small listings)."""
    report = SweepReport()
    _sweep_markers(store, None, report)
    _sweep_temp_files(store, None, report)
    return report


def _attempt_activity(store: Any, key: str, attempt: str) -> float | None:
    """When an attempt last wrote (from its root attributes, else file times)."""
    path = store._attempt_path(key, attempt)
    data = store._files.read(posixpath.join(path, "zarr.json"))
    if data:
        try:
            attrs = json.loads(data).get("attributes", {}).get("talkgraph", {})
            return float(attrs.get("active", attrs["started"]))
        except (ValueError, KeyError, AttributeError, TypeError):
            pass
    return store._files.mtime(posixpath.join(path, "zarr.json")) or store._files.mtime(path)


def sweep(store: Any, older_than_s: float = STALE_AFTER_S) -> SweepReport:
    """Everything `sweep_dead_writers` does, plus: other hosts' leftovers inactive for
    `older_than_s`; attempts no ref points to (without a marker: written by an earlier version,
    or the marker was lost) whose last write is that old; refs of older formats; refs whose
    data someone deleted by hand, committed that long ago; last-use files of absent entries.
    Younger unmarked attempts may be runs in progress of another host, and are kept."""
    files, now = store._files, time.time()
    report = SweepReport()
    _sweep_markers(store, older_than_s, report)
    _sweep_temp_files(store, older_than_s, report)
    pending = {n[:-5].rsplit(".", 1)[1] for n in files.list_names(store._path("pending")) if n.count(".") >= 2}
    for key in files.list_names(store._path("objects")):
        if not _KEY_RE.match(key):
            continue
        live = _live_attempt(store, key)
        for attempt in files.list_names(store._path("objects", key)):
            if attempt == live or attempt in pending:
                continue
            active = _attempt_activity(store, key, attempt)
            if active is None and older_than_s > 0:
                continue  # no time to judge its age by: leave it alone
            if active is not None and now - active < older_than_s:
                continue
            _remove_attempt(store, key, attempt, report)
        files.remove_empty_dir(store._path("objects", key))
    keys = set(store._keys())
    for key in sorted(keys):
        data = files.read(store._ref_path(key))
        try:
            ref = decode_ref(data) if data is not None else None
        except _OldFormat:  # never served: a new commit would replace it anyway
            store.delete(key)
            keys.discard(key)
            report.refs += 1
            continue
        except ValueError:  # damaged: quarantined when a run or `cache verify --repair` reads it
            continue
        if ref and ref["attempt"] and now - ref.get("created", 0) >= older_than_s \
                and not files.exists(posixpath.join(store._attempt_path(key, ref["attempt"]), "zarr.json")):
            files.remove(store._ref_path(key))  # its data was deleted by hand
            keys.discard(key)
            report.refs += 1
    for name in files.list_names(store._path("used")):
        if not name.startswith(TEMP_PREFIX) and name not in keys:
            files.remove(store._path("used", name))
    for name in files.list_names(store._path("inputs")):  # staged input files: a dask run stages them again
        path = store._path("inputs", name)
        mtime = files.mtime(path)
        if mtime is not None and now - mtime >= STAGED_INPUTS_KEPT_S:
            report.bytes += files.tree_size(path)
            files.remove(path)
            report.inputs += 1
    return report


def free_quarantine(store: Any, dry_run: bool = False) -> tuple[int, int]:
    """Delete the data of quarantined entries, keeping their reason records. (count, bytes)."""
    n = size = 0
    for record in store.quarantined():
        data = posixpath.join(record["folder"], "data")
        if store._files.exists(data) or store._files.exists(posixpath.join(record["folder"], "ref.json")):
            size += store._files.tree_size(data)
            n += 1
            if not dry_run:
                store._files.remove_tree(data)
                store._files.remove(posixpath.join(record["folder"], "ref.json"))
    return n, size


def gc(store: Any, max_size: int, dry_run: bool = False) -> GcReport:
    """Evict entries until their total size is at most `max_size` bytes.

    Policy: entries go in `eviction_order` — lowest keep score first, where
    keep score = compute seconds / size in MiB (floor 4 KiB) / (1 + days since last use).
    Cheap-to-recompute bulky data that nobody used lately goes first; an entry that took an
    hour to compute survives one that took a second, size and age being equal. Before that
    (not in a dry run): what interrupted writers left is swept (`sweep`) and the data of
    quarantined entries is deleted (their reason records stay for `cache verify` to list).
    """
    if max_size < 0:
        raise ValueError(f"max_size must be >= 0, got {max_size}")
    swept = SweepReport() if dry_run else sweep(store)
    q_count, q_bytes = free_quarantine(store, dry_run)
    entries = store.ls()
    total = before = sum(e.size_bytes for e in entries)
    evicted = []
    for entry in eviction_order(entries):
        if total <= max_size:
            break
        if not dry_run:
            store.delete(entry.key)
        evicted.append(entry)
        total -= entry.size_bytes
    return GcReport(max_size, before, total, evicted, len(entries) - len(evicted), swept.attempts, dry_run,
                    swept, q_count, q_bytes)
