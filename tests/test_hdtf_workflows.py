"""The HDTF workflows (validation: tests/test_shipped_workflows.py): (slow) hdtf.yaml runs end to end
from graphrun, re-running only what a parameter change touches."""
from __future__ import annotations

import pytest
from engine_helpers import ROOT, graphrun

from graphcore.events import read_events


@pytest.mark.slow
def test_hdtf_workflow_end_to_end_and_partial_rerun(tmp_path):
    from nodes.io.media import probe_video

    cache, out = tmp_path / "cache", tmp_path / "hdtf.mp4"
    sets = ["--set", f"save.path={out}", "--set", f"fig9.path={tmp_path / 'fig9.png'}", "--set", f"fig8.path={tmp_path / 'fig8.png'}"]
    first = graphrun(ROOT / "workflows" / "hdtf.yaml", "--cache", cache, *sets, timeout=3600)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    info = probe_video(out)
    assert info.frames > 100 and (tmp_path / "fig9.png").exists() and (tmp_path / "fig8.png").exists()
    second = graphrun(ROOT / "workflows" / "hdtf.yaml", "--cache", cache, *sets, "--set", "save.crf=23",
                      "--events", tmp_path / "ev.jsonl", timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    ran = {e.node_id for e in read_events(tmp_path / "ev.jsonl") if e.kind == "started"}
    assert ran == {"save"}
