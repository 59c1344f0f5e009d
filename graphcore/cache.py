"""The content-addressed result cache: Zarr v3 groups under a local path or fsspec URL.

Layout under the root::

    refs/<key>.json                  the commit: entry metadata, the live attempt (if any),
                                     the digest of every file of its data, the entry's small
                                     outputs inline, and a digest of the ref itself
    objects/<key>/<attempt>/         one attempt's Zarr data: a group, one subgroup per port
                                     that is not inline
    used/<key>                       last use (unix time as text), overwritten by `touch`
    pending/<key>.<attempt>.json     a writer at work: who (host tag, pid), since when, which
                                     output files it may leave `.part` files of
    tmp/                             temp files of local commits, named by their writer
    quarantine/<key>.<stamp>/        damaged entries moved aside: reason.json, ref.json, data/

Small outputs live in the ref. Outputs holding at most INLINE_MAX_BYTES (64 KiB) of data
together (numbers, strings, small arrays, small dicts and records of those) are encoded
into the ref document itself (graphcore/inline.py: arrays as dtype, shape and base64
bytes). An entry whose outputs are all inline is one file, `"attempt": null`, and costs one
small write to commit. Larger values go to Zarr v3 arrays in the entry's attempt folder,
chunked along time (arrayio.py); one entry may hold both. A ref document (format 3)::

    {"node_id", "node_type", "params", "seconds", "files", "extra",   (from the caller)
     "format": 3, "key", "attempt": "<id>" | null, "outputs": {port: type name},
     "size_bytes", "created", "inline": {port: encoded value},
     "digests": {path in the attempt: xxh3-128 hex}, "check": "<digest of all the above>"}

Verified reads (graphcore/digests.py). Every file of an attempt is digested as it is written
and checked as it is read; the ref checks itself. A ref that fails its check, or data that is
missing, unreadable or changed, makes the entry *damaged*: it is moved to quarantine/ (with
the node id and the reason), the read is a miss (`DamagedEntry`), and the engine recomputes
it. Refs of older formats (without digests) are not served; a new commit replaces them.

Commit protocol. A writer saves Zarr outputs under a fresh attempt id, then publishes the
ref last (exclusive create of a complete temp file locally, one PUT on object stores).
Readers start from the ref, so an entry without one is never served. A writer first leaves
a pending marker naming itself, so what a killed writer leaves (an orphan attempt, a temp
file, a `.part` output file) is swept by the next run on this host once its process is gone
(`sweep_dead_writers`), and by `gc` after an hour of inactivity when it came from another
host. An aborted writer first waits for its Zarr writes still in flight (and refuses new
ones), then deletes its attempt, so nothing of it reappears. If two processes compute the
same key, the second to commit finds the first one's ref and deletes its own attempt; on
object stores, where two PUTs can race, the later ref wins and both are complete, so either
is a valid entry. Loading checks that the ref still exists after reading (see Deleting).

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
from typing import TYPE_CHECKING, Any

from .cache_files import FsspecFiles, LocalFiles
from .digests import DamagedData, digest, seal, unseal
from .liveness import writer_tag
from .types import PortType, stores_inline

if TYPE_CHECKING:
    from .cache_sweep import GcReport, SweepReport

log = logging.getLogger(__name__)

FORMAT = 3
INLINE_MAX_BYTES = 64 * 1024  # data of an entry's outputs stored in its ref (see module docstring)
_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")
_PORT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$")


class CacheError(RuntimeError):
    """The cache could not do what was asked; the message says why and where."""


class CacheMiss(CacheError, KeyError):
    """No committed, complete entry for this key (or port)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "cache miss"


class DamagedEntry(CacheMiss):
    """A committed entry failed verification; it was moved to quarantine (a miss from now on)."""

    def __init__(self, key: str, node_id: str, reason: str, moved_to: str | None) -> None:
        where = f"; moved to {moved_to}" if moved_to else ""
        super().__init__(f"cache entry {key[:12]} ({node_id or 'unknown node'}) is damaged: {reason}{where}")
        self.key, self.node_id, self.reason, self.moved_to = key, node_id, reason, moved_to


def _miss(key: str, message: str) -> CacheMiss:
    miss = CacheMiss(message)
    miss.key = key  # type: ignore[attr-defined]  # which entry, for a reader that must name its producer
    return miss


class StoreUnreachable(CacheError):
    """The cache's storage cannot be reached (object store down, wrong endpoint, no access)."""


