"""Subcommands that installed packages add to `graphrun` (entry-point group `graphrun.commands`).

An entry point `NAME = package.module:function` makes `graphrun NAME ARGS...` call
`function(ARGS)` with the remaining arguments as a list of strings; the function parses its own
options (its usage should say `graphrun NAME`) and returns an exit code. The first line of its
docstring is its summary in `graphrun --help`. talkgraph adds the editor this way
(its `ui` entry point in pyproject.toml), so the engine never imports a command's package by name.
"""
from __future__ import annotations

import importlib.metadata
import inspect
from collections.abc import Callable, Sequence

COMMANDS_GROUP = "graphrun.commands"

Command = Callable[..., int | None]  # (argv: list[str]) -> exit code; a function taking no argument is allowed


class CommandError(Exception):
    """A registered command that cannot be loaded (its package or one of its imports is missing)."""


def command_entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    """Name -> entry point of every installed command (the first one wins on a name clash)."""
    found: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in importlib.metadata.entry_points(group=COMMANDS_GROUP):
        found.setdefault(ep.name, ep)
    return found


def provider(ep: importlib.metadata.EntryPoint) -> str:
    return ep.dist.name if ep.dist is not None else ep.value.partition(":")[0]


def load_command(ep: importlib.metadata.EntryPoint) -> Command:
    try:
        fn = ep.load()
    except ImportError as exc:
        missing = getattr(exc, "name", None)
        why = f"missing module {missing!r}" if missing else str(exc)
        raise CommandError(f"the command {ep.name!r} (from {provider(ep)}) cannot start: {why}; install "
                           f"{provider(ep)} with the extras it needs (e.g. `pip install -e '.[{ep.name}]'`)") from None
    if not callable(fn):
        raise CommandError(f"the command {ep.name!r} (from {provider(ep)}): {ep.value} is not a function")
    return fn


def run_command(ep: importlib.metadata.EntryPoint, argv: Sequence[str]) -> int:
    fn = load_command(ep)
    takes_args = bool(inspect.signature(fn).parameters)
    return int((fn(list(argv)) if takes_args else fn()) or 0)


def summary(ep: importlib.metadata.EntryPoint) -> str:
    """The command's one-line help: its docstring's first line, or where it comes from."""
    try:
        doc = inspect.getdoc(load_command(ep)) or ""
    except CommandError as exc:
        return f"(unavailable: {exc})"
    first = doc.strip().splitlines()[0] if doc.strip() else ""
    return first or f"(from {provider(ep)})"
