"""The docs say what the code does: docs/workflow-format.md's example runs with its own `--set`
example, its validation table quotes real messages of real node types, and `make bench` runs
every benchmark in bench/."""
from __future__ import annotations

import re
import shutil

import numpy as np
from engine_helpers import ROOT, graphrun

FORMAT_DOC = (ROOT / "docs" / "workflow-format.md").read_text()


def test_the_set_example_runs_on_the_documented_workflow(tmp_path):
    example = FORMAT_DOC.split("## A complete example", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "flow.yaml").write_text(example)
    command = re.search(r"`graphrun WORKFLOW\.yaml ((?:--set \S+ ?)+)`", FORMAT_DOC)
    assert command, "the --set example is gone from docs/workflow-format.md"
    overrides = command.group(1).split()
    assert overrides.count("--set") >= 3
    res = graphrun(tmp_path / "flow.yaml", *overrides, "--cache", tmp_path / "cache")
    assert res.returncode == 0, res.stdout + res.stderr
    saved = np.load(tmp_path / "out" / "smoothed.npy")
    assert saved.shape == (1000,) and np.isfinite(saved).all()


# A workflow of real talkgraph nodes with the mistakes the validation table shows.
MISTAKES = """\
version: 1
nodes:
  voice:
    type: LoadAudio
    params: {path: speech.wav}
  feats:
    type: AudioFeatures
    params: {fsp: 25}
  feats2:
    type: AudioFeatures
    params: {fps: 500, variant: mfcc-pitch}
    inputs: {audio: voice.audio}
  noise:
    type: RandomArray
    params: {shape: [2, four]}
  save:
    type: SaveVideo
    inputs: {frames: voice.audio, audi: voice.audio, fps: fast}
  load:
    type: LoadAudio
"""


def test_the_validation_table_quotes_real_messages(tmp_path):
    table = FORMAT_DOC.split("The checks:", 1)[1].split("## In code", 1)[0]
    (tmp_path / "flow.yaml").write_text(MISTAKES)
    shutil.copy(ROOT / "assets" / "samples" / "speech.wav", tmp_path / "speech.wav")
    res = graphrun("validate", tmp_path / "flow.yaml")
    assert res.returncode == 2, res.stdout + res.stderr
    expected = [
        "unknown param 'fsp' for AudioFeatures (did you mean 'fps'?); its params: fps, mel_align, num_frames, recognition, transcript, variant",
        "param 'fps' = 500: must be ≤ 100",
        "param 'variant' = 'mfcc-pitch': not one of 'mfcc_pitch', 'a2h', 'mel', 'mfcc_window', 'phonetic', 'a2h_official', 'mfcc80_window' (did you mean 'mfcc_pitch'?)",
        "param 'path' is required (audio file",
        "param 'shape'[1] = 'four': should be a valid integer,",
        "unknown input 'audi' for SaveVideo (did you mean 'audio'?); its inputs: frames, audio, fps",
        "missing required input 'audio' (Audio); connect e.g. voice.audio",
        "type mismatch: voice.audio (Audio) → save.frames (Frames): an output of type Audio cannot feed an input of type Frames",
        "input 'fps' = 'fast': expected a number, got str",
    ]
    for message in expected:  # (cut where the table elides with …)
        assert message in res.stderr, message
        assert message in table, f"the table no longer quotes {message!r}"
    for node_type in re.findall(r" for (\w+) \(did you mean", table):
        assert graphrun("nodes", "describe", node_type).returncode == 0, f"the table names {node_type}, which does not exist"


def test_make_bench_runs_every_benchmark():
    makefile = (ROOT / "Makefile").read_text()
    listed = set(re.search(r"^BENCHMARKS := (.+)$", makefile, re.M).group(1).split())
    engine = (ROOT / "bench" / "engine.py").read_text()
    run_by_engine = {m for m in ("scheduler_overhead", "cache_io") if m in engine}
    benchmarks = {p.stem for p in (ROOT / "bench").glob("*.py") if p.stem != "__init__"}
    assert benchmarks == listed | run_by_engine, benchmarks ^ (listed | run_by_engine)
    cited = set(re.findall(r"bench/(\w+)\.py", " ".join(p.read_text() for p in (ROOT / "docs").rglob("*.md"))))
    assert cited <= benchmarks
