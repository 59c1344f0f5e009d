"""`graphrun cache ls | info KEY | verify [--repair] | gc --max-size SIZE [--dry-run] | clear [--yes] | rm KEY...`

`add_cache_commands(subparsers)` adds the `cache` command to graphrun's parser; every leaf
command sets `args.func`, a callable taking the parsed args and returning the exit code.
`main(argv)` runs the same commands on their own (`python -m graphcore.cache_cli cache ls`).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import re
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .cache import CacheError, CacheStore, EntryMeta, StoreUnreachable, default_cache_url, keep_score
from .inline import describe

EXIT_STORE = 3  # as graphrun's: the cache's storage cannot be reached

if TYPE_CHECKING:  # a name rich defines for type checkers only
    from rich.text import JustifyMethod

_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40, "P": 2**50}


def parse_size(text: str) -> int:
    """'500M', '10G', '1.5GiB', '2TB', '123' -> bytes (K/M/G/T are powers of 1024)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([KMGTP]?)(?:I?B)?\s*", str(text), flags=re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: use a number with an optional unit, e.g. 500M, 10G")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def format_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def format_time(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def format_ago(ts: float, now: float | None = None) -> str:
    if not ts:
        return "-"
    s = max(0.0, (time.time() if now is None else now) - ts)
    for limit, div, unit in ((60, 1, "s"), (3600, 60, "min"), (86400, 3600, "h"), (float("inf"), 86400, "d")):
        if s < limit:
            return f"{s / div:.0f} {unit} ago"
    return "-"


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Piped output is not wrapped to 80 columns: keys and paths stay on one line.
    return Console(file=stream, width=None if stream.isatty() else 200, highlight=False, soft_wrap=stderr)


def _store(args: argparse.Namespace) -> CacheStore:
    from .cache_config import cache_settings

    url, options = cache_settings(getattr(args, "cache", None), getattr(args, "cache_option", None) or ())
    store = CacheStore(url, options)
    store.check_reachable()
    return store


# -- commands ---------------------------------------------------------------------------

_SORTS = {
    "created": lambda e: e.created,
    "used": lambda e: e.last_used,
    "size": lambda e: e.size_bytes,
    "seconds": lambda e: e.seconds,
    "node": lambda e: (e.node_id, e.created),
}


def cmd_ls(args: argparse.Namespace) -> int:
    from rich.table import Table

    store = _store(args)
    entries = sorted(store.ls(), key=_SORTS[args.sort], reverse=args.sort in ("size", "seconds"))
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=1, default=str))
        return 0
    out = _console()
    if not entries:
        out.print(f"cache {store.url} is empty")
        return 0
    table = Table(title=f"cache {store.url}", title_justify="left")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("key", "left"), ("node", "left"), ("type", "left"), ("outputs", "left"), ("size", "right"), ("seconds", "right"),
        ("created", "left"), ("last used", "left"))
    for col, justify in columns:
        table.add_column(col, justify=justify, no_wrap=col in ("key", "created"))
    now = time.time()
    for e in entries:
        table.add_row(e.key[:12], e.node_id, e.node_type, ", ".join(e.outputs), format_size(e.size_bytes),
                      f"{e.seconds:.2f}", format_time(e.created), format_ago(e.last_used, now))
    out.print(table)
    out.print(f"{len(entries)} entries, {format_size(sum(e.size_bytes for e in entries))}")
    return 0


def _describe_port(group: Any, limit: int = 12) -> list[str]:
    """One line per stored array (path, shape, dtype, codec) and per small stored value."""
    import zarr

    lines: list[str] = []
    members = sorted(group.members(max_depth=None))
    for path, node in members:
        if isinstance(node, zarr.Array):
            codec = "lz4" if node.compressors else "raw"
            shape = "x".join(map(str, node.shape)) or "0-d"
            lines.append(f"{path}: {shape} {node.dtype} ({codec}, {format_size(node.nbytes)})")
    for prefix, g in [("", group)] + [(p, n) for p, n in members if isinstance(n, zarr.Group)]:
        for key, value in sorted(g.attrs.items()):
            if key.startswith("val:"):
                text = json.dumps(value, default=str)
                name = f"{prefix}/{key[4:]}" if prefix else key[4:]
                lines.append(f"{name} = {text if len(text) <= 60 else text[:57] + '...'}")
    return _at_most(lines, limit)


def describe_inline(doc: Any, limit: int = 12) -> list[str]:
    """The same lines for an output stored inline in the entry's ref."""
    return _at_most(describe(doc), limit)


