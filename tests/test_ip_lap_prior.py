"""IP_LAP's `mouth_prior: rules` option (not in the paper; nodes/ip_lap/mouth_prior.py): the rules
lip prior in the generator's face-box coordinates, the residual that starts at zero, the
warm start, and the trainer that computes the prior as the node does."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nodes.ip_lap import facemesh as fm
from nodes.ip_lap.mouth_prior import content_prior
from nodes.ip_lap.pipeline import FaceTrack

I13, I14 = (int(np.flatnonzero(fm.CONTENT_IDX == m)[0]) for m in (13, 14))


def _phonetic(labels: list[str]) -> np.ndarray:
    """Phonetic features (T, 44) with one phone class per frame, loud where not silent."""
    from trainers.data.phonetic import FEATURE_DIM, LOUDNESS, PHONE_INDEX, SPEECH, VOICING

    f = np.zeros((len(labels), FEATURE_DIM), np.float32)
    for t, p in enumerate(labels):
        f[t, PHONE_INDEX[p]] = 1.0
        if p != "SIL":
            f[t, [VOICING, LOUDNESS, SPEECH]] = (1.0, 0.8, 1.0)
    return f


def _video(jaw_open: list[float], shift: list[float] | None = None) -> FaceTrack:
    """A 'video' of the 3DMM's mean face (pixels: 1.2 px per mm, centred), one frame per jaw_open
    value, shifted right by `shift` px per frame."""
    from nodes.face.model import N_EXPRESSION, load_face_model

    model = load_face_model()
    expr = np.zeros((len(jaw_open), N_EXPRESSION), np.float32)
    expr[:, 0] = jaw_open
    v = model.vertices(None, expr)[..., :2] * 1.2 + 128.0
    if shift is not None:
        v[..., 0] += np.asarray(shift)[:, None]
    lm = np.concatenate([v, np.repeat(v[:, :1], 10, axis=1)], axis=1)  # 478 points (iris = a copy)
    return FaceTrack.from_frames(np.zeros((len(jaw_open), 256, 256, 3), np.uint8), lm.astype(np.float32))


def _gap(content: np.ndarray) -> np.ndarray:
    return content[..., 1, I14] - content[..., 1, I13]


def test_silence_gives_the_closed_rest_even_when_every_frame_is_parted():
    track = _video([0.6, 0.3, 0.8, 0.5])  # the least open frame (1) still has parted lips
    assert _gap(track.content).min() > 0.01
    prior = content_prior(track.pose, track.content, track.openness, _phonetic(["SIL"] * 30), np.arange(30) % 4)
    assert np.abs(_gap(prior)).max() < 1e-6  # lips together
    assert np.ptp(prior[np.arange(30) % 4 == 0], axis=0).max() < 1e-6  # still
    # the rest is the least open frame with its lower lip lifted: the upper lip stays where it was
    upper = [int(np.flatnonzero(fm.CONTENT_IDX == m)[0]) for m in fm.INNER_LIPS[:11]]
    assert np.abs(prior[1][:, upper] - track.content[1][:, upper]).max() < 1e-6


def test_speech_opens_the_prior_and_follows_the_template_frame():
    track = _video([0.1] * 4, shift=[0, 10, 20, 30])
    labels = ["SIL"] * 8 + ["AA"] * 8 + ["M"] * 6 + ["SIL"] * 8
    template = np.arange(len(labels)) % 4
    prior = content_prior(track.pose, track.content, track.openness, _phonetic(labels), template)
    gap = _gap(prior)
    assert gap[10:14].min() > 0.05 and abs(gap[0]) < 1e-4 and gap[19] < 0.3 * gap[12]  # open on /a/, shut on /m/
    # on a frame shifted by 10 px the silent prior is the rest shifted by 10 px (in box units)
    still = content_prior(track.pose, track.content, track.openness, _phonetic(["SIL"] * 4), np.arange(4))
    px = [fm.from_box(still[j].T, track.boxes[j]) for j in range(4)]
    assert np.abs(px[1] - px[0] - [10, 0]).max() < 1e-3 and np.abs(px[3] - px[0] - [30, 0]).max() < 1e-3
    with pytest.raises(ValueError, match="phonetic feature frames"):
        content_prior(track.pose, track.content, track.openness, _phonetic(["SIL"] * 3), np.arange(4))


def test_prior_generator_starts_at_the_prior_and_the_paper_layout_is_unchanged(tmp_path):
    from nodes.ip_lap.train_landmarks import warm_start
    from nodes.model_registry import create_model, model_config

    plain = create_model("ip_lap_landmark_generator", "tiny")
    assert plain.cfg.mouth_prior == "none" and not any(k.startswith("phonetic") for k in plain.state_dict())
    torch.manual_seed(0)
    path = tmp_path / "plain.pt"
    torch.save({"generator": plain.state_dict()}, path)
    cfg = model_config("ip_lap_landmark_generator", "tiny").model_copy(update={"mouth_prior": "rules"})
    m = create_model("ip_lap_landmark_generator", cfg)
    kept = warm_start(m, str(path))
    assert set(kept) == {f"{h}.{p}" for h in ("lip_head", "jaw_head", "phonetic_embed") for p in ("weight", "bias")}
    assert torch.equal(m.state_dict()["audio_encoder.0.conv.weight"], plain.state_dict()["audio_encoder.0.conv.weight"])
    args = (torch.randn(2, 5, 80, 16), torch.rand(2, 5, 2, 74), torch.rand(2, 3, 2, 74), torch.rand(2, 3, 2, 57))
    prior = torch.rand(2, 5, 2, 57)
    m.train()
    out = m(*args, prior, torch.rand(2, 5, 44))
    assert torch.equal(out, prior)  # the residual starts at zero
    out.sum().backward()
    assert m.lip_head.weight.grad.abs().sum() > 0 and m.phonetic_embed.weight.grad is not None
    with pytest.raises(ValueError, match="rules lip prior"):
        m(*args)


@pytest.mark.parametrize("inputs", ["all", "phones"])
def test_speech_gate_keeps_silence_at_the_prior_and_phones_ignore_the_mels(inputs):
    from nodes.model_registry import create_model, model_config
    from trainers.data.phonetic import SPEECH

    cfg = model_config("ip_lap_landmark_generator", "tiny").model_copy(
        update={"mouth_prior": "rules", "residual_inputs": inputs, "residual_gate": "speech"})
    torch.manual_seed(0)
    m = create_model("ip_lap_landmark_generator", cfg).eval()
    with torch.no_grad():
        for mod in (m.lip_head, m.jaw_head, m.phonetic_embed):  # a trained residual: not zero
            mod.weight.normal_(0, 0.1)
    args = (torch.randn(1, 5, 80, 16), torch.rand(1, 5, 2, 74), torch.rand(1, 3, 2, 74), torch.rand(1, 3, 2, 57))
    prior, phon = torch.rand(1, 5, 2, 57), torch.rand(1, 5, 44)
    phon[0, :2, SPEECH] = 0.0  # two silent frames
    with torch.no_grad():
        out = m(*args, prior, phon)
        other_mels = m(torch.randn(1, 5, 80, 16), *args[1:], prior, phon)
    assert torch.equal(out[0, :2], prior[0, :2]) and (out[0, 2:] - prior[0, 2:]).abs().max() > 1e-3
    assert torch.equal(out, other_mels) == (inputs == "phones")


def test_prior_trainer_computes_the_prior_as_the_node_and_exports_it(tmp_path):
    from hdtf_data import write_toy_dataset

    from nodes.checkpoints import load_model
    from nodes.ip_lap.data import FaceClips
    from nodes.ip_lap.train_landmarks import LandmarkGeneratorTask, LandmarkTrainSettings
    from trainers.data.clips import clip_features
    from trainers.loop import TrainConfig, Trainer

    data = write_toy_dataset(tmp_path / "toy.zarr", n_clips=3, n_frames=40)
    settings = LandmarkTrainSettings(dataset=data, references=4, mouth_prior="rules", lambda_residual=10.0)
    task = LandmarkGeneratorTask(settings)
    cfg = TrainConfig(steps=2, batch_size=2, log_every=1, checkpoint_every=1000, progress_bar=False, threads=1)
    result = Trainer(task, cfg, tmp_path / "run").fit()
    rows = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert '"residual"' in rows
    model, export = load_model(result.export_path, "ip_lap_landmark_generator")
    assert model.uses_prior and export["model_config"]["mouth_prior"] == "rules"
    # the stored prior is what the node's function gives for the clip's own frames
    clips = FaceClips(data, "train", images=False, prior=True)
    c = clips.clip(0)
    clip = clips.store.dataset.clip(clips.store.clip_ids[0])
    tr = c["track"]
    phon = clip_features(clip, "phonetic", clips.store.dataset.fps)
    assert np.array_equal(c["prior"], content_prior(tr.pose, tr.content, tr.openness, phon, np.arange(len(tr))))
