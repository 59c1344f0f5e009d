"""The content-addressed result cache: Zarr v3 groups under a local path or fsspec URL.

Layout under the root::

    refs/<key>.json                  the commit: entry metadata, the live attempt (if any)
                                     and the entry's small outputs, inline
    objects/<key>/<attempt>/         one attempt's Zarr data: a group, one subgroup per port
                                     that is not inline
    used/<key>                       last use (unix time as text), overwritten by `touch`

Small outputs live in the ref. Outputs holding at most INLINE_MAX_BYTES (64 KiB) of data
together (numbers, strings, small arrays, small dicts and records of those) are encoded
into the ref document itself (graphcore/inline.py: arrays as dtype, shape and base64
bytes). An entry whose outputs are all inline is one file, `"attempt": null`, and costs one
small write to commit. Larger values go to Zarr v3 arrays in the entry's attempt folder,
chunked along time (arrayio.py); one entry may hold both. A ref document (format 2)::

    {"node_id", "node_type", "params", "seconds", "files", "extra",   (from the caller)
     "format": 2, "key", "attempt": "<id>" | null, "outputs": {port: type name},
     "size_bytes", "created", "inline": {port: encoded value}}

Format-1 refs (every output in Zarr, no "inline") are still read. `size_bytes` counts the
attempt's files plus the encoded inline values.

Commit protocol. A writer saves Zarr outputs under a fresh attempt id, then publishes the
ref last (exclusive create of a complete temp file locally, one PUT on object stores).
Readers start from the ref, so an entry without one is never served: a process killed
mid-write leaves an orphan attempt folder or temp file that `sweep_incomplete` (and `gc`)
delete later. If two processes compute the same key, the second to commit finds the first
one's ref and deletes its own attempt; on object stores, where two PUTs can race, the later
ref wins and both are complete, so either is a valid entry. Loading checks that the ref's
attempt exists before reading, and that the ref still exists after (see Deleting); inline
outputs are read with the ref, in one piece.

Deleting (gc, clear) removes the ref first, then the data, so a crash there leaves an
orphan, never a ref to half-deleted data.

Durability. A killed process (kill -9, OOM) loses nothing committed: written files live in
the OS page cache. Surviving a power cut or kernel crash needs fsync, which costs a disk
flush per entry; it is off by default (as with np.save) and on with `durable=True` or
GRAPHRUN_CACHE_DURABLE=1: then every file of an attempt is fsynced before its ref is
published, and the ref after. Object stores are durable once a PUT is acknowledged.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import posixpath
import re
import socket
import time
from typing import Any

from .cache_files import TEMP_PREFIX, FsspecFiles, LocalFiles
from .types import PortType, stores_inline

log = logging.getLogger(__name__)

FORMAT = 2
READABLE_FORMATS = (1, 2)
INLINE_MAX_BYTES = 64 * 1024  # data of an entry's outputs stored in its ref (see module docstring)
_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")
_PORT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$")


class CacheError(RuntimeError):
    """The cache could not do what was asked; the message says why and where."""


class CacheMiss(CacheError, KeyError):
    """No committed, complete entry for this key (or port)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "cache miss"


def default_cache_url() -> str:
    """$GRAPHRUN_CACHE, else <user cache dir>/talkgraph/cache."""
    env = os.environ.get("GRAPHRUN_CACHE")
    if env:
        return env
    import platformdirs

    return os.path.join(platformdirs.user_cache_dir(), "talkgraph", "cache")


@dataclasses.dataclass
class EntryMeta:
    key: str
    node_id: str = ""
    node_type: str = ""
    params: dict = dataclasses.field(default_factory=dict)
    outputs: dict = dataclasses.field(default_factory=dict)  # port -> port type name
    seconds: float = 0.0  # compute time
    size_bytes: int = 0
    created: float = 0.0  # unix time
    last_used: float = 0.0  # unix time
    files: dict = dataclasses.field(default_factory=dict)  # output-file param -> {"path", "sha256"}
    extra: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_META_FIELDS = frozenset(f.name for f in dataclasses.fields(EntryMeta))
