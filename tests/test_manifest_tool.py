"""tools/manifest.py: one manifest writer for every family's checkpoint folder; entries are read
from the files themselves, commands and notes are kept, --half stores float16 weights."""
from __future__ import annotations

import hashlib
import json
import shutil

import torch

from nodes.bundled import asset_path
from nodes.checkpoints import load_model
from tools.manifest import build_manifest, main

BUNDLED = asset_path("checkpoints/hdtf_animation_tiny.pt")


def test_entries_come_from_the_file_and_commands_are_kept(tmp_path):
    shutil.copy(BUNDLED, tmp_path / BUNDLED.name)
    (tmp_path / "MANIFEST.json").write_text(json.dumps(
        {"about": "kept", "files": {BUNDLED.name: {"command": "graphrun old.yaml", "sha256": "stale"}}}))
    manifest = build_manifest(tmp_path)
    entry = manifest["checkpoints"][BUNDLED.name]
    assert manifest["about"] == "kept" and "files" not in manifest  # the former Audio2Head layout is migrated
    assert entry["sha256"] == hashlib.sha256(BUNDLED.read_bytes()).hexdigest() and entry["command"] == "graphrun old.yaml"
    bundled_entry = json.loads((BUNDLED.parent / "MANIFEST.json").read_text())["checkpoints"][BUNDLED.name]
    assert {k: entry[k] for k in ("parameters", "steps", "model_config", "final_losses")} == \
           {k: bundled_entry[k] for k in ("parameters", "steps", "model_config", "final_losses")}
    assert build_manifest(tmp_path, {BUNDLED.name: "graphrun new.yaml"})["checkpoints"][BUNDLED.name]["command"] == "graphrun new.yaml"


def test_half_storage_halves_the_file_and_still_loads(tmp_path):
    copy = tmp_path / BUNDLED.name
    shutil.copy(BUNDLED, copy)
    main([str(tmp_path), "--half", copy.name, "--command", f"{copy.name}=graphrun x.yaml", "--note", "machine=test"])
    manifest = json.loads((tmp_path / "MANIFEST.json").read_text())
    entry = manifest["checkpoints"][copy.name]
    assert entry["stored_as"] == "float16" and entry["bytes"] < 0.6 * BUNDLED.stat().st_size and manifest["machine"] == "test"
    full, _ = load_model(BUNDLED, "animation_generator")
    half, _ = load_model(copy, "animation_generator")
    assert next(half.parameters()).dtype == torch.float32  # cast back on loading
    audio, identity = torch.randn(1, 20, full.cfg.audio_dim), torch.randn(1, 66)
    with torch.no_grad():
        a, b = full(audio, identity)["mouth"], half(audio, identity)["mouth"]
    assert torch.allclose(a, b, atol=1e-2 * float(a.abs().max()))
