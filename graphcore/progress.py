"""What `graphrun` shows while a workflow runs, and the summary after it.

Live: one line per running node (with a progress bar once the node reports progress), a line
when a node finishes, fails or is skipped, and the node's log messages. After the run: a table
of every node (cached / ran / failed / skipped, seconds), where the output files are, and the
errors (NodeError messages alone; other exceptions with a short traceback tail).
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from .events import Event

if TYPE_CHECKING:  # a name rich defines for type checkers only
    from rich.text import JustifyMethod

STATUS_STYLE = {"cached": "dim", "ran": "green", "failed": "bold red", "skipped": "yellow", "cancelled": "magenta"}
FULL_TABLE_ROWS = 40  # above this, the table lists only what did not come from the cache


class ProgressDisplay:
    """An event listener driving a rich progress display; use as a context manager."""

    def __init__(self, console: Console, *, verbose: bool = False) -> None:
        self.console = console
        self.verbose = verbose
        self.progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=30), MofNCompleteColumn(),
            TimeElapsedColumn(), console=console, transient=True, disable=not console.is_terminal,
        )
        self._tasks: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> ProgressDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def _print(self, text: str) -> None:
        self.progress.console.print(text, highlight=False)

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._handle(event)

    def _handle(self, ev: Event) -> None:
        node = ev.node_id or ""
        who = f"[bold]{escape(node)}[/] [dim]({escape(ev.node_type or '')})[/]"
        if ev.kind == "run_started":
            n_run, n_all = len(ev.data.get("to_run", [])), len(ev.data.get("nodes", []))
            self._print(f"[dim]{n_all} nodes: {n_all - n_run} cached, {n_run} to run[/]")
        elif ev.kind == "started":
            self._tasks[node] = self.progress.add_task(who, total=None)
        elif ev.kind == "progress":
            task = self._tasks.get(node)
            if task is not None:
                msg = ev.data.get("message") or ""
                self.progress.update(task, total=ev.data.get("n"), completed=ev.data.get("i"),
                                     description=who + (f" [dim]{escape(msg)}[/]" if msg else ""))
        elif ev.kind == "log":
            message = escape(str(ev.data.get("message", "")))
            self._print(f"  {who}: {message}" if ev.node_id else f"[dim]{message}[/]")
        elif ev.kind == "retrying":
            task = self._tasks.pop(node, None)
            if task is not None:
                self.progress.remove_task(task)
            self._print(f"[yellow]↻[/] {who}: {escape(str(ev.data.get('reason', '')))} "
                        f"({escape(str(ev.data.get('worker', '')))}); running it again")
        elif ev.kind == "quarantined":
            self._print(f"[yellow]![/] {who}: its cache entry is damaged ({escape(str(ev.data.get('reason', '')))}); "
                        f"moved to {escape(str(ev.data.get('moved_to', '')))}, recomputing")
        elif ev.kind in ("finished", "failed", "skipped", "cancelled"):
            task = self._tasks.pop(node, None)
            if task is not None:
                self.progress.remove_task(task)
            if ev.kind == "finished":
                self._print(f"[green]✓[/] {who} {ev.data.get('seconds', 0.0):.2f}s")
            elif ev.kind == "failed":
                self._print(f"[red]✗[/] {who}: {escape(str(ev.data.get('error', '')))}")
            elif ev.kind == "cancelled":
                self._print(f"[magenta]■[/] {who} cancelled: {escape(str(ev.data.get('error', '')))}")
            else:
                self._print(f"[yellow]–[/] {who} skipped: {escape(str(ev.data.get('error', '')))}")


def print_summary(console: Console, report: Any, cache_url: str) -> None:
    """The table of nodes, the output files, the errors and a one-line verdict."""
    table = Table(show_edge=False, pad_edge=False, header_style="bold")
    columns: tuple[tuple[str, JustifyMethod], ...] = (("node", "left"), ("type", "left"), ("status", "left"), ("seconds", "right"))
    for col, justify in columns:
        table.add_column(col, justify=justify)
    rows = list(report.status.items())
    hidden = 0
    if len(rows) > FULL_TABLE_ROWS:
        hidden = sum(1 for _, s in rows if s == "cached")
        rows = [(n, s) for n, s in rows if s != "cached"]
    for node_id, status in rows:
        secs = report.seconds.get(node_id)
        table.add_row(escape(node_id), escape(report.graph.nodes[node_id].cls.type_name),
                      f"[{STATUS_STYLE[status]}]{status}[/]", f"{secs:.2f}" if secs is not None else "")
    console.print(table)
    if hidden:
        console.print(f"[dim]… and {hidden} cached nodes[/]")
    if report.files:
        console.print("[bold]Outputs[/]")
        for node_id, files in report.files.items():
            for param, path in files.items():
                mark = "" if report.status[node_id] in ("cached", "ran") else " [red](not written)[/]"
                console.print(f"  {escape(node_id)}.{escape(param)}: {escape(path)}{mark}", highlight=False)
    for err in report.errors:
        console.print(f"[bold red]error[/] in node [bold]{escape(err.node_id)}[/] ({escape(err.node_type)}): "
                      f"{escape(err.message)}", highlight=False)
        if err.detail and not err.user_error:
            console.print(f"[dim]{escape(err.detail)}[/]", highlight=False)
    counts = report.counts()
    summary = ", ".join(f"{counts[s]} {s}" for s in ("ran", "cached", "failed", "skipped", "cancelled") if counts[s])
    verdict = "[bold green]done[/]" if report.ok else "[bold red]failed[/]"
    console.print(f"{verdict}: {summary} in {report.elapsed:.2f}s [dim](cache: {escape(cache_url)})[/]", highlight=False)