# Fields the caller of `commit` may set; everything else it passes lands in `extra`.
_CALLER_FIELDS = ("node_id", "node_type", "params", "seconds", "files", "extra")


@dataclasses.dataclass
class GcReport:
    max_size: int
    total_before: int
    total_after: int
    evicted: list[EntryMeta]
    kept: int
    swept: int  # orphaned attempts removed
    dry_run: bool

    @property
    def freed_bytes(self) -> int:
        return self.total_before - self.total_after


def keep_score(entry: EntryMeta, now: float) -> float:
    """How much an entry is worth keeping: recompute seconds per MiB, halved per idle day.

    score = seconds / max(size MiB, 1/256) / (1 + days since last use)
    """
    mib = max(entry.size_bytes / 2**20, 1 / 256)
    idle_days = max(0.0, now - max(entry.last_used, entry.created)) / 86400
    return entry.seconds / mib / (1 + idle_days)


def eviction_order(entries: list[EntryMeta], now: float | None = None) -> list[EntryMeta]:
    """Entries in the order gc evicts them: lowest `keep_score` first, then least recently used."""
    now = time.time() if now is None else now
    return sorted(entries, key=lambda e: (keep_score(e, now), max(e.last_used, e.created), e.key))


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise ValueError(f"invalid cache key {key!r}: use letters, digits, '_', '-', '.' (at most 200)")
    return key


def _json_default(value: Any) -> Any:
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return item()
    if hasattr(value, "__fspath__"):
        return os.fspath(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} cannot be stored in cache metadata")