class _OldFormat(ValueError):
    """A ref written by an earlier version, without digests: not served, never quarantined."""


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
class Lookup:
    """What `CacheStore.lookup` found under a key."""

    ref: dict | None  # the committed, verified ref; None on a miss
    damage: str | None = None  # why an entry that was there is not served (it went to quarantine)
    moved_to: str | None = None  # its quarantine folder
    node_id: str = ""  # the node the damaged entry belonged to


@dataclasses.dataclass
class VerifyReport:
    entries: int = 0  # entries checked
    damaged: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)  # (key, node id, reason)
    outdated: int = 0  # refs of earlier formats (never served)


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


def decode_ref(data: bytes) -> dict:
    """A ref's document, verified. ValueError (`_OldFormat` for older versions) says why not."""
    try:
        document = unseal(data)
    except ValueError:
        try:
            head = json.loads(data)
        except ValueError:
            raise ValueError("it is not valid JSON (cut short or changed)") from None
        if isinstance(head, dict) and head.get("format") in (1, 2) and "check" not in head:
            raise _OldFormat(f"it has format {head.get('format')} (no digests)") from None
        raise
    try:
        ref = json.loads(document)
    except ValueError:
        raise ValueError("it is not valid JSON (changed before it was sealed)") from None
    if not isinstance(ref, dict) or ref.get("format") != FORMAT:
        raise ValueError("it is not a talkgraph cache ref")
    attempt = ref.get("attempt")
    if attempt is not None and not (isinstance(attempt, str) and _KEY_RE.match(attempt)):
        raise ValueError(f"bad attempt id {attempt!r}")  # never a path outside objects/
    for field in ("inline", "outputs", "digests"):
        if not isinstance(ref.get(field), dict):
            raise ValueError(f"malformed {field!r}")
    return ref


