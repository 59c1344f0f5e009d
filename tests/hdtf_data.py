"""A small hand-made dataset in the talkgraph layout for trainer tests: the mouth opens with
the loudness of the audio, so there is something to learn, and frames are a drawn face."""
from __future__ import annotations

import numpy as np


def write_toy_dataset(path, n_clips: int = 4, n_frames: int = 48, size: int = 64, seed: int = 0) -> str:
    import cv2

    from trainers.data.dataset import DatasetWriter

    rng = np.random.default_rng(seed)
    w = DatasetWriter(str(path), frame_size=(size, size), source="synthetic", landmark_source="3dmm_projection")
    splits = ["train"] * (n_clips - 2) + ["val", "test"] if n_clips >= 3 else ["train"] * n_clips
    spf = 640
    for c in range(n_clips):
        env = np.clip(np.sin(np.linspace(0, rng.uniform(6, 12), n_frames) + rng.uniform(0, 6)), 0, 1).astype(np.float32)
        t = np.arange(n_frames * spf) / 16000.0
        audio = (0.5 * np.repeat(env, spf) * np.sin(2 * np.pi * rng.uniform(120, 220) * t)).astype(np.float32)
        expression = np.zeros((n_frames, 33), np.float32)
        expression[:, 0] = env
        expression[:, 28] = 0.3 * np.roll(env, 3)
        pose = np.zeros((n_frames, 6), np.float32)
        pose[:, 1] = 0.05 * np.sin(np.linspace(0, 3, n_frames))
        pose[:, 3:5] = size / 2
        angles = np.linspace(0, 2 * np.pi, 478, endpoint=False)
        radius = size * rng.uniform(0.25, 0.35)
        landmarks = np.stack([size / 2 + radius * np.cos(angles), size / 2 + radius * np.sin(angles)], -1).astype(np.float32)
        frames = np.empty((n_frames, size, size, 3), np.uint8)
        colour = tuple(int(v) for v in rng.integers(60, 230, 3))
        for i in range(n_frames):
            img = np.full((size, size, 3), 30, np.uint8)
            cv2.circle(img, (size // 2 + int(size * pose[i, 1]), size // 2), int(radius), colour, -1)
            cv2.ellipse(img, (size // 2, int(size * 0.65)), (size // 8, 1 + int(size / 10 * env[i])), 0, 0, 360, (90, 20, 20), -1)
            frames[i] = img
        cw = w.begin_clip(f"clip_{c:05d}", n_frames, split=splits[c], attrs={"text": "toy", "seed": c})
        cw.write_frames(0, frames)
        cw.write_landmarks(0, np.repeat(landmarks[None], n_frames, 0))
        cw.write_audio(audio)
        cw.write_coeffs(rng.normal(size=60).astype(np.float32), expression, pose, image_size=(size, size))
    w.close()
    return str(path)
