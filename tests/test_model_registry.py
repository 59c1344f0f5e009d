"""The model registry (nodes/model_registry.py) and checkpoints (nodes/checkpoints.py): every
registered preset builds with the parameter count its spec pins (and the official release's,
within the spec's tolerance); every bundled checkpoint is in its folder's manifest and loads
through the one loader; checkpoint inputs are declared in one line."""
from __future__ import annotations

import hashlib
import json

import pytest
import torch
from engine_helpers import ctx_for

from graphcore.node import In, Node, NodeError, Out
from graphcore.types import CheckpointBlob
from nodes.bundled import asset_path
from nodes.checkpoints import CheckpointInput, CheckpointPort, load_checkpoint, load_model, model_facts
from nodes.model_registry import (
    ModelSpec,
    count_parameters,
    count_preset,
    create_model,
    list_models,
    model_config,
    model_spec,
    register_model,
)

PRESETS = [(name, preset) for name in list_models() for preset in model_spec(name).presets]
BUNDLED = [n for n in list_models() if model_spec(n).bundled is not None]


def test_every_family_is_registered():
    assert {model_spec(n).family for n in list_models()} >= {"hdtf", "audio2head", "yi", "ip_lap"}
    assert list_models("hdtf") == ["animation_generator", "flow_video_generator"]
    assert list_models("audio2head") == ["head_motion", "keypoint_autoencoder", "motion_field"]
    assert list_models("yi") == ["yi_audio_exp_pose", "yi_memory_gan"]
    assert list_models("ip_lap") == ["ip_lap_landmark_generator", "ip_lap_renderer"]


@pytest.mark.parametrize(("name", "preset"), PRESETS)
def test_every_preset_builds_with_its_pinned_parameter_count(name, preset):
    spec = model_spec(name)
    if preset == "tiny":  # small enough to build for real (and to run: the family tests do)
        torch.manual_seed(0)
        counts = {"total": count_parameters(create_model(name, preset))}
    else:  # paper sizes: counted on the meta device, no memory
        counts = count_preset(name, preset)
    assert counts["total"] == spec.parameters[preset], f"{name}/{preset}: update the spec's count if the change is intended"
    if preset == "paper":
        for part, official in (spec.official_parameters or {}).items():
            assert abs(counts[part] - official) / official <= spec.tolerance, (name, part, counts[part], official)
    if preset == "tiny":
        assert counts["total"] < spec.parameters["paper"] / 10


def test_presets_and_configs():
    cfg = model_config("flow_video_generator", {"encoder_width": 8, "encoder_max": 32})
    assert cfg.feature_channels == 32
    assert model_config("flow_video_generator", "paper").encoder_width == 64
    assert model_config("keypoint_autoencoder", "tiny").renderer.dense_motion.num_blocks == 4
    with pytest.raises(KeyError, match="preset 'huge'"):
        create_model("flow_video_generator", "huge")
    with pytest.raises(KeyError, match="unknown model 'nope'.*animation_generator"):
        model_spec("nope")


def test_specs_need_both_presets_and_their_counts():
    arch = model_spec("head_motion").architecture
    with pytest.raises(ValueError, match=r"presets \['tiny'\] missing"):
        ModelSpec(name="x", family="t", architecture=arch, presets={"paper": {}}, parameters={"paper": 1})
    with pytest.raises(ValueError, match="parameter counts are for"):
        ModelSpec(name="x", family="t", architecture=arch, presets={"paper": {}, "tiny": {}}, parameters={"paper": 1})


def test_a_name_clash_from_another_module_is_refused():
    spec = model_spec("head_motion")
    with pytest.raises(ValueError, match="already registered by nodes.audio2head.models"):
        register_model(ModelSpec(name="head_motion", family="plugin", architecture=spec.architecture,
                                 presets=spec.presets, parameters=spec.parameters))