def _lenient(data: bytes | None) -> dict:
    """What can be read from a damaged ref (node id, attempt), for the quarantine record."""
    try:
        doc = json.loads(data or b"")
    except ValueError:
        return {}
    if not isinstance(doc, dict):
        return {}
    attempt = doc.get("attempt")
    return {"node_id": str(doc.get("node_id") or ""),
            "attempt": attempt if isinstance(attempt, str) and _KEY_RE.match(attempt) else None}


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
        self.root = root.rstrip("/") or "/"
        self._refs = self._path("refs")
        self._files = LocalFiles(self.durable, self._path("tmp")) if self._local else FsspecFiles(self._fs)

    def __reduce__(self) -> tuple:
        # Credentials never travel in a pickle (a dask task): the receiving process completes
        # the options from its own config file and environment (graphcore/cache_config.py).
        from .cache_config import public_options

        return (_store_in_this_process, (self.url, public_options(self.storage_options), self.durable))

    def check_reachable(self) -> None:
        """Raise StoreUnreachable, with one line saying why, if the storage cannot be listed."""
        if self._local:
            return
        try:
            self._files.list_names(self._refs)
        except Exception as exc:  # whatever the filesystem raises: connection, DNS, credentials
            raise StoreUnreachable(f"cannot reach the cache {self.url}: {_one_line(exc)}") from None

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

    def _pending_path(self, key: str, attempt: str) -> str:
        return self._path("pending", f"{key}.{attempt}.json")

    def zarr_store(self, key: str, attempt: str, read_only: bool = False) -> Any:
        """The zarr store rooted at one attempt's folder."""
        import zarr

        path = self._attempt_path(key, attempt)
        if self._local:
            return zarr.storage.LocalStore(path, read_only=read_only)
        return zarr.storage.FsspecStore.from_url(
            self._fs.unstrip_protocol(path), storage_options=self.storage_options, read_only=read_only
        )

    def _verified_store(self, key: str, ref: dict) -> Any:
        from .digest_stores import VerifyingStore

        return VerifyingStore(self.zarr_store(key, ref["attempt"], read_only=True), ref["digests"], local=self._local)

    # -- reading -------------------------------------------------------------------------

    def lookup(self, key: str) -> Lookup:
        """The committed entry under `key`, checked as far as is cheap: its ref verifies
        against its digest and its data folder is there (chunks are checked as they are
        read). A damaged entry is moved to quarantine and reported as a miss with the reason."""
        path = self._ref_path(_check_key(key))
        data = self._files.read(path)
        if data is None:
            return Lookup(None)
        try:
            ref = decode_ref(data)
        except _OldFormat:
            return Lookup(None)
        except ValueError as exc:
            return self._damaged(key, data, f"its ref {path} is damaged: {exc}")
        if ref["attempt"] is not None and not self._files.exists(posixpath.join(self._attempt_path(key, ref["attempt"]), "zarr.json")):
            return self._damaged(key, data, f"its data (attempt {ref['attempt']}) is missing")
        ref["_raw"] = data
        return Lookup(ref)

    def _damaged(self, key: str, data: bytes, reason: str) -> Lookup:
        moved_to = self.quarantine(key, data, reason)
        return Lookup(None, reason, moved_to, _lenient(data).get("node_id", ""))

    def _live_ref(self, key: str) -> dict | None:
        """The committed, verified ref of `key` (None on a miss)."""
        return self.lookup(key).ref

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
        """True only for committed entries whose ref verifies and whose data is present."""
        return self._live_ref(key) is not None

    def meta(self, key: str) -> EntryMeta | None:
        ref = self._live_ref(key)
        return None if ref is None else self._meta_from_ref(ref, self._last_used(key))

    def attempt_of(self, key: str) -> str | None:
        """The live attempt id of a committed entry (None if absent or all inline)."""
        ref = self._live_ref(key)
        return None if ref is None else ref["attempt"]

    def load(self, key: str, port: str, port_type: PortType) -> Any:
        """Load one output of a committed entry, every file checked against its digest.

        CacheMiss if the entry or port is absent; DamagedEntry (a CacheMiss) if the entry
        fails verification, after moving it to quarantine."""
        for _ in range(2):  # once more if another process replaced the entry while we read
            found = self.lookup(key)
            ref = found.ref
            if ref is None:
                if found.damage:
                    raise DamagedEntry(key, found.node_id, found.damage, found.moved_to)
                raise CacheMiss(f"no committed cache entry {key} in {self.url}")
            try:
                return self._load_port(key, ref, port, port_type)
            except DamagedData as exc:
                reason = f"output {port!r}: {exc}"
                moved_to = self.quarantine(key, ref["_raw"], reason)
                if moved_to is not None:
                    raise DamagedEntry(key, ref.get("node_id", ""), reason, moved_to) from None
                if self._files.read(self._ref_path(key)) is None:
                    raise CacheMiss(f"cache entry {key} was deleted while it was being read") from None
        raise CacheMiss(f"cache entry {key} kept changing while it was being read")

    def _load_port(self, key: str, ref: dict, port: str, port_type: PortType) -> Any:
        if port not in ref["outputs"]:
            have = ", ".join(sorted(ref["outputs"])) or "none"
            raise CacheMiss(f"cache entry {key} ({ref.get('node_id')}) has no output {port!r}; it has: {have}")
        if port in ref["inline"]:
            try:
                return port_type.from_inline(ref["inline"][port])
            except (ValueError, TypeError) as exc:
                raise CacheError(f"cache entry {key}: output {port!r} stored in its ref cannot be read as a "
                                 f"{port_type.name}: {exc}") from None
        if ref["attempt"] is None:
            raise DamagedData(port, "missing from the entry's data")
        import zarr  # only here: inline outputs never need it

        try:
            group = zarr.open_group(self._verified_store(key, ref), path=port, mode="r")
        except (FileNotFoundError, zarr.errors.NodeNotFoundError):
            raise DamagedData(port, "missing from the entry's data") from None
        value = port_type.load(group)
        # Deleting removes the ref before any data: if the ref is still there now, no data
        # had been removed while we read (gc or clear running in another process).
        if self._files.read(self._ref_path(key)) is None:
            raise CacheMiss(f"cache entry {key} was deleted while it was being read")
        return value

    def open_chunks(self, key: str, port: str, port_type: PortType) -> Any:
        """A lazy `stream.Chunks` view of one output of a committed entry: rows are read (and
        verified) only when asked for. A chunk that fails verification moves the entry to
        quarantine and raises DamagedEntry (a CacheMiss naming the key), as `load` does; an
        entry deleted while being read raises CacheMiss with `.key`."""
        from .stream import Chunks

        found = self.lookup(key)
        ref = found.ref
        if ref is None:
            if found.damage:
                raise DamagedEntry(key, found.node_id, found.damage, found.moved_to)
            raise _miss(key, f"no committed cache entry {key} in {self.url}")
        if port in ref["inline"] or port not in ref["outputs"]:
            return Chunks.of(self._load_port(key, ref, port, port_type))
        if ref["attempt"] is None:
            raise self._damaged_read(key, ref, port, DamagedData(port, "missing from the entry's data"))
        import zarr

        try:
            view = port_type.open_chunks(zarr.open_group(self._verified_store(key, ref), path=port, mode="r"))
        except DamagedData as exc:
            raise self._damaged_read(key, ref, port, exc) from None
        except (FileNotFoundError, KeyError, zarr.errors.NodeNotFoundError):
            raise self._damaged_read(key, ref, port, DamagedData(port, "missing from the entry's data")) from None

        def checked_rows(start: int, stop: int) -> Any:
            try:
                return view.rows(start, stop)
            except DamagedData as exc:
                raise self._damaged_read(key, ref, port, exc) from None

        return Chunks(view.shape, view.dtype, view.chunk_rows, checked_rows, hold_last=True)

    def _damaged_read(self, key: str, ref: dict, port: str, exc: DamagedData) -> CacheMiss:
        """What a reader raises when a file of `ref` failed its check: the entry goes to
        quarantine (DamagedEntry), or it was deleted or replaced meanwhile (a plain miss)."""
        reason = f"output {port!r}: {exc}"
        moved_to = self.quarantine(key, ref["_raw"], reason)
        if moved_to is not None:
            return DamagedEntry(key, ref.get("node_id", ""), reason, moved_to)
        return _miss(key, f"cache entry {key} was deleted or replaced while it was being read ({reason})")

    def open_outputs(self, key: str) -> Any:
        """The zarr root group of a committed entry, read-only and verified as it is read (for
        inspection); None when every output is inline (see `inline_outputs`)."""
        import zarr

        ref = self._live_ref(key)
        if ref is None:
            raise CacheMiss(f"no committed cache entry {key} in {self.url}")
        if ref["attempt"] is None:
            return None
        return zarr.open_group(self._verified_store(key, ref), mode="r")

    def inline_outputs(self, key: str) -> dict[str, Any]:
        """Port -> encoded value (graphcore/inline.py) of the outputs stored in the ref."""
        ref = self._live_ref(key)
        if ref is None:
            raise CacheMiss(f"no committed cache entry {key} in {self.url}")
        return dict(ref["inline"])

    def verify(self, key: str) -> str | None:
        """Check every file of a committed entry against its digest (reads all of it).
        Returns why it is damaged, or None if it is intact. Moves nothing."""
        path = self._ref_path(_check_key(key))
        data = self._files.read(path)
        if data is None:
            return None
        try:
            ref = decode_ref(data)
        except _OldFormat:
            return None  # never served: nothing to verify
        except ValueError as exc:
            return f"its ref {path} is damaged: {exc}"
        if ref["attempt"] is None:
            return None
        folder = self._attempt_path(key, ref["attempt"])
        paths = {posixpath.join(folder, rel): rel for rel in ref["digests"]}
        got = self._files.read_many(paths)
        for full, rel in paths.items():
            if full not in got:
                return f"{rel}: missing"
            if digest(got[full]) != ref["digests"][rel]:
                return f"{rel}: content changed ({len(got[full])} bytes, not what was written)"
        return None

    def verify_all(self) -> VerifyReport:
        """`verify` every entry (reads the whole cache)."""
        report = VerifyReport()
        for key in self._keys():
            data = self._files.read(self._ref_path(key))
            if data is None:
                continue
            try:
                decode_ref(data)
            except _OldFormat:
                report.outdated += 1
                continue
            except ValueError:
                pass
            report.entries += 1
            reason = self.verify(key)
            if reason is not None:
                report.damaged.append((key, _lenient(data).get("node_id", ""), reason))
        return report

    def repair(self, key: str, reason: str) -> bool:
        """Move a damaged entry (found by `verify`) to quarantine; False if it changed since."""
        data = self._files.read(self._ref_path(_check_key(key)))
        return data is not None and self.quarantine(key, data, reason) is not None

    def _keys(self) -> list[str]:
        names = self._files.list_names(self._path("refs"))
        return [n[:-5] for n in names if n.endswith(".json") and not n.startswith(".")]

    def ls(self) -> list[EntryMeta]:
        """All committed entries, oldest first. Reads only the small ref and last-use files;
        refs that do not verify are left out (a read of them quarantines them)."""
        keys = self._keys()
        refs = self._files.read_many([self._ref_path(k) for k in keys])
        used_keys = set(self._files.list_names(self._path("used"))) & set(keys)
        used = self._files.read_many([self._used_path(k) for k in sorted(used_keys)])
        out = []
        for key in keys:
            path = self._ref_path(key)
            try:
                ref = decode_ref(refs[path]) if path in refs else None
            except ValueError as exc:
                log.debug("cache ls: leaving out %s: %s", path, exc)
                ref = None
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
        found = self.lookup(matches[0])
        if found.ref is None:
            if found.damage:
                raise DamagedEntry(matches[0], found.node_id, found.damage, found.moved_to)
            raise CacheMiss(f"cache entry {matches[0]} is not served (written by an older version)")
        return self._meta_from_ref(found.ref, self._last_used(matches[0]))

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
        path = self._ref_path(_check_key(key))
        data = self._files.read(path)
        if data is None and not self._files.exists(path):
            return False
        self._files.remove(path)
        self._files.remove(self._used_path(key))
        attempt = _lenient(data).get("attempt")
        if attempt is not None:
            self._files.remove_tree(self._attempt_path(key, attempt))
        self._files.remove_empty_dir(self._path("objects", key))
        return True

    def restore_files(self, key: str, param: str, dest: str) -> None:
        """Write an output file (or folder) stored in an entry (`EntryWriter.save_files`) to
        `dest`, checked against its digests; a folder keeps its files' mtimes, so its manifest
        matches the entry's record. DamagedEntry (after quarantine) if it does not verify."""
        from zarr.core.buffer import default_buffer_prototype
        from zarr.core.sync import sync

        found = self.lookup(key)
        if found.ref is None or found.ref["attempt"] is None:
            if found.damage:
                raise DamagedEntry(key, found.node_id, found.damage, found.moved_to)
            raise CacheMiss(f"cache entry {key} does not hold the output '{param}'")
        store = self._verified_store(key, found.ref)

        def get(name: str) -> bytes:
            buf = sync(store.get(f"{FILES_PREFIX}/{param}/{name}", default_buffer_prototype()))
            if buf is None:
                raise DamagedData(f"{FILES_PREFIX}/{param}/{name}", "missing")
            return buf.to_bytes()

        try:
            restore_tree(json.loads(get("manifest.json")), get, dest)
        except DamagedData as exc:
            reason = f"output file '{param}': {exc}"
            raise DamagedEntry(key, found.ref.get("node_id", ""), reason,
                               self.quarantine(key, found.ref["_raw"], reason)) from None

    # -- staged input files (graphcore/staging.py) -------------------------------------------

    def _input_path(self, sha256: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise ValueError(f"invalid content hash {sha256!r}")
        return self._path("inputs", sha256)

    def has_input(self, sha256: str) -> bool:
        return self._files.exists(self._input_path(sha256))

    def put_input(self, path: str, sha256: str) -> None:
        """Upload a file the client reads, by content, for workers that do not see it."""
        self._files.put_file(path, self._input_path(sha256))

    def get_input(self, sha256: str, dest: str | os.PathLike) -> None:
        """Download a staged input file to `dest` (written under a part name, then renamed)."""
        from .outputs import atomic_output

        with atomic_output(dest) as part:
            self._files.get_file(self._input_path(sha256), str(part))

    def quarantine(self, key: str, data: bytes, reason: str) -> str | None:
        """Move a damaged entry aside: quarantine/<key>.<stamp>/ gets reason.json (node id,
        reason, when, who), the ref as it was and its data folder. From the moment its ref is
        removed the entry is a miss. Returns the folder, or None when the ref is no longer the
        damaged one (another process moved it, or a fresh commit replaced it)."""
        ref_path = self._ref_path(key)
        if self._files.read(ref_path) != data:
            return None
        found = _lenient(data)
        stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.urandom(3).hex()}"
        folder = self._path("quarantine", f"{key}.{stamp}")
        record = {"key": key, "node_id": found.get("node_id", ""), "reason": reason, "time": time.time(),
                  "host": socket.gethostname(), "writer": writer_tag(), "attempt": found.get("attempt")}
        self._files.write_atomic(posixpath.join(folder, "reason.json"), json.dumps(record).encode())
        self._files.write_atomic(posixpath.join(folder, "ref.json"), data)
        self._files.remove(ref_path)  # the entry is a miss from here on
        self._files.remove(self._used_path(key))
        if found.get("attempt"):
            source = self._attempt_path(key, found["attempt"])
            try:
                self._files.move_tree(source, posixpath.join(folder, "data"))
            except OSError as exc:  # keep nothing half-served: the orphan sweep deletes it later
                log.debug("could not move %s to quarantine: %s", source, exc)
            self._files.remove_empty_dir(self._path("objects", key))
        log.info("cache entry %s (%s) is damaged: %s; moved to %s", key[:12], record["node_id"], reason, folder)
        return folder

    def quarantined(self) -> list[dict]:
        """The quarantine records (reason.json), oldest first, each with its "folder"."""
        names = self._files.list_names(self._path("quarantine"))
        paths = {self._path("quarantine", n, "reason.json"): n for n in names}
        out = []
        for path, data in self._files.read_many(paths).items():
            try:
                record = json.loads(data)
            except ValueError:
                continue
            out.append({**record, "folder": self._path("quarantine", paths[path])})
        return sorted(out, key=lambda r: r.get("time", 0))

    def gc(self, max_size: int, dry_run: bool = False) -> GcReport:
        """Evict entries until their total size is at most `max_size` bytes, after sweeping
        what interrupted writers left and freeing quarantined data (see cache_sweep.gc)."""
        from .cache_sweep import gc

        return gc(self, max_size, dry_run)

    def clear(self) -> int:
        """Remove every entry, every unfinished attempt and the quarantine. Returns the
        number of entries. Do not clear a cache that a run is writing to: its writes will
        fail to commit."""
        keys = self._keys()
        for key in keys:
            self.delete(key)
        self.sweep_incomplete(older_than_s=0)
        for folder in ("quarantine", "inputs"):
            self._files.remove_tree(self._path(folder))
        return len(keys)

    def sweep(self, older_than_s: float = 3600) -> SweepReport:
        """Delete what interrupted writers left (see cache_sweep.sweep); a SweepReport."""
        from .cache_sweep import sweep

        return sweep(self, older_than_s)

    def sweep_incomplete(self, older_than_s: float = 3600) -> int:
        """`sweep`, returning the number of attempts deleted."""
        return self.sweep(older_than_s).attempts

    def sweep_dead_writers(self) -> SweepReport:
        """What writers on this host that are gone left behind (cheap: run at every run start)."""
        from .cache_sweep import sweep_dead_writers

        return sweep_dead_writers(self)