class CacheStore:
    """A cache rooted at a local path or fsspec URL. Cheap to create and picklable (by URL)."""

    def __init__(self, url: str | None = None, storage_options: dict | None = None, durable: bool | None = None) -> None:
        import fsspec
        import fsspec.implementations.local

        url = os.fspath(url) if url is not None else default_cache_url()
        if "://" not in url:
            url = os.path.abspath(os.path.expanduser(url))
        self.url = url
        self.storage_options = dict(storage_options or {})
        self._fs, root = fsspec.core.url_to_fs(url, **self.storage_options)
        self._local = isinstance(self._fs, fsspec.implementations.local.LocalFileSystem)
        if durable is None:
            durable = os.environ.get("GRAPHRUN_CACHE_DURABLE", "").lower() in ("1", "true", "yes")
        self.durable = bool(durable)
        self._files = LocalFiles(self.durable) if self._local else FsspecFiles(self._fs)
        self.root = root.rstrip("/") or "/"
        self._refs = self._path("refs")

    def __reduce__(self) -> tuple:
        return (CacheStore, (self.url, self.storage_options, self.durable))

    def __repr__(self) -> str:
        return f"CacheStore({self.url!r})"

    # -- paths ---------------------------------------------------------------------------

    def _path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def _ref_path(self, key: str) -> str:
        return f"{self._refs}/{key}.json"  # (a plain join: this runs for every lookup and commit)

    def _used_path(self, key: str) -> str:
        return self._path("used", key)

    def _attempt_path(self, key: str, attempt: str) -> str:
        return self._path("objects", key, attempt)

    def zarr_store(self, key: str, attempt: str, read_only: bool = False) -> Any:
        """The zarr store rooted at one attempt's folder."""
        import zarr

        path = self._attempt_path(key, attempt)
        if self._local:
            return zarr.storage.LocalStore(path, read_only=read_only)
        return zarr.storage.FsspecStore.from_url(
            self._fs.unstrip_protocol(path), storage_options=self.storage_options, read_only=read_only
        )

    # -- reading -------------------------------------------------------------------------

    def _parse_ref(self, data: bytes | None, where: str) -> dict | None:
        if data is None:
            return None
        try:
            ref = json.loads(data)
            if not isinstance(ref, dict) or ref.get("format") not in READABLE_FORMATS:
                raise ValueError("not a talkgraph cache ref")
            attempt = ref.get("attempt")
            if not (attempt is None and ref["format"] >= 2) and not (isinstance(attempt, str) and _KEY_RE.match(attempt)):
                raise ValueError(f"bad attempt id {attempt!r}")  # never a path outside objects/
            if not isinstance(ref.setdefault("inline", {}), dict) or not isinstance(ref.get("outputs", {}), dict):
                raise ValueError("malformed outputs")
            return ref
        except ValueError as exc:
            log.warning("ignoring unreadable cache ref %s: %s", where, exc)
            return None

    def _read_ref(self, key: str) -> dict | None:
        path = self._ref_path(_check_key(key))
        return self._parse_ref(self._files.read(path), path)

    def _live_ref(self, key: str) -> dict | None:
        """The committed ref of `key`, if its attempt's data is present."""
        ref = self._read_ref(key)
        if ref is None or ref["attempt"] is None:  # all outputs inline: the ref is the data
            return ref
        if not self._files.exists(posixpath.join(self._attempt_path(key, ref["attempt"]), "zarr.json")):
            log.warning("cache entry %s: its data (attempt %s) is missing; treating it as absent", key, ref["attempt"])
            return None
        return ref

    def _last_used(self, key: str) -> float:
        data = self._files.read(self._used_path(key))
        try:
            return float(data) if data else 0.0
        except ValueError:
            return 0.0

    @staticmethod
    def _meta_from_ref(ref: dict, last_used: float = 0.0) -> EntryMeta:
        meta = EntryMeta(**{k: v for k, v in ref.items() if k in _META_FIELDS})
        meta.last_used = max(last_used, meta.created)
        return meta

    def has(self, key: str) -> bool:
        """True only for committed entries whose data is present."""
        return self._live_ref(key) is not None

    def meta(self, key: str) -> EntryMeta | None:
        ref = self._live_ref(key)
        return None if ref is None else self._meta_from_ref(ref, self._last_used(key))

    def attempt_of(self, key: str) -> str | None:
        """The live attempt id of a committed entry (None if absent or all inline)."""
        ref = self._live_ref(key)
        return None if ref is None else ref["attempt"]

    def load(self, key: str, port: str, port_type: PortType) -> Any:
        """Load one output of a committed entry; CacheMiss if the entry or port is absent."""
        ref = self._live_ref(key)
        if ref is None:
            raise CacheMiss(f"no committed cache entry {key} in {self.url}")
        if port not in ref.get("outputs", {}):
            have = ", ".join(sorted(ref.get("outputs", {}))) or "none"
            raise CacheMiss(f"cache entry {key} ({ref.get('node_id')}) has no output {port!r}; it has: {have}")
        if port in ref["inline"]:
            try:
                return port_type.from_inline(ref["inline"][port])
            except (ValueError, TypeError) as exc:
                raise CacheError(f"cache entry {key}: output {port!r} stored in its ref cannot be read: {exc}") from None
        if ref["attempt"] is None:
            raise CacheMiss(f"cache entry {key}: output {port!r} is missing from its data")
        import zarr  # only here: inline outputs never need it

        store = self.zarr_store(key, ref["attempt"], read_only=True)
        try:
            group = zarr.open_group(store, path=port, mode="r")
        except (FileNotFoundError, zarr.errors.NodeNotFoundError) as exc:
            raise CacheMiss(f"cache entry {key}: output {port!r} is missing from its data ({exc})") from None
        value = port_type.load(group)
        # Deleting removes the ref before any data: if the ref is still there now, no data
        # had been removed while we read (gc or clear running in another process).
        if self._read_ref(key) is None:
            raise CacheMiss(f"cache entry {key} was deleted while it was being read")
        return value

    def open_outputs(self, key: str) -> Any:
        """The zarr root group of a committed entry, read-only (for inspection); None when
        every output is inline (see `inline_outputs`)."""
        import zarr

        ref = self._live_ref(key)
        if ref is None:
            raise CacheMiss(f"no committed cache entry {key} in {self.url}")
        if ref["attempt"] is None:
            return None
        return zarr.open_group(self.zarr_store(key, ref["attempt"], read_only=True), mode="r")

    def inline_outputs(self, key: str) -> dict[str, Any]:
        """Port -> encoded value (graphcore/inline.py) of the outputs stored in the ref."""
        ref = self._live_ref(key)
        if ref is None:
            raise CacheMiss(f"no committed cache entry {key} in {self.url}")
        return dict(ref["inline"])

    def _keys(self) -> list[str]:
        names = self._files.list_names(self._path("refs"))
        return [n[:-5] for n in names if n.endswith(".json") and not n.startswith(".")]

    def ls(self) -> list[EntryMeta]:
        """All committed entries, oldest first. Reads only the small ref and last-use files."""
        keys = self._keys()
        refs = self._files.read_many([self._ref_path(k) for k in keys])
        used_keys = set(self._files.list_names(self._path("used"))) & set(keys)
        used = self._files.read_many([self._used_path(k) for k in sorted(used_keys)])
        out = []
        for key in keys:
            path = self._ref_path(key)
            ref = self._parse_ref(refs.get(path), path)
            if ref is None:
                continue
            try:
                last = float(used.get(self._used_path(key), b"0") or 0)
            except ValueError:
                last = 0.0
            out.append(self._meta_from_ref(ref, last))
        out.sort(key=lambda m: (m.created, m.key))
        return out

    def find(self, prefix: str) -> EntryMeta:
        """The one committed entry whose key starts with `prefix` (as `cache info` takes it)."""
        matches = [k for k in self._keys() if k.startswith(prefix)] if prefix else []
        if prefix in matches:
            matches = [prefix]
        if not matches:
            raise CacheMiss(f"no cache entry with a key starting with {prefix!r} in {self.url}")
        if len(matches) > 1:
            shown = ", ".join(m[:16] for m in matches[:5]) + (" ..." if len(matches) > 5 else "")
            raise CacheMiss(f"{len(matches)} cache entries start with {prefix!r} ({shown}); give more characters")
        meta = self.meta(matches[0])
        if meta is None:
            raise CacheMiss(f"cache entry {matches[0]} is incomplete (its data is missing)")
        return meta

    # -- writing -------------------------------------------------------------------------

    def writer(self, key: str) -> EntryWriter:
        return EntryWriter(self, _check_key(key))

    def touch(self, key: str) -> None:
        """Record that an entry was used now (for gc). Best effort: never raises."""
        try:
            self._files.overwrite(self._used_path(_check_key(key)), f"{time.time():.6f}".encode())
        except Exception as exc:  # a read-only cache must still serve hits
            log.debug("could not record last use of %s: %s", key, exc)

    # -- removing ------------------------------------------------------------------------

    def delete(self, key: str) -> bool:
        """Remove one entry (ref first, then its data). Returns whether it existed."""
        ref = self._read_ref(key)
        path = self._ref_path(key)
        if ref is None and not self._files.exists(path):
            return False
        self._files.remove(path)
        self._files.remove(self._used_path(key))
        if ref is not None and ref["attempt"] is not None:
            self._files.remove_tree(self._attempt_path(key, ref["attempt"]))
        self._files.remove_empty_dir(self._path("objects", key))
        return True

    def gc(self, max_size: int, dry_run: bool = False) -> GcReport:
        """Evict entries until their total size is at most `max_size` bytes.

        Policy: entries go in `eviction_order` — lowest keep score first, where
        keep score = compute seconds / size in MiB (floor 4 KiB) / (1 + days since last use).
        Cheap-to-recompute bulky data that nobody used lately goes first; an entry that took an
        hour to compute survives one that took a second, size and age being equal. Orphaned
        attempts older than an hour are swept too (not in a dry run).
        """
        if max_size < 0:
            raise ValueError(f"max_size must be >= 0, got {max_size}")
        swept = 0 if dry_run else self.sweep_incomplete()
        entries = self.ls()
        total = before = sum(e.size_bytes for e in entries)
        evicted = []
        for entry in eviction_order(entries):
            if total <= max_size:
                break
            if not dry_run:
                self.delete(entry.key)
            evicted.append(entry)
            total -= entry.size_bytes
        return GcReport(max_size, before, total, evicted, len(entries) - len(evicted), swept, dry_run)

    def clear(self) -> int:
        """Remove every entry and every unfinished attempt. Returns the number of entries.

        Do not clear a cache that a run is writing to: its writes will fail to commit.
        """
        keys = self._keys()
        for key in keys:
            self.delete(key)
        self.sweep_incomplete(older_than_s=0)
        return len(keys)

    def _attempt_activity(self, key: str, attempt: str) -> float | None:
        """When an attempt last wrote (from its root attributes, else file times)."""
        path = self._attempt_path(key, attempt)
        data = self._files.read(posixpath.join(path, "zarr.json"))
        if data:
            try:
                attrs = json.loads(data).get("attributes", {}).get("talkgraph", {})
                return float(attrs.get("active", attrs["started"]))
            except (ValueError, KeyError, AttributeError, TypeError):
                pass
        return self._files.mtime(posixpath.join(path, "zarr.json")) or self._files.mtime(path)

    def sweep_incomplete(self, older_than_s: float = 3600) -> int:
        """Delete attempts no ref points to whose last write is older than `older_than_s`
        (crashed or discarded writers), stale temp files, orphan last-use files, and refs
        whose data is gone (deleted by hand) committed more than `older_than_s` ago.
        Returns the number of attempts deleted. Younger attempts may be runs in progress."""
        now, removed = time.time(), 0
        for key in self._files.list_names(self._path("objects")):
            if not _KEY_RE.match(key):
                continue
            ref = self._read_ref(key)
            live = ref["attempt"] if ref else None
            for attempt in self._files.list_names(self._path("objects", key)):
                if attempt == live:
                    continue
                active = self._attempt_activity(key, attempt)
                if active is None and older_than_s > 0:
                    continue  # no time to judge its age by: leave it alone
                if active is not None and now - active < older_than_s:
                    continue
                self._files.remove_tree(self._attempt_path(key, attempt))
                removed += 1
            self._files.remove_empty_dir(self._path("objects", key))
        keys = set(self._keys())
        for key in sorted(keys):  # refs whose data someone deleted by hand
            ref = self._read_ref(key)
            if ref and now - ref.get("created", 0) >= older_than_s and self._live_ref(key) is None:
                self._files.remove(self._ref_path(key))
                keys.discard(key)
        for folder in ("refs", "used"):
            for name in self._files.list_names(self._path(folder)):
                path = self._path(folder, name)
                if name.startswith(TEMP_PREFIX):
                    mtime = self._files.mtime(path)
                    if mtime is None or now - mtime >= older_than_s:
                        self._files.remove(path)
                elif folder == "used" and name not in keys:
                    self._files.remove(path)
        return removed