def test_specs_describe_themselves_without_torch():
    facts = model_facts("flow_video_generator")["models"]["flow_video_generator"]
    assert facts["parameters"] == {"paper": 20_417_877, "tiny": 787_749}
    assert facts["official_parameters"] == {"total": 20.4e6} and facts["bundled"] == "assets/checkpoints/hdtf_flow_video_tiny.pt"
    assert "TrainFlowVideoGenerator" in facts["trainer"]


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_checkpoints_match_their_manifest_and_load(name):
    path = model_spec(name).bundled_path
    manifest = json.loads((path.parent / "MANIFEST.json").read_text())
    entry = manifest["checkpoints"][path.name]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
    assert path.stat().st_size < 20 * 1024 * 1024 and entry["steps"] > 0 and entry["final_losses"]
    model, export = load_model(path, name)
    assert not model.training and export["step"] == entry["steps"]
    assert count_parameters(model) == entry["parameters"] == model_spec(name).parameters["tiny"]


def test_every_checkpoint_in_the_assets_is_in_a_manifest():
    for pt in asset_path("checkpoints").rglob("*.pt"):
        assert pt.name in json.loads((pt.parent / "MANIFEST.json").read_text())["checkpoints"], pt


class _Demo(Node):
    """A node with a checkpoint input, as the families declare them."""

    category = "test"
    inputs = {"x": In("Array", optional=True), "checkpoint": CheckpointInput("head_motion")}
    outputs = {"y": Out("Array")}

    def run(self, ctx, x=None, checkpoint=None):
        model, _ = load_checkpoint(self, ctx, "checkpoint", checkpoint)
        return {"y": x}


def test_checkpoint_input_declares_port_parameter_and_bundled_fallback(tmp_path):
    port = _Demo.inputs["checkpoint"]
    assert isinstance(port, CheckpointPort) and port.optional and port.model == "head_motion" and port.file.param == "checkpoint"
    field = _Demo.Params.model_fields["checkpoint"]
    assert field.default == "" and "head_motion_tiny.pt" in field.description and "TrainHeadMotionPredictor" in field.description
    bundled = asset_path("checkpoints/audio2head/head_motion_tiny.pt")
    assert _Demo().implicit_files(frozenset()) == {"bundled checkpoint": bundled}
    assert _Demo().implicit_files(frozenset({"checkpoint"})) == {}
    assert _Demo({"checkpoint": "mine.pt"}).implicit_files(frozenset()) == {}
    ctx = ctx_for(tmp_path)
    assert _Demo().input_source(ctx, "checkpoint") == bundled
    assert _Demo({"checkpoint": "mine.pt"}).input_source(ctx, "checkpoint") == ctx.resolve_path("mine.pt")
    blob = CheckpointBlob.from_file(bundled, {})
    assert _Demo({"checkpoint": "mine.pt"}).input_source(ctx, "checkpoint", blob) is blob


def test_a_missing_or_wrong_checkpoint_names_its_trainer(tmp_path):
    with pytest.raises(NodeError, match="not found: train one with the TrainHeadMotionPredictor node"):
        _Demo({"checkpoint": str(tmp_path / "nope.pt")}).run(ctx_for(tmp_path))
    wrong = asset_path("checkpoints/audio2head/motion_field_tiny.pt")
    with pytest.raises(NodeError, match="holds a 'motion_field' model, not a 'head_motion'.*TrainHeadMotionPredictor"):
        _Demo({"checkpoint": str(wrong)}).run(ctx_for(tmp_path))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(NodeError, match="cannot be read as a talkgraph checkpoint"):
        load_model(tmp_path / "junk.pt", "head_motion")


def test_checkpoint_ports_put_their_models_in_the_node_schema():
    from nodes.audio2head.a2h_nodes import EvaluateAudio2Head
    from nodes.hdtf.hdtf_nodes import TrainFlowVideoGenerator

    assert set(_Demo.schema()["models"]) == {"head_motion"}
    assert set(EvaluateAudio2Head.schema()["models"]) == {"keypoint_autoencoder", "head_motion", "motion_field"}  # merged
    facts = TrainFlowVideoGenerator.schema()["models"]["flow_video_generator"]  # a trainer's checkpoint output
    assert facts["parameters"]["tiny"] == 787_749 and facts["official_parameters"] == {"total": 20.4e6}