def _store_in_this_process(url: str, options: dict, durable: bool) -> CacheStore:
    """Unpickling a CacheStore: its public options and this process's own configuration."""
    from .cache_config import worker_options

    return CacheStore(url, worker_options(options), durable)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:300]}"


FILES_PREFIX = "__files__"  # output files stored in an attempt (never a port: ports cannot start with "__")
FILE_PART_BYTES = 32 * 1024 * 1024


def store_tree(path: str | os.PathLike, put: Any) -> None:
    """put(name, bytes) for every file under `path` (a file or a folder), in parts of at
    most FILE_PART_BYTES (`<n>/<part>`), then `manifest.json` listing them."""
    from pathlib import Path

    root = Path(path)
    files = [(".", root)] if root.is_file() else sorted((f.relative_to(root).as_posix(), f) for f in root.rglob("*") if f.is_file())
    listed = []
    for n, (rel, file) in enumerate(files):
        st = file.stat()
        parts = 0
        with open(file, "rb") as f:
            while True:
                data = f.read(FILE_PART_BYTES)
                if data or parts == 0:
                    put(f"{n}/{parts}", data)
                    parts += 1
                if len(data) < FILE_PART_BYTES:
                    break
        listed.append({"rel": rel, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "parts": parts})
    put("manifest.json", json.dumps({"folder": root.is_dir(), "files": listed}).encode())