class EntryWriter:
    """Writes one attempt of an entry; nothing is visible to readers until `commit`.

    Small outputs are kept in memory for the ref (up to INLINE_MAX_BYTES for the entry);
    the others go to the attempt's Zarr group, created on first use. Use as a context
    manager: leaving the block without committing (or by an exception) aborts and deletes
    the attempt's data.
    """

    def __init__(self, store: CacheStore, key: str) -> None:
        self.store, self.key = store, key
        self.attempt = f"{int(time.time())}-{os.urandom(8).hex()}"
        self.outputs: dict[str, str] = {}
        self._inline: dict[str, Any] = {}
        self._inline_left = INLINE_MAX_BYTES
        self._root: Any = None
        self._on_disk = False  # whether the attempt folder may exist
        self._state = "open"

    def __enter__(self) -> EntryWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._state == "open":
            try:
                self.abort()
            except Exception as abort_exc:  # never hide the original error
                log.warning("could not delete the aborted cache attempt %s/%s: %s", self.key, self.attempt, abort_exc)

    @property
    def path(self) -> str:
        return self.store._attempt_path(self.key, self.attempt)

    def _root_group(self, heartbeat: bool = False) -> Any:
        """The attempt's root group, created on first use (so `started` means data is coming).

        `heartbeat` records activity: sweep_incomplete leaves recently active attempts alone."""
        import zarr

        now = time.time()
        if self._root is None:
            info: dict[str, Any] = {"key": self.key, "attempt": self.attempt, "started": now, "active": now,
                    "host": socket.gethostname(), "pid": os.getpid()}
            self._on_disk = True
            self._root = zarr.open_group(self.store.zarr_store(self.key, self.attempt), mode="w",
                                         attributes={"talkgraph": info})
        elif heartbeat:
            self._root.attrs["talkgraph"] = {**self._root.attrs["talkgraph"], "active": now}
        return self._root

    def _check_open(self) -> None:
        if self._state != "open":
            raise CacheError(f"cache writer for {self.key} is already {self._state}")

    def save(self, port: str, port_type: PortType, value: Any) -> None:
        """Store one output value: inline in the ref if small enough, else through its port
        type's Zarr codec."""
        self._check_open()
        if not isinstance(port, str) or not _PORT_RE.match(port) or port.startswith("__"):
            raise ValueError(f"invalid output port name {port!r} for the cache")
        if port in self.outputs:
            raise CacheError(f"output {port!r} of cache entry {self.key} was already saved")
        if not port_type.persistent:
            raise CacheError(f"output {port!r} has type {port_type.name}, which holds in-memory objects and is never cached")
        encoded = port_type.to_inline(value, self._inline_left) if stores_inline(port_type) else None
        if encoded is not None:
            self._inline[port], used = encoded
            self._inline_left -= used
        else:
            group = self._root_group(heartbeat=True).create_group(port)
            try:
                port_type.save(group, value)
            except BaseException:
                self.store._files.remove_tree(posixpath.join(self.path, port))  # no half-saved port
                raise
        self.outputs[port] = port_type.name

    def commit(self, meta: dict) -> EntryMeta:
        """Publish the entry (ref written last). If another writer committed this key first,
        its entry is kept, this attempt is deleted, and its metadata is returned.

        `meta` sets node_id, node_type, params, seconds, files and extra; other keys go to extra.
        """
        self._check_open()
        files, store = self.store._files, self.store
        if self._on_disk and not files.exists(posixpath.join(self.path, "zarr.json")):
            raise CacheError(f"the data of cache entry {self.key} vanished before commit (was the cache cleared?)")
        record = {k: meta[k] for k in _CALLER_FIELDS if k in meta}
        record["extra"] = {**record.get("extra", {}), **{k: v for k, v in meta.items() if k not in _CALLER_FIELDS}}
        now = time.time()
        size = files.tree_size(self.path) if self._on_disk else 0
        if self._inline:
            size += len(json.dumps(self._inline, separators=(",", ":")))
        record.update(format=FORMAT, key=self.key, attempt=self.attempt if self._on_disk else None,
                      outputs=dict(self.outputs), size_bytes=size, created=now, inline=self._inline)
        data = json.dumps(record, separators=(",", ":"), default=_json_default).encode()
        if self._on_disk:
            files.sync_tree(self.path)

        ref_path = store._ref_path(self.key)
        if files.publish(ref_path, data):
            self._state = "committed"
            return store._meta_from_ref(record, now)
        theirs = store._live_ref(self.key)
        if theirs is None:  # the existing ref is unreadable or points at data that is gone: replace it
            files.write_atomic(ref_path, data, durable=store.durable)
            self._state = "committed"
            return store._meta_from_ref(record, now)
        log.info("cache entry %s was committed by another writer first; keeping theirs", self.key)
        if self._on_disk:
            files.remove_tree(self.path)
        self._state = "committed"
        return store._meta_from_ref(theirs, store._last_used(self.key))

    def abort(self) -> None:
        """Delete this attempt's data; the cache is as if the writer never ran."""
        if self._state == "committed":
            raise CacheError(f"cache entry {self.key} is already committed; delete it with CacheStore.delete")
        self._state = "aborted"
        if self._on_disk:
            self.store._files.remove_tree(self.path)
            self.store._files.remove_empty_dir(self.store._path("objects", self.key))
