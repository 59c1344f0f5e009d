"""Input files on a worker that does not see the client's disk (graphcore/staging.py)."""
from __future__ import annotations

import numpy as np
import pytest
from engine_helpers import compile_file, write_workflow

from graphcore.cache import CacheStore
from graphcore.keys import compute_keys
from graphcore.plan import build_plan
from graphcore.staging import StagingError, stage_inputs, stage_outputs, upload_inputs


def plan_for(tmp_path, text):
    graph = compile_file(write_workflow(tmp_path, text))
    return build_plan(graph, compute_keys(graph, "s"), run_id="r")


def test_inputs_are_checked_and_fetched_from_the_cache_when_they_differ(tmp_path):
    np.save(tmp_path / "in.npy", np.arange(5))
    plan = plan_for(tmp_path, "version: 1\nnodes:\n  load: {type: LoadArray, params: {path: in.npy}}\n")
    record = plan.nodes["load"].input_files["path"]
    assert record["path"] == str(tmp_path / "in.npy") and record["param"] and not record["folder"]
    cache = CacheStore(str(tmp_path / "cache"))
    assert stage_inputs(plan, cache) .nodes["load"].params["path"] == "in.npy"  # the worker's own file matches
    assert upload_inputs(plan, cache) == 1 and upload_inputs(plan, cache) == 0  # once per content

    np.save(tmp_path / "in.npy", np.arange(6))  # this "worker" has another file at that path
    staged = stage_inputs(plan, cache).nodes["load"].params["path"]
    assert staged != "in.npy" and np.load(staged).tolist() == [0, 1, 2, 3, 4]
    (tmp_path / "in.npy").unlink()  # or none at all
    assert stage_inputs(plan, cache).nodes["load"].params["path"] == staged

    empty = CacheStore(str(tmp_path / "other"))
    import shutil

    shutil.rmtree(staged.rsplit("/", 2)[0])
    with pytest.raises(StagingError, match=r"node 'load' \(LoadArray\): input file .*in.npy \('path'\) is not on this worker"):
        stage_inputs(plan, empty)


def test_outputs_go_to_scratch_and_name_the_users_path(tmp_path):
    plan = plan_for(tmp_path, "version: 1\nnodes:\n  r: {type: Range}\n  s: {type: SaveArray, params: {path: out/a.npy}, inputs: {array: r.array}}\n")
    task, asked = stage_outputs(plan.nodes["s"], tmp_path / "scratch")
    assert asked == {"path": str(tmp_path / "out" / "a.npy")}
    assert task.output_files == {"path": str(tmp_path / "scratch" / "path" / "a.npy")} == {"path": task.params["path"]}