def restore_tree(manifest: dict, get: Any, dest: str | os.PathLike) -> None:
    """Write what `store_tree` stored to `dest`: a file atomically (a part file renamed into
    place), a folder built next to it and swapped in."""
    import shutil
    from pathlib import Path

    from .outputs import atomic_output, part_path

    target = Path(dest)
    build = part_path(target) if manifest.get("folder") else None
    if build is not None:
        shutil.rmtree(build, ignore_errors=True)
        build.mkdir(parents=True)
    for n, item in enumerate(manifest["files"]):
        out = target if build is None else build / item["rel"]
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(out) as part, open(part, "wb") as f:
            for i in range(item["parts"]):
                f.write(get(f"{n}/{i}"))
        os.utime(out, ns=(item["mtime_ns"], item["mtime_ns"]))
    if build is not None:
        old = target.with_name(f".{target.name}.{writer_tag()}.old")
        if target.exists():
            os.rename(target, old)
        os.rename(build, target)
        shutil.rmtree(old, ignore_errors=True)


class EntryWriter:
    """Writes one attempt of an entry; nothing is visible to readers until `commit`.

    Small outputs are kept in memory for the ref (up to INLINE_MAX_BYTES for the entry);
    the others go to the attempt's Zarr group, created on first use, through a store that
    records each file's digest as it is written. Use as a context manager: leaving the block
    without committing (or by an exception) aborts and deletes the attempt's data.
    """

    def __init__(self, store: CacheStore, key: str) -> None:
        self.store, self.key = store, key
        self.attempt = f"{int(time.time())}-{os.urandom(8).hex()}"
        self.outputs: dict[str, str] = {}
        self._inline: dict[str, Any] = {}
        self._inline_left = INLINE_MAX_BYTES
        self._root: Any = None
        self._recorder: Any = None  # a RecordingStore (digest_stores.py) once data is written
        self._on_disk = False  # whether the attempt folder may exist
        self._marked = False  # whether our pending marker may exist
        self._claimed: list[str] = []  # output files this process may leave `.part` files of
        self._started = time.time()
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

    def _mark(self) -> None:
        """Leave (or update) the pending marker: who writes this attempt, which files."""
        marker = {"key": self.key, "attempt": self.attempt, "writer": writer_tag(), "host": socket.gethostname(),
                  "started": self._started, "files": self._claimed}
        self.store._files.write_atomic(self.store._pending_path(self.key, self.attempt), json.dumps(marker).encode())
        self._marked = True

    def claim_files(self, paths: list[str]) -> None:
        """Name the output files the node may write (and leave `.part` files of if killed)."""
        self._claimed = sorted(set(self._claimed) | {os.fspath(p) for p in paths})
        self._mark()

    def _root_group(self, heartbeat: bool = False) -> Any:
        """The attempt's root group, created on first use (so `started` means data is coming).

        `heartbeat` records activity: sweeps leave recently active attempts of other hosts alone."""
        import zarr

        now = time.time()
        if self._root is None:
            if not self._marked:
                self._mark()
            info: dict[str, Any] = {"key": self.key, "attempt": self.attempt, "started": now, "active": now,
                    "host": socket.gethostname(), "pid": os.getpid(), "writer": writer_tag()}
            from .digest_stores import RecordingStore

            self._on_disk = True
            self._recorder = RecordingStore(self.store.zarr_store(self.key, self.attempt))
            self._root = zarr.open_group(self._recorder, mode="w", attributes={"talkgraph": info})
        elif heartbeat:
            self._root.attrs["talkgraph"] = {**self._root.attrs["talkgraph"], "active": now}
        return self._root

    def save_files(self, param: str, path: str | os.PathLike) -> None:
        """Store an output file or folder the node wrote, in `__files__/<param>/` of the
        attempt (digested like every file), for a client that does not see this disk."""
        self._check_open()
        if not _PORT_RE.match(param):
            raise ValueError(f"invalid output parameter name {param!r} for the cache")
        self._root_group(heartbeat=True)
        store_tree(path, lambda name, data: self._put(f"{FILES_PREFIX}/{param}/{name}", data))

    def _put(self, name: str, data: bytes) -> None:
        from zarr.core.buffer import default_buffer_prototype
        from zarr.core.sync import sync

        sync(self._recorder.set(name, default_buffer_prototype().buffer.from_bytes(data)))

    def group(self, name: str) -> Any:
        """A new Zarr group for `name` in this attempt, for values written piece by piece
        (every file is digested as it is written, like `save`'s)."""
        self._check_open()
        return self._root_group(heartbeat=True).create_group(name)

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
                assert self._recorder is not None
                self._recorder.forget(port)
                self.store._files.remove_tree(posixpath.join(self.path, port))  # no half-saved port
                raise
        self.outputs[port] = port_type.name

    def stream(self, port: str, port_type: PortType) -> OutputStream:
        """Start an output written chunk by chunk as a node yields it (graphcore/stream.py):
        `append(chunk)` for each chunk, then `close()`. Each file is digested as it is
        written, as with `save`; until `commit` nothing of it is served."""
        self._check_open()
        if not isinstance(port, str) or not _PORT_RE.match(port) or port.startswith("__"):
            raise ValueError(f"invalid output port name {port!r} for the cache")
        if port in self.outputs:
            raise CacheError(f"output {port!r} of cache entry {self.key} was already saved")
        group = self._root_group(heartbeat=True).create_group(port)
        return OutputStream(self, port, port_type, port_type.stream_writer(group))

    def commit(self, meta: dict) -> EntryMeta:
        """Publish the entry (ref written last). If another writer committed this key first,
        its entry is kept, this attempt is deleted, and its metadata is returned.

        `meta` sets node_id, node_type, params, seconds, files and extra; other keys go to extra.
        """
        self._check_open()
        files, store = self.store._files, self.store
        if self._recorder is not None and not self._recorder.close_writes():
            raise CacheError(f"writes to cache entry {self.key} were still in flight at commit")
        if self._on_disk and not files.exists(posixpath.join(self.path, "zarr.json")):
            raise CacheError(f"the data of cache entry {self.key} vanished before commit (was the cache cleared?)")
        record = {k: meta[k] for k in _CALLER_FIELDS if k in meta}
        record["extra"] = {**record.get("extra", {}), **{k: v for k, v in meta.items() if k not in _CALLER_FIELDS}}
        now = time.time()
        digests = dict(self._recorder.digests) if self._recorder is not None else {}
        size = sum(self._recorder.sizes.values()) if self._recorder is not None else 0
        if self._inline:
            size += len(json.dumps(self._inline, separators=(",", ":")))
        record.update(format=FORMAT, key=self.key, attempt=self.attempt if self._on_disk else None,
                      outputs=dict(self.outputs), size_bytes=size, created=now, inline=self._inline, digests=digests)
        data = seal(json.dumps(record, separators=(",", ":"), default=_json_default).encode())
        if self._on_disk:
            files.sync_tree(self.path)

        ref_path = store._ref_path(self.key)
        if files.publish(ref_path, data):
            return self._committed(store._meta_from_ref(record, now))
        theirs = store._live_ref(self.key)
        if theirs is None:  # the existing ref is outdated or was damaged (now in quarantine): replace it
            files.write_atomic(ref_path, data, durable=store.durable)
            return self._committed(store._meta_from_ref(record, now))
        log.info("cache entry %s was committed by another writer first; keeping theirs", self.key)
        if self._on_disk:
            files.remove_tree(self.path)
            self._on_disk = False
        return self._committed(store._meta_from_ref(theirs, store._last_used(self.key)))

    def _committed(self, meta: EntryMeta) -> EntryMeta:
        self._state = "committed"
        self._unmark()
        return meta

    def _unmark(self) -> None:
        if self._marked:
            self.store._files.remove(self.store._pending_path(self.key, self.attempt))
            self._marked = False

    def abort(self) -> None:
        """Delete this attempt's data once no write to it is in flight any more; the cache is
        as if the writer never ran."""
        if self._state == "committed":
            raise CacheError(f"cache entry {self.key} is already committed; delete it with CacheStore.delete")
        self._state = "aborted"
        if self._recorder is not None and not self._recorder.close_writes():
            log.warning("cache attempt %s/%s: writes still in flight after waiting; deleting it anyway", self.key, self.attempt)
        if self._on_disk:
            self.store._files.remove_tree(self.path)
            self.store._files.remove_empty_dir(self.store._path("objects", self.key))
        self._unmark()


class OutputStream:
    """One output of an EntryWriter written chunk by chunk (see EntryWriter.stream)."""

    def __init__(self, writer: EntryWriter, port: str, port_type: PortType, appender: Any) -> None:
        self.writer, self.port, self.port_type, self.appender = writer, port, port_type, appender

    def append(self, chunk: Any) -> None:
        self.writer._check_open()
        self.appender.append(chunk)

    def close(self) -> tuple[int, ...]:
        """Write what is buffered; the output is part of the entry from now on. Its shape."""
        self.writer._check_open()
        zarray = self.appender.close()
        self.writer.outputs[self.port] = self.port_type.name
        return tuple(zarray.shape)
