"""Every workflow file the project ships validates against the registry with what the repository
holds (bundled checkpoints, the sample media): one test per file, found on disk, so a new workflow
is covered the day it is added."""
from __future__ import annotations

import pytest
from engine_helpers import ROOT

from graphcore.loader import load_workflow
from graphcore.registry import build_registry
from graphcore.validation import validate

# Workflows that read what the user (or another workflow) makes first: the only problems they may
# show here are "file not found" for these paths, each with the message saying how to make it.
MADE_ELSEWHERE = {
    "official/audio2head.yaml": "weights/audio2head/", "official/hdtf.yaml": "weights/hdtf/",
    "official/ip_lap.yaml": "weights/ip_lap/", "official/yi.yaml": "weights/yi/",
    "prepare_dataset.yaml": "out/synth_mp4", "train_ip_lap_landmarks.yaml": "out/yi_synth.zarr",
    "train_ip_lap_prior.yaml": "out/yi_synth.zarr",
}
SHIPPED = sorted(p.relative_to(ROOT / "workflows").as_posix() for p in (ROOT / "workflows").rglob("*.yaml"))


@pytest.fixture(scope="module")
def registry():
    return build_registry()


def test_the_shipped_workflows_are_found():
    assert {"hdtf.yaml", "ip_lap.yaml", "train_ip_lap_landmarks.yaml", "examples/a2h_head_motion_warp.yaml"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_workflow_validates(registry, name):
    problems = validate(load_workflow(ROOT / "workflows" / name), registry)
    missing = MADE_ELSEWHERE.get(name)
    unexpected = [p for p in problems if not (missing and p.kind == "file" and missing in p.message)]
    assert not unexpected, "\n".join(map(str, unexpected))
    if name.startswith("official/"):
        assert all("graphrun weights import" in p.message for p in problems)
