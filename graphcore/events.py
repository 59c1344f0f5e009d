"""Run and node lifecycle events: what the CLI progress display, `--events FILE` and the
editor all watch.

Kinds, in the order a node sees them: `queued` (will run) or `cached` (its key is committed),
then `started`, any number of `progress` (data: i, n, message) and `log` (data: message), and
`finished` (data: seconds) or `failed` (data: error); `skipped` (data: error, naming the
failed upstream) for dependents of a failure; `cancelled` (data: error) for a node stopped by a
cancelled run, or never started because of it. A run begins with `run_started` (data: nodes,
keys) and ends with `run_finished` (data: ok, seconds, counts).

`quarantined` (data: reason, moved_to, key): the node's cache entry failed verification and
was moved aside; the node runs again (`queued` follows). It may come after the node's
`cached`, when the damage was found by a reader: the node then runs after all. `log`
events with no node id are about the run (e.g. what a sweep of interrupted runs removed).
`retrying` (data: worker, reason): the node's task is run again (its dask worker was lost);
another `started` follows.
"""
from __future__ import annotations

import dataclasses
import io
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

KINDS = frozenset({
    "run_started", "queued", "cached", "started", "progress", "log", "finished", "failed", "skipped", "cancelled",
    "run_finished", "quarantined", "retrying",
})

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Event:
    kind: str
    run_id: str
    node_id: str | None = None
    node_type: str | None = None
    time: float = dataclasses.field(default_factory=time.time)
    data: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Event:
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})


Listener = Callable[[Event], None]


class EventBus:
    """Delivers events to listeners one at a time, from any thread. A listener that raises
    is logged and the run goes on."""

    def __init__(self, listeners: Iterable[Listener] = ()) -> None:
        self._listeners = list(listeners)
        self._lock = threading.Lock()

    def add(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def emit(self, event: Event) -> None:
        with self._lock:  # one event at a time, so listeners need no locks of their own
            for listener in self._listeners:
                try:
                    listener(event)
                except Exception:  # a display bug must never fail a run
                    log.exception("event listener %r failed on %s", listener, event.kind)


class JsonLinesSink:
    """A listener writing one JSON object per event (`graphrun --events FILE.jsonl`)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: io.TextIOBase | None = open(self.path, "w", encoding="utf-8")

    def __call__(self, event: Event) -> None:
        if self._file is None:
            return
        self._file.write(json.dumps(event.to_dict(), default=str) + "\n")
        if event.kind in ("run_finished", "failed", "finished", "started", "retrying", "quarantined"):
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_events(path: str | Path) -> list[Event]:
    with open(path, encoding="utf-8") as f:
        return [Event.from_dict(json.loads(line)) for line in f if line.strip()]
