"""Files across machines: what a dask worker reads and writes outside the cache.

A worker may not see the client's disk. So, on the dask executor:

* **Input files** (InputFile parameters, and implicit files such as bundled checkpoints) are
  keyed by content on the client, which records each one's sha256 in the plan and uploads
  the InputFile ones to the cache as `inputs/<sha256>` (once per content). A worker runs a
  node on its own file at the same path when that file's content matches, and otherwise on
  the staged copy, downloaded into a local staging folder (and checked). An implicit file
  cannot be redirected (the node finds it itself): a worker whose copy differs from the
  client's fails the node with a message saying so. Folders are checked, never staged.
* **Output files and folders** (OutputFile, OutputFolder) are written by the node into the
  worker's scratch folder; the engine stores them in the entry (`__files__/<param>/` in the
  attempt, digested like every file), and the client writes them where the user asked when
  the task is done (`Scheduler.record_success`). A later run whose output file is missing or
  changed restores it from the entry instead of running the node again.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from .keys import path_content_hash
from .plan import RunPlan, TaskNode

_staging_root: Path | None = None
_staging_lock = threading.Lock()


class StagingError(RuntimeError):
    """An input file cannot be had on this worker; the message says which and why."""


def staging_root() -> Path:
    """Where this worker keeps staged input files (one folder per host user, kept between
    runs: a content-addressed copy never goes stale)."""
    global _staging_root
    with _staging_lock:
        if _staging_root is None:
            _staging_root = Path(tempfile.gettempdir()) / f"graphrun-inputs-{os.getuid()}"
            _staging_root.mkdir(parents=True, exist_ok=True)
        return _staging_root


def _content_matches(path: str, sha256: str) -> bool:
    try:
        return path_content_hash(Path(path)) == sha256
    except OSError:
        return False


def upload_inputs(plan: RunPlan, cache: Any) -> int:
    """On the client: every InputFile of the plan's tasks into the cache (by content, once).
    Returns the number of files uploaded."""
    uploaded = 0
    for task in plan.nodes.values():
        for record in task.input_files.values():
            if record.get("param") and Path(record["path"]).is_file() and not cache.has_input(record["sha256"]):
                cache.put_input(record["path"], record["sha256"])
                uploaded += 1
    return uploaded


def stage_inputs(plan: RunPlan, cache: Any) -> RunPlan:
    """On a worker: the plan with each InputFile parameter pointing at a file whose content is
    the client's (this worker's own when it matches, else the staged copy). StagingError names
    a file that cannot be had."""
    nodes: dict[str, TaskNode] = {}
    for node_id, task in plan.nodes.items():
        params = None
        for name, record in task.input_files.items():
            if _content_matches(record["path"], record["sha256"]):
                continue
            if not record.get("param") or Path(record["path"]).is_dir():
                raise StagingError(
                    f"node '{node_id}' ({task.type}): its {'folder' if record.get('folder') else 'file'} "
                    f"{record['path']} ('{name}') differs on this worker from the client's (or is missing): "
                    "give every worker the same files and the same version of the code")
            staged = staging_root() / record["sha256"] / Path(record["path"]).name
            if not _content_matches(str(staged), record["sha256"]):
                if not cache.has_input(record["sha256"]):
                    raise StagingError(f"node '{node_id}' ({task.type}): input file {record['path']} ('{name}') is "
                                       f"not on this worker and was not staged in the cache {cache.url}")
                cache.get_input(record["sha256"], staged)
                if not _content_matches(str(staged), record["sha256"]):
                    raise StagingError(f"node '{node_id}' ({task.type}): the staged copy of {record['path']} "
                                       "does not match the client's file")
            params = params if params is not None else dict(task.params)
            params[name] = str(staged)
        nodes[node_id] = task if params is None else dataclasses.replace(task, params=params)
    return dataclasses.replace(plan, nodes=nodes)


def stage_outputs(task: TaskNode, scratch: Path) -> tuple[TaskNode, dict[str, str]]:
    """On a worker: the task writing its output files and folders under `scratch`, and
    {parameter: the path the user asked for}."""
    if not task.output_files and not task.output_folders:
        return task, {}
    asked = {**task.output_files, **task.output_folders}
    local = {param: str(scratch / param / Path(path).name) for param, path in asked.items()}
    return dataclasses.replace(
        task, params={**task.params, **local},
        output_files={p: local[p] for p in task.output_files},
        output_folders={p: local[p] for p in task.output_folders},
    ), asked


def remove_scratch(scratch: Path) -> None:
    shutil.rmtree(scratch, ignore_errors=True)