def _at_most(lines: list[str], limit: int) -> list[str]:
    return lines[:limit] + [f"... {len(lines) - limit} more"] if len(lines) > limit else lines


def cmd_info(args: argparse.Namespace) -> int:
    from rich.table import Table

    store = _store(args)
    meta = store.find(args.key)
    inline = store.inline_outputs(meta.key)
    root: Any = store.open_outputs(meta.key) if set(meta.outputs) - set(inline) else None
    ports = {port: describe_inline(inline[port]) if port in inline else _describe_port(root[port]) for port in meta.outputs}
    if args.json:
        print(json.dumps({**meta.to_dict(), "stored": ports}, indent=1, default=str))
        return 0
    out = _console()
    summary = Table(show_header=False, box=None, pad_edge=False)
    summary.add_column(style="bold")
    summary.add_column()
    for label, value in (
        ("key", meta.key), ("node", f"{meta.node_id} ({meta.node_type})"),
        ("params", json.dumps(meta.params, indent=1, sort_keys=True, default=str)),
        ("seconds", f"{meta.seconds:.3f}"), ("size", f"{format_size(meta.size_bytes)} ({meta.size_bytes} bytes)"),
        ("created", format_time(meta.created)), ("last used", f"{format_time(meta.last_used)} ({format_ago(meta.last_used)})"),
        ("keep score", f"{keep_score(meta, time.time()):.3g} (gc evicts low scores first)"),
    ):
        summary.add_row(label, value)
    if meta.files:
        summary.add_row("files", "\n".join(
            f"{k}: {v.get('path')} (folder: {v.get('files')} files, manifest {str(v.get('manifest_sha256'))[:12]})"
            if v.get("folder") else f"{k}: {v.get('path')} (sha256 {str(v.get('sha256'))[:12]})" for k, v in meta.files.items()))
    if meta.extra:
        summary.add_row("extra", json.dumps(meta.extra, sort_keys=True, default=str))
    out.print(summary)
    table = Table(title="outputs", title_justify="left")
    table.add_column("port")
    table.add_column("type")
    table.add_column("stored as")
    for port, type_name in meta.outputs.items():
        table.add_row(port, type_name, "\n".join(ports[port]) or "-")
    out.print(table)
    return 0


def _entries_table(title: str, entries: list[EntryMeta]) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col in ("key", "node", "size", "seconds", "last used"):
        table.add_column(col, justify="right" if col in ("size", "seconds") else "left")
    now = time.time()
    for e in entries:
        table.add_row(e.key[:12], e.node_id, format_size(e.size_bytes), f"{e.seconds:.2f}", format_ago(e.last_used, now))
    return table


