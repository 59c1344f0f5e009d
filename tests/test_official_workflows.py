"""workflows/official/*.yaml: valid workflows that say how to get their weights when they are
missing, and (slow) Audio2Head end to end from an imported file of the release's structure."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from official_fixtures import write_audio2head

ROOT = Path(__file__).resolve().parents[1]
GRAPHRUN = Path(sys.executable).with_name("graphrun")
WORKFLOWS = {"audio2head": ["head_motion", "motion_field", "render"], "hdtf": ["video"], "yi": ["refine"],
             "ip_lap": ["lips", "render"]}


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


def test_weights_is_a_graphrun_command(tmp_path):
    """`graphrun weights` comes from the graphrun.commands entry point group (graphcore/commands.py
    parses nothing of it: `weights --help` is its own parser's)."""
    listed = graphrun("--help").stdout
    assert "weights" in listed and "Import and inspect official weights" in listed
    assert "import|ls" in graphrun("weights", "--help").stdout
    proc = graphrun("weights", "ls", "--root", str(tmp_path))
    assert proc.returncode == 0 and f"no imported weights under {tmp_path}" in proc.stdout
    assert ("importable families: audio2head (audio2head.pth.tar), hdtf (checkpoint_animation2video.pth), "
            "ip_lap (landmarkgenerator_checkpoint.pth renderer_checkpoint.pth), yi") in proc.stdout
    proc = graphrun("weights", "import", "nosuch", str(tmp_path))
    assert proc.returncode == 1 and "unknown family 'nosuch'; known: audio2head, hdtf, ip_lap, yi" in proc.stderr


def test_registry_specs_point_at_their_family_importer():
    """ModelSpec.convert_official of every network a release holds is that family's importer,
    and each importer's exports are networks whose spec points back at it."""
    from nodes.model_registry import list_models, model_spec
    from nodes.weights import importers

    pointing = {n: model_spec(n).convert_official.family for n in list_models() if model_spec(n).convert_official}
    assert pointing == {"keypoint_autoencoder": "audio2head", "head_motion": "audio2head", "motion_field": "audio2head",
                        "flow_video_generator": "hdtf", "yi_audio_exp_pose": "yi", "yi_memory_gan": "yi",
                        "ip_lap_landmark_generator": "ip_lap", "ip_lap_renderer": "ip_lap"}
    assert set(pointing.values()) == set(importers())
    assert model_spec("head_motion").describe()["official_weights"] == "graphrun weights import audio2head SOURCE"


def test_official_workflows_use_the_conventions():
    import yaml

    a2h = yaml.safe_load((ROOT / "workflows/official/audio2head.yaml").read_text())["nodes"]
    assert a2h["features"]["params"]["variant"] == "a2h_official"
    for wf in WORKFLOWS:
        nodes = yaml.safe_load((ROOT / f"workflows/official/{wf}.yaml").read_text())["nodes"]
        assert {"speech", "target" if wf in ("yi", "ip_lap") else "portrait"} <= set(nodes)


@pytest.mark.slow  # paper-size Audio2Head on CPU: ~1 GB of weights, one 64-frame motion-field window, 39 frames rendered
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
    # 1.6 s: 159 feature rows of 10 ms (python_speech_features' framing), so the release's T = rows // 4 = 39 frames
    speech = write_audio(tmp_path / "speech.wav", AudioClip(clip.samples[: int(1.6 * clip.sample_rate)], clip.sample_rate))
    video = tmp_path / "a2h.mp4"
    proc = graphrun("workflows/official/audio2head.yaml", *sets, "--set", f"speech.path={speech}", "--set", f"save.path={video}",
                    "--cache", str(tmp_path / "cache"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with av.open(str(video)) as container:
        kinds = {s.type: s for s in container.streams}
        assert kinds["video"].codec_context.name == "h264" and kinds["audio"].codec_context.name == "aac"
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 39 and frames[0].shape == (256, 256, 3)
    assert np.std(np.stack(frames).astype(np.float32), axis=0).mean() > 0.5  # the frames change over time
