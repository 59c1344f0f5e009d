"""A non-editable install finds the bundled assets: the project is built into a wheel, installed
into a fresh folder, and a bundled checkpoint is resolved and loaded from there (package data
through importlib.resources, not paths relative to a checkout)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("graphcore", "nodes", "trainers", "ui", "assets", "pyproject.toml", "README.md")

CHECK = """
import json, nodes
from nodes.bundled import asset_path
from nodes.checkpoints import load_model
from nodes.model_registry import model_spec
spec = model_spec("flow_video_generator")
model, export = load_model(spec.bundled_path, spec)
print(json.dumps({"nodes": nodes.__file__, "bundled": str(spec.bundled_path), "face": str(asset_path("face_model/talkgraph_3dmm_v1.npz")),
                  "steps": export["step"], "parameters": sum(p.numel() for p in model.parameters())}))
"""


@pytest.mark.slow
def test_an_installed_wheel_resolves_and_loads_its_bundled_checkpoints(tmp_path):
    source = tmp_path / "talkgraph"  # (not "src": setuptools treats a project folder of that name specially)
    source.mkdir()
    ignore = shutil.ignore_patterns("node_modules", "__pycache__", "build", "*.egg-info", "out")
    for name in SHIPPED:
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, source / name, **(
            {"ignore": ignore} if (ROOT / name).is_dir() else {}))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    built = subprocess.run([*pip, "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(source)],
                           capture_output=True, text=True, timeout=600, check=False)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("talkgraph-*.whl")
    site = tmp_path / "site"
    installed = subprocess.run([*pip, "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)],
                               capture_output=True, text=True, timeout=600, check=False)
    assert installed.returncode == 0, installed.stderr
    shutil.rmtree(source)  # nothing may still point at the sources
    run = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "PYTHONNOUSERSITE": "1", "HOME": str(tmp_path)})
    assert run.returncode == 0, run.stderr
    facts = json.loads(run.stdout.strip().splitlines()[-1])
    for key in ("nodes", "bundled", "face"):
        assert Path(facts[key]).is_relative_to(site), facts
    assert Path(facts["bundled"]).is_file() and Path(facts["face"]).is_file()
    manifest = json.loads((site / "assets" / "checkpoints" / "MANIFEST.json").read_text())["checkpoints"]["hdtf_flow_video_tiny.pt"]
    assert facts["steps"] == manifest["steps"] and facts["parameters"] == manifest["parameters"]
