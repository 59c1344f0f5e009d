"""`graphrun`: run, validate and inspect workflows, list nodes, manage the cache, open the editor.

    graphrun WORKFLOW.yaml [--set id.param=value]... [--cache URL] [--executor local|dask|dask://H:P]
                           [--jobs N] [--plugins PATH]... [--events FILE.jsonl] [--device cpu|cuda]
    graphrun validate WORKFLOW.yaml
    graphrun nodes [--json]            graphrun nodes describe TYPE [--json]
    graphrun cache ls|info KEY|verify [--repair]|gc --max-size SIZE|clear|rm KEY...
    graphrun COMMAND ...               a command an installed package adds (commands.py), e.g. `graphrun ui`

Exit codes: 0 success, 1 a node failed, 2 the workflow or the command line is wrong,
3 the cache's storage cannot be reached (an object store that is down, a wrong endpoint,
missing credentials), 130 interrupted. User errors are printed as messages, never as Python
tracebacks.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import re
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_STORE = 0, 1, 2, 3
COMMANDS = ("run", "validate", "nodes", "cache")  # the engine's own; packages add more (commands.py)


def _version() -> str:
    try:
        return importlib.metadata.version("talkgraph")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class UserError(Exception):
    """A mistake on the command line or in the environment: printed, exit code 2."""


# --- shared pieces ------------------------------------------------------------------------


def _registry(args: argparse.Namespace, err: Console) -> Any:
    from .registry import build_registry

    registry = build_registry(getattr(args, "plugins", None) or ())
    for problem in registry.errors:
        err.print(f"[yellow]warning:[/] plugin {escape(problem.plugin)}: {escape(problem.message)} "
                  "[dim](its nodes are unavailable; the other nodes work)[/]", highlight=False)
        if getattr(args, "verbose", False) and problem.detail:
            err.print(f"[dim]{escape(problem.detail)}[/]", highlight=False)
    return registry


def _print_problems(err: Console, problems: list) -> int:
    from .validation import format_problems

    err.print(escape(format_problems(problems)), highlight=False)
    err.print(f"[bold red]{len(problems)} problem{'s' if len(problems) != 1 else ''}[/] found; nothing was run.",
              highlight=False)
    return EXIT_USAGE


def _load_graph(args: argparse.Namespace, registry: Any) -> Any:
    """The compiled graph, or raises WorkflowError with every problem."""
    from .validation import check_workflow_file, compile_workflow
    from .workflow import WorkflowError

    roots = getattr(args, "allow_root", None) or None
    wf, problems = check_workflow_file(args.workflow, registry, args.set or [], roots=roots)
    if problems or wf is None:
        raise WorkflowError(problems)
    return compile_workflow(wf, registry, validated=True)  # check_workflow_file validated it


def _add_workflow_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("workflow", metavar="WORKFLOW.yaml", help="the workflow file")
    p.add_argument("--set", action="append", metavar="ID.PARAM=VALUE", default=[],
                   help="override a parameter (repeatable); the value is read as YAML")
    p.add_argument("--allow-root", action="append", metavar="DIR", default=[],
                   help="only let nodes read and write files under these folders (or URL prefixes; repeatable); "
                        "a path outside them is a validation problem")
    _add_plugin_option(p)


def _add_plugin_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plugins", action="append", metavar="PATH", default=[],
                   help="a node plugin: a .py file, a package folder or a folder of them (repeatable; "
                        "also $GRAPHRUN_PLUGINS)")
    p.add_argument("-v", "--verbose", action="store_true", help="show plugin import tracebacks")


# --- run ----------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace, out: Console, err: Console) -> int:
    from .cache import CacheError
    from .events import JsonLinesSink
    from .executors import ExecutorError
    from .progress import ProgressDisplay, print_summary
    from .scheduler import run_graph
    from .workflow import WorkflowError

    if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", args.device):
        raise UserError(f"unknown device {args.device!r}: use cpu, cuda, cuda:N or mps")
    registry = _registry(args, err)
    try:
        graph = _load_graph(args, registry)
    except WorkflowError as exc:
        return _print_problems(err, exc.problems)
    cache = _open_cache(args.cache, args.cache_option)
    try:
        cache.check_reachable()
    except CacheError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        return EXIT_STORE
    jobs = args.jobs if args.jobs is not None else (0 if args.executor == "dask" else 1)
    if args.executor == "dask" and jobs == 0:
        import os

        jobs = min(4, os.cpu_count() or 1)
    listeners: list = []
    sink = JsonLinesSink(args.events) if args.events else None
    if sink is not None:
        listeners.append(sink)
    display = ProgressDisplay(out, verbose=args.verbose)
    listeners.append(display)
    try:
        with display:
            report = run_graph(graph, cache=cache, executor=args.executor, jobs=jobs, listeners=listeners,
                               device=args.device, plugin_paths=args.plugins, keep_streamed=not args.drop_streamed)
    except WorkflowError as exc:  # e.g. an input file that cannot be read while keying
        return _print_problems(err, exc.problems)
    except ExecutorError as exc:
        raise UserError(str(exc)) from None
    finally:
        if sink is not None:
            sink.close()
    print_summary(out, report, cache.url)
    return EXIT_OK if report.ok else EXIT_FAILED


def _open_cache(url: str | None, options: Sequence[str] = ()) -> Any:
    """The cache from --cache/--cache-option, $GRAPHRUN_CACHE and the config file."""
    from .cache import CacheStore
    from .cache_config import ConfigError, cache_settings

    try:
        url, storage_options = cache_settings(url, options or ())
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    try:
        return CacheStore(url, storage_options)
    except (OSError, ValueError, ImportError, TypeError) as exc:
        raise UserError(f"cannot open the cache {url}: {exc}") from None


def cmd_validate(args: argparse.Namespace, out: Console, err: Console) -> int:
    from .workflow import WorkflowError

    registry = _registry(args, err)
    try:
        graph = _load_graph(args, registry)
    except WorkflowError as exc:
        return _print_problems(err, exc.problems)
    out.print(f"[green]ok[/]: {escape(args.workflow)} is valid ({len(graph.nodes)} nodes)", highlight=False)
    return EXIT_OK


# --- nodes --------------------------------------------------------------------------------


def cmd_nodes(args: argparse.Namespace, out: Console, err: Console) -> int:
    if getattr(args, "nodes_command", None) == "describe":
        return cmd_describe(args, out, err)
    registry = _registry(args, err)
    if args.json:
        sys.stdout.write(json.dumps(registry.schema(), indent=2, default=str) + "\n")
        return EXIT_OK
    by_category: dict[str, list] = {}
    for cls in registry.all():
        by_category.setdefault(cls.category, []).append(cls)
    width = max((len(c.type_name) for c in registry.all()), default=0)
    for category in sorted(by_category):
        out.print(f"[bold]{escape(category)}[/]")
        for cls in by_category[category]:
            summary = (cls.description().splitlines() or [""])[0]
            out.print(f"  {escape(cls.type_name.ljust(width))}  {escape(summary)}  [dim]\\[{escape(cls.origin)}][/]",
                      highlight=False)
    if registry.errors:
        out.print("[bold red]plugins that failed to load[/]")
        for problem in registry.errors:
            out.print(f"  {escape(problem.plugin)}: {escape(problem.message)}", highlight=False)
    return EXIT_OK


def cmd_describe(args: argparse.Namespace, out: Console, err: Console) -> int:
    from .imports import code_imports
    from .loader import suggest

    registry = _registry(args, err)
    if args.type not in registry:
        raise UserError(f"unknown node type '{args.type}'{suggest(args.type, registry.names())}; "
                        "`graphrun nodes` lists them")
    cls = registry.get(args.type)
    try:
        schema = cls.schema()
    except Exception as exc:  # extra_schema() is the node's own code
        raise UserError(f"node type {args.type!r} (from {cls.origin}) cannot describe itself: "
                        f"{type(exc).__name__}: {exc}") from None
    schema["code_imports"] = code_imports(cls)
    if args.json:
        sys.stdout.write(json.dumps(schema, indent=2, default=str) + "\n")
        return EXIT_OK
    out.print(f"[bold]{escape(schema['type'])}[/]  [dim]category {escape(schema['category'])} · version "
              f"{escape(str(schema['version']))} · cache {schema['cache']} · from {escape(schema['origin'])}[/]",
              highlight=False)
    if schema["description"]:
        out.print(escape(schema["description"]), highlight=False)
    for title in ("inputs", "outputs"):
        out.print(f"\n[bold]{title}[/]")
        if not schema[title]:
            out.print("  (none)")
        for name, port in schema[title].items():
            opt = " [dim](optional)[/]" if port.get("optional") else ""
            opt += " [dim](streamed)[/]" if port.get("stream") else ""
            doc = f" — {escape(port['doc'])}" if port.get("doc") else ""
            out.print(f"  {escape(name)}: {escape(port['type'])}{opt}{doc}", highlight=False)
    out.print("\n[bold]streams[/] " + escape(describe_streams(schema.get("streams") or {})), highlight=False)
    out.print("\n[bold]params[/]")
    params = describe_params(schema["params"], schema.get("files", {}))
    if not params:
        out.print("  (none)")
    for line in params:
        out.print("  " + escape(line), highlight=False)
    if schema["code_imports"] or schema.get("code_dependencies"):
        out.print("\n[bold]code dependencies[/] [dim](their source is part of the cache key)[/]")
        if schema["code_imports"]:
            out.print("  imported: " + escape(", ".join(schema["code_imports"])), highlight=False)
        if schema.get("code_dependencies"):
            out.print("  declared: " + escape(", ".join(schema["code_dependencies"])), highlight=False)
    standard = {"type", "category", "version", "cache", "origin", "description", "inputs", "outputs", "params", "files",
                "code_dependencies", "code_imports", "streams"}
    extra = {k: v for k, v in schema.items() if k not in standard}
    if extra:
        out.print("\n[bold]facts[/]")
        for k, v in extra.items():
            out.print(f"  {escape(k)}: {escape(json.dumps(v, default=str))}", highlight=False)
    return EXIT_OK


def describe_streams(streams: dict[str, list[str]]) -> str:
    """One line: which ports go chunk by chunk along time, or that the node takes whole arrays."""
    ins, outs = streams.get("inputs") or [], streams.get("outputs") or []
    if not ins and not outs:
        return "no: it takes and gives whole values (streamed inputs are read whole for it)"
    parts = ([f"reads {', '.join(ins)} chunk by chunk"] if ins else []) + \
            ([f"writes {', '.join(outs)} chunk by chunk"] if outs else [])
    return "yes: " + "; ".join(parts)


def describe_params(json_schema: dict, files: dict[str, str]) -> list[str]:
    """One line per parameter: name, type, default, bounds, choices, file role, description."""
    defs = json_schema.get("$defs", {})
    required = set(json_schema.get("required", []))
    lines = []
    for name, prop in json_schema.get("properties", {}).items():
        facts = [_schema_type(prop, defs)]
        if name in required:
            facts.append("required")
        elif "default" in prop:
            facts.append(f"default {json.dumps(prop['default'])}")
        bounds = [f"{sym} {prop[k]}" for k, sym in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="),
                                                     ("exclusiveMaximum", "<"), ("minLength", "length >="),
                                                     ("maxLength", "length <=")) if k in prop]
        facts.extend(bounds)
        choices = _choices(prop, defs)
        if choices:
            facts.append("one of " + ", ".join(json.dumps(c) for c in choices))
        if name in files:
            facts.append({"read": "file read (content keys the cache)", "read-path": "path read", "write": "file written",
                          "write-folder": "folder written", "write-path": "path written (not tracked)"}.get(files[name], files[name]))
        desc = prop.get("description", "")
        lines.append(f"{name}: {'; '.join(facts)}" + (f" — {desc}" if desc else ""))
    return lines


def _schema_type(prop: dict, defs: dict) -> str:
    if "$ref" in prop:
        prop = defs.get(prop["$ref"].split("/")[-1], {})
    if "anyOf" in prop:
        return " | ".join(_schema_type(p, defs) for p in prop["anyOf"])
    t = prop.get("type")
    if t == "array" and "items" in prop:
        return f"list[{_schema_type(prop['items'], defs)}]"
    if t is None and "enum" in prop:
        return "choice"
    return t or "any"


def _choices(prop: dict, defs: dict) -> list:
    if "$ref" in prop:
        prop = defs.get(prop["$ref"].split("/")[-1], {})
    if "enum" in prop:
        return list(prop["enum"])
    if "const" in prop:
        return [prop["const"]]
    out: list = []
    for sub in prop.get("anyOf", []):
        out.extend(_choices(sub, defs))
    return out


# --- cache --------------------------------------------------------------------------------


def _add_cache_parser(sub: Any) -> None:
    from .cache_cli import add_cache_commands

    add_cache_commands(sub)  # its commands take (args) and make their own consoles


# --- entry point --------------------------------------------------------------------------


def build_parser(installed: dict[str, Any] | None = None) -> argparse.ArgumentParser:
    """The engine's commands, plus `installed` ones (name -> entry point) listed for --help."""
    parser = argparse.ArgumentParser(
        prog="graphrun",
        description="Run typed-node workflows with a content-addressed cache.\n\n"
                    "  graphrun WORKFLOW.yaml [options]   run a workflow (same as `graphrun run`)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"graphrun (talkgraph) {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run a workflow (the default command)",
                         description="Run a workflow; only nodes whose cache key changed are recomputed.")
    _add_workflow_options(run)
    run.add_argument("--cache", metavar="URL", help="cache location: a folder or fsspec URL "
                                                  "(default $GRAPHRUN_CACHE or the user cache folder)")
    run.add_argument("--cache-option", action="append", default=[], metavar="KEY=VALUE",
                     help="a storage option of the cache's filesystem, e.g. endpoint_url=http://127.0.0.1:9000 "
                          "(repeatable; also [cache.storage_options] in the config file, see docs/deploy.md)")
    run.add_argument("--executor", default="local", metavar="local|dask|dask://HOST:PORT",
                     help="where nodes run: in this process (default), on a local dask cluster, or on a "
                          "running dask scheduler (the cache must then be reachable from its workers)")
    run.add_argument("--jobs", "-j", type=int, metavar="N",
                     help="independent nodes run at once (local threads, or dask worker processes)")
    run.add_argument("--events", metavar="FILE.jsonl", help="write every run event as a JSON line")
    run.add_argument("--device", default="cpu", metavar="cpu|cuda", help="device handed to nodes (default cpu)")
    run.add_argument("--drop-streamed", action="store_true",
                     help="do not keep streamed intermediate values (frames, flow, masks: MBs a frame) in the "
                          "cache once the nodes that read them are done; for long clips on a small disk")
    run.set_defaults(func=cmd_run)

    val = sub.add_parser("validate", help="check a workflow without running it",
                         description="Report every problem of a workflow at once (exit 2), or say it is valid.")
    _add_workflow_options(val)
    val.set_defaults(func=cmd_validate)

    nodes = sub.add_parser("nodes", help="list the available node types",
                           description="List node types grouped by category, with where they come from.")
    nodes.add_argument("--json", action="store_true", help="the full schema of every node and type as JSON")
    _add_plugin_option(nodes)
    nodes.set_defaults(func=cmd_nodes)
    nodes_sub = nodes.add_subparsers(dest="nodes_command", metavar="describe")
    describe = nodes_sub.add_parser("describe", help="ports, parameters and docs of one node type",
                                    description="Print a node type's ports, parameters (defaults, bounds, "
                                                "choices) and documentation.")
    describe.add_argument("type", metavar="TYPE")
    describe.add_argument("--json", action="store_true", help="the node's schema as JSON")
    _add_plugin_option(describe)

    _add_cache_parser(sub)

    from .commands import provider, summary

    for name, ep in sorted((installed or {}).items()):
        if name not in COMMANDS:
            sub.add_parser(name, help=f"{summary(ep)} [from {provider(ep)}; `graphrun {name} --help`]", add_help=False)
    return parser


def _installed_command(name: str) -> Any:
    """The entry point of an installed command `name`, or None. A name that is an existing file
    or ends in .yaml/.yml is a workflow: no package metadata is read for it."""
    from pathlib import Path

    if name.endswith((".yaml", ".yml")) or Path(name).is_file():
        return None
    from .commands import command_entry_points

    return command_entry_points().get(name)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    out = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    if argv and not argv[0].startswith("-") and argv[0] not in COMMANDS:
        command = _installed_command(argv[0])
        if command is not None:  # it parses its own options
            return _run_installed(command, argv[1:], err)
        argv.insert(0, "run")  # `graphrun WORKFLOW.yaml ...`
    wants_help = not argv or argv[0] in ("-h", "--help")
    if wants_help:
        from .commands import command_entry_points

        parser = build_parser(command_entry_points())
    else:
        parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        if args.command == "cache":
            return int(args.func(args) or 0)
        return int(args.func(args, out, err) or 0)
    except UserError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: finished nodes are in the cache; run again to resume")
        return 130


def _run_installed(command: Any, argv: list[str], err: Console) -> int:
    from .commands import CommandError, run_command

    try:
        return run_command(command, argv)
    except CommandError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        return 130


if __name__ == "__main__":
    sys.exit(main())
