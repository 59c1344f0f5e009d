"""workflows/official/*.yaml: valid workflows that say how to get their weights when they are
missing, and (slow) Audio2Head end to end from an imported file of the release's structure."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from official_fixtures import write_audio2head

ROOT = Path(__file__).resolve().parents[1]
GRAPHRUN = Path(sys.executable).with_name("graphrun")
WORKFLOWS = {"audio2head": ["head_motion", "motion_field", "render"], "hdtf": ["video"], "yi": ["refine"]}


def graphrun(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([str(GRAPHRUN), *args], capture_output=True, text=True, check=False, cwd=cwd)


@pytest.mark.parametrize("family", sorted(WORKFLOWS))
def test_official_workflow_says_import_first(family, tmp_path):
    """Every checkpoint parameter pointed at an empty folder: validation names the command."""
    from nodes.weights import importers

    importer = importers()[family]
    sets = []
    for param, name in importer.parameters.items():
        sets += ["--set", f"{param}={tmp_path / 'weights' / family / name}"]
    proc = graphrun("validate", f"workflows/official/{family}.yaml", *sets)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    for node in WORKFLOWS[family]:
        assert f"node '{node}': param 'checkpoint': file not found" in out
    assert f"import the official weights first: graphrun weights import {family} " in out
    assert f"--out {tmp_path / 'weights' / family}" in out
    assert out.count("import the official weights first") == len(WORKFLOWS[family])


def test_weights_is_a_graphrun_command_and_a_broken_extension_command_is_contained(tmp_path):
    """`graphrun weights` comes from the graphrun.commands entry point group; an extension
    command that fails to import is reported as such and leaves the CLI working."""
    from engine_helpers import graphrun as graphrun_env
    from engine_helpers import subprocess_env

    assert "weights" in graphrun("--help").stdout
    info = tmp_path / "site" / "boom_cmd-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: boom-cmd\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[graphrun.commands]\nboom = no_such_module_xyz:register\n")
    env = subprocess_env(PYTHONPATH=f"{tmp_path / 'site'}{os.pathsep}{ROOT}")
    res = graphrun_env("boom", env=env)
    assert res.returncode == 1 and "the `boom` command (no_such_module_xyz:register) failed to load" in res.stderr
    assert graphrun_env("weights", "ls", "--root", str(tmp_path), env=env).returncode == 0


def test_official_workflows_use_the_conventions():
    import yaml

    a2h = yaml.safe_load((ROOT / "workflows/official/audio2head.yaml").read_text())["nodes"]
    assert a2h["features"]["params"]["variant"] == "a2h_official"
    for wf in WORKFLOWS:
        nodes = yaml.safe_load((ROOT / f"workflows/official/{wf}.yaml").read_text())["nodes"]
        assert {"speech", "portrait" if wf != "yi" else "target"} <= set(nodes)


@pytest.mark.slow  # paper-size Audio2Head on CPU: ~1 GB of weights, one 64-frame motion-field window, 40 frames rendered
@pytest.mark.timeout(1800)  # ~2.5 CPU minutes; on a machine shared with other jobs much longer
def test_audio2head_official_end_to_end(tmp_path):
    """`graphrun weights import audio2head audio2head.pth.tar` on a file with the release's
    structure, then `graphrun workflows/official/audio2head.yaml` makes a video with sound."""
    import av

    from nodes.io.media import read_audio, write_audio
    from nodes.types import AudioClip

    source = write_audio2head(tmp_path)
    out = tmp_path / "weights" / "audio2head"
    proc = graphrun("weights", "import", "audio2head", str(source), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    source.unlink()
    sets = [a for line in proc.stdout.splitlines() if line.startswith("workflow parameters:") for a in line.split()[2:]]
    assert sets.count("--set") == 3
    clip = read_audio(ROOT / "assets/samples/speech.wav")
    speech = write_audio(tmp_path / "speech.wav", AudioClip(clip.samples[: int(1.6 * clip.sample_rate)], clip.sample_rate))  # 40 frames
    video = tmp_path / "a2h.mp4"
    proc = graphrun("workflows/official/audio2head.yaml", *sets, "--set", f"speech.path={speech}", "--set", f"save.path={video}",
                    "--cache", str(tmp_path / "cache"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with av.open(str(video)) as container:
        kinds = {s.type: s for s in container.streams}
        assert kinds["video"].codec_context.name == "h264" and kinds["audio"].codec_context.name == "aac"
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 40 and frames[0].shape == (256, 256, 3)
    assert np.std(np.stack(frames).astype(np.float32), axis=0).mean() > 0.5  # the frames change over time