def cmd_gc(args: argparse.Namespace) -> int:
    store = _store(args)
    report = store.gc(args.max_size, dry_run=args.dry_run)
    out = _console()
    verb = "would evict" if report.dry_run else "evicted"
    if report.evicted:
        out.print(_entries_table(verb, report.evicted))
    out.print(
        f"{verb} {len(report.evicted)} entries ({format_size(report.freed_bytes)}, cheapest to recompute per byte first); "
        f"{report.kept} kept, {format_size(report.total_after)} of max {format_size(report.max_size)}"
    )
    if report.sweep.total:
        out.print(f"removed what interrupted writers left: {report.sweep.describe()} ({format_size(report.sweep.bytes)})")
    if report.quarantine_freed:
        out.print(f"{'would free' if report.dry_run else 'freed'} {report.quarantine_freed} quarantined entries "
                  f"({format_size(report.quarantine_bytes)}); their records stay (`cache verify` lists them)")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Read every file of every entry and check it against the digest recorded at commit."""
    from rich.table import Table

    store = _store(args)
    found = store.verify_all()
    out = _console()
    if found.damaged:
        table = Table(title="damaged entries", title_justify="left")
        for col in ("key", "node", "reason"):
            table.add_column(col, no_wrap=col == "key")
        for key, node_id, reason in found.damaged:
            table.add_row(key[:12], node_id, reason)
        out.print(table)
    out.print(f"verified {found.entries} entries in {store.url}: {len(found.damaged)} damaged"
              + (f", {found.outdated} of an older format (not served; `cache gc` removes them)" if found.outdated else ""))
    if found.damaged and args.repair:
        moved = sum(store.repair(key, reason) for key, _, reason in found.damaged)
        out.print(f"moved {moved} damaged {'entry' if moved == 1 else 'entries'} to quarantine: the next run "
                  "that needs them recomputes them")
    quarantined = store.quarantined()
    if quarantined:
        out.print(f"{len(quarantined)} entries in quarantine ({store.url}/quarantine; `cache gc` frees their data):")
        for record in quarantined[-10:]:
            out.print(f"  {format_time(record.get('time', 0))}  {str(record.get('key'))[:12]}  {record.get('node_id')}: "
                      f"{record.get('reason')}")
    return 1 if found.damaged and not args.repair else 0


def cmd_clear(args: argparse.Namespace) -> int:
    store = _store(args)
    entries = store.ls()
    out = _console()
    what = f"{len(entries)} entries ({format_size(sum(e.size_bytes for e in entries))}) from {store.url}"
    if not args.yes:
        if not sys.stdin.isatty():
            _console(stderr=True).print(f"refusing to delete {what} without --yes")
            return 1
        from rich.prompt import Confirm

        if not Confirm.ask(f"delete {what}?", default=False):
            out.print("nothing deleted")
            return 1
    count = store.clear()
    out.print(f"deleted {count} entries from {store.url}")
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    store = _store(args)
    metas = [store.find(prefix) for prefix in args.keys]  # all resolve before anything is deleted
    for meta in metas:
        store.delete(meta.key)
    _console().print(f"deleted {len(metas)} entries ({format_size(sum(m.size_bytes for m in metas))})")
    return 0


def _guard(fn: Any) -> Any:
    """Cache problems print one clear line and exit 1 (3 when the storage cannot be reached),
    without a traceback."""

    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except StoreUnreachable as exc:
            _console(stderr=True).print(f"[red]error:[/red] {exc}")
            return EXIT_STORE
        except (CacheError, ValueError, OSError) as exc:
            _console(stderr=True).print(f"[red]error:[/red] {exc}")
            return 1

    run.__name__ = run.__qualname__ = fn.__name__
    return run


def add_cache_commands(subparsers: Any) -> argparse.ArgumentParser:
    """Add `cache` (with ls, info, verify, gc, clear, rm) to an argparse subparsers object."""
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: an unset --cache here never hides a --cache given to the parent parser.
    common.add_argument("--cache", metavar="URL", default=argparse.SUPPRESS,
                        help=f"cache location: a folder or fsspec URL (default: $GRAPHRUN_CACHE, the config file or "
                             f"{default_cache_url()})")
    common.add_argument("--cache-option", action="append", metavar="KEY=VALUE", default=argparse.SUPPRESS,
                        help="a storage option of the cache's filesystem, e.g. endpoint_url=http://127.0.0.1:9000")
    cache = subparsers.add_parser("cache", help="inspect and trim the result cache",
                                  description="Inspect and trim the result cache.")
    sub = cache.add_subparsers(dest="cache_command", metavar="COMMAND", required=True)

    p = sub.add_parser("ls", parents=[common], help="list cached entries", description="List cached entries.")
    p.add_argument("--sort", choices=sorted(_SORTS), default="created", help="order of the rows (default: created)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_guard(cmd_ls))

    p = sub.add_parser("info", parents=[common], help="show one entry", description="Show one entry: node, parameters, outputs.")
    p.add_argument("key", help="the entry's key or a unique prefix of it (as `cache ls` shows)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.set_defaults(func=_guard(cmd_info))

    p = sub.add_parser("verify", parents=[common], help="check every entry against its digests",
                       description="Read every file of every entry and check it against the digests recorded at "
                                   "commit (runs check what they read as they read it). Exit 1 if any is damaged.")
    p.add_argument("--repair", action="store_true",
                   help="move damaged entries to quarantine, so the next run that needs them recomputes them")
    p.set_defaults(func=_guard(cmd_verify))

    p = sub.add_parser("gc", parents=[common], help="evict entries down to a size",
                       description="Evict entries until the cache holds at most --max-size. Entries cheapest to "
                                   "recompute per byte and least recently used go first; expensive ones stay longest.")
    p.add_argument("--max-size", required=True, type=parse_size, metavar="SIZE", help="e.g. 500M, 10G (powers of 1024)")
    p.add_argument("--dry-run", action="store_true", help="show what would be evicted; delete nothing")
    p.set_defaults(func=_guard(cmd_gc))

    p = sub.add_parser("clear", parents=[common], help="delete every entry", description="Delete every entry.")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=_guard(cmd_clear))

    p = sub.add_parser("rm", parents=[common], help="delete some entries", description="Delete the given entries.")
    p.add_argument("keys", nargs="+", metavar="KEY", help="keys or unique prefixes")
    p.set_defaults(func=_guard(cmd_rm))
    return cache


def main(argv: Sequence[str] | None = None) -> int:
    """Run `cache ...` as graphrun would (argv without the program name)."""
    parser = argparse.ArgumentParser(prog="graphrun")
    add_cache_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
