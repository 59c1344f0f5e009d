"""A small dataset in the talkgraph layout for the Yi et al. tests, drawn with the project's 3DMM:
each clip is a face of its own skin and background colour (a pseudo-identity) rendered with
known SH lighting, whose mouth opens with the loudness of the audio and whose head turns."""
from __future__ import annotations

import numpy as np

GAMMA = np.zeros((3, 9), np.float32)
GAMMA[:, 0] = 0.8
GAMMA[:, 2] = -0.25  # light from the camera side
GAMMA[:, 3] = 0.08


def toy_coeffs(n_frames: int, size: int, rng: np.random.Generator):
    from nodes.types import MorphCoeffs

    env = np.clip(np.sin(np.linspace(0, rng.uniform(6, 12), n_frames) + rng.uniform(0, 6)), 0, 1).astype(np.float32)
    expression = np.zeros((n_frames, 33), np.float32)
    expression[:, 0] = env
    pose = np.zeros((n_frames, 6), np.float32)
    pose[:, 1] = 0.25 * np.sin(np.linspace(0, rng.uniform(2, 4), n_frames) + rng.uniform(0, 3))
    pose[:, 0] = 0.05 * np.cos(np.linspace(0, 3, n_frames))
    pose[:, 3], pose[:, 4] = size / 2, size * 0.52
    pose[:, 5] = np.log(0.55 * size / 150.0)  # the model face is ~150 mm tall
    shape = (0.5 * rng.normal(size=60)).astype(np.float32)
    return MorphCoeffs(shape, expression, pose, np.zeros(n_frames, np.float32), (size, size)), env


def toy_frames(model, coeffs, skin: np.ndarray, background: np.ndarray, size: int) -> np.ndarray:
    from nodes.yi.render3dmm import Appearance, FaceRenderer, render_sequence

    n_f = len(model.triangles)
    albedo = np.tile(np.asarray(skin, np.float32), (model.n_vertices, 1))
    albedo[model.regions["lips"]] *= np.array([0.8, 0.45, 0.45], np.float32)
    app = Appearance(GAMMA, albedo, np.zeros((size, size, 3), np.float32), np.zeros((model.n_vertices, 2), np.float32),
                     np.zeros(n_f, bool), 0)
    renderer = FaceRenderer(model, app, "low")
    bg = np.asarray(background, np.float32)
    out = [img for _, img, _ in render_sequence(renderer, coeffs.shape, coeffs.expression, coeffs.pose, size, size,
                                                 lambda sl: np.tile(bg, (sl.stop - sl.start, size, size, 1)))]
    return np.concatenate(out)


def toy_landmarks(model, coeffs) -> np.ndarray:
    """(T, 478, 2): the model's landmark points projected; iris points at the eye centres."""
    from nodes.face.camera import project

    v = model.vertices(coeffs.shape, coeffs.expression)
    p, _ = project(model.landmark_points(v), coeffs.pose)
    out = np.zeros((len(v), 478, 2), np.float32)
    out[:, model.landmark_ids] = p
    vp, _ = project(v, coeffs.pose)
    for first, eye in ((468, "eye_right"), (473, "eye_left")):
        out[:, first:first + 5] = vp[:, model.regions[eye]].mean(1, keepdims=True)
    return out


def write_yi_dataset(path, n_clips: int = 4, n_frames: int = 40, size: int = 64, seed: int = 0) -> str:
    from nodes.face.model import load_face_model
    from trainers.data.dataset import DatasetWriter

    model = load_face_model()
    rng = np.random.default_rng(seed)
    w = DatasetWriter(str(path), frame_size=(size, size), source="synthetic", landmark_source="3dmm_projection")
    splits = ["train"] * (n_clips - 2) + ["val", "test"] if n_clips >= 3 else ["train"] * n_clips
    spf = 640
    for c in range(n_clips):
        coeffs, env = toy_coeffs(n_frames, size, rng)
        t = np.arange(n_frames * spf) / 16000.0
        audio = (0.5 * np.repeat(env, spf) * np.sin(2 * np.pi * rng.uniform(120, 220) * t)).astype(np.float32)
        frames = toy_frames(model, coeffs, rng.uniform(0.4, 0.9, 3), rng.uniform(0.1, 0.9, 3), size)
        cw = w.begin_clip(f"clip_{c:05d}", n_frames, split=splits[c], attrs={"text": "toy", "seed": c})
        cw.write_frames(0, frames)
        cw.write_landmarks(0, toy_landmarks(model, coeffs))
        cw.write_audio(audio)
        cw.write_coeffs(coeffs.shape, coeffs.expression, coeffs.pose, image_size=(size, size))
    w.close()
    return str(path)
