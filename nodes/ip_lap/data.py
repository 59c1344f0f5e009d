"""Training samples for IP_LAP from a talkgraph dataset (docs/dataset-format.md), as the official
trainers draw them (train_landmarks_generator.py, train_video_renderer.py).

Per clip, once: each frame's face box (margin in pixels of the dataset's frames), pose/content
landmarks in the box, the face crop and the sketch at the renderer's size, and the mel windows
(AudioFeatures `mel`, centred: frame t's window starts int(3.2 (t − 2)) at 25 fps).

- landmark sample: T consecutive frames (mels, pose, true jaw + lips) and N_l reference frames
  drawn from the rest of the clip;
- renderer sample: 2k+1 consecutive frames; the middle one is the target (its face, its mel
  window), all give target sketches; N reference frames drawn from the whole clip (the official
  sampler may draw the target itself too).
Images are RGB here (the official loader reads BGR).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from trainers.data import ClipStore
from trainers.data.clips import clip_features

from .pipeline import FaceTrack


class FaceClips:
    """The clips of one split with what IP_LAP needs, computed once per clip."""

    def __init__(self, dataset: str, split: str = "train", *, size: int = 128, margin: float = 25, min_frames: int = 25,
                 images: bool = True, prior: bool = False) -> None:
        self.store = ClipStore(dataset, split, fields=(), min_frames=min_frames)
        self.size, self.margin, self.images, self.prior = size, margin, images, prior
        self._cache: dict[int, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self.store)

    def describe(self) -> dict[str, Any]:
        return {**self.store.describe(), "face_size": self.size, "margin": self.margin}

    def clip(self, k: int) -> dict[str, Any]:
        """The k-th clip's face track, sketches (uint8; None without `images`) and mel windows
        (T, 80, 16); with `prior`, also its phonetic features (T, 44) and the rules lip prior
        (T, 2, 57) of the `mouth_prior: rules` option (mouth_prior.content_prior, as the node
        computes it, each frame its own template); frames are not kept."""
        if k not in self._cache:
            clip = self.store.dataset.clip(self.store.clip_ids[k])
            frames = np.asarray(clip.frames[...])
            landmarks = np.asarray(clip.landmarks[...], np.float32)
            try:
                track = FaceTrack.from_frames(frames, landmarks, self.margin, self.size)
            except ValueError as exc:
                raise ValueError(f"clip {clip.name}: {exc}") from None
            sketches = np.stack([np.round(track.sketch(t)).astype(np.uint8) for t in range(len(track))]) if self.images else None
            mels = clip_features(clip, "mel", self.store.dataset.fps).transpose(0, 2, 1)  # (T, 80, 16)
            self._cache[k] = {"track": track, "sketches": sketches, "mels": np.ascontiguousarray(mels, np.float32),
                              "name": clip.name}
            if self.prior:
                from .mouth_prior import content_prior

                fps = self.store.dataset.fps
                phonetic = clip_features(clip, "phonetic", fps)
                self._cache[k]["phonetic"] = np.ascontiguousarray(phonetic, np.float32)
                self._cache[k]["prior"] = content_prior(track.pose, track.content, track.openness, phonetic,
                                                        np.arange(len(track)), fps)
        return self._cache[k]

    def landmark_batch(self, rng: np.random.Generator, batch: int, frames: int, n_ref: int) -> dict[str, torch.Tensor]:
        out: dict[str, list[np.ndarray]] = {"mels": [], "pose": [], "content": [], "ref_pose": [], "ref_content": []}
        if self.prior:
            out |= {"prior": [], "phonetic": []}
        for k in self.store.sample_clips(rng, batch, frames + n_ref):
            c = self.clip(int(k))
            tr = c["track"]
            s = int(rng.integers(0, len(tr) - frames + 1))
            win = np.arange(s, s + frames)
            others = np.setdiff1d(np.arange(len(tr)), win)
            refs = rng.choice(others, n_ref, replace=False)
            out["mels"].append(c["mels"][win])
            out["pose"].append(tr.pose[win])
            out["content"].append(tr.content[win])
            out["ref_pose"].append(tr.pose[refs])
            out["ref_content"].append(tr.content[refs])
            if self.prior:
                out["prior"].append(c["prior"][win])
                out["phonetic"].append(c["phonetic"][win])
        return {k: torch.from_numpy(np.stack(v).astype(np.float32)) for k, v in out.items()}

    def render_batch(self, rng: np.random.Generator, batch: int, sketches: int, n_ref: int) -> dict[str, torch.Tensor]:
        faces, targets, refs, ref_sk, mels = [], [], [], [], []
        for k in self.store.sample_clips(rng, batch, sketches):
            c = self.clip(int(k))
            tr = c["track"]
            s = int(rng.integers(0, len(tr) - sketches + 1))
            mid = s + sketches // 2
            r = rng.choice(len(tr), n_ref, replace=False)
            faces.append(tr.crops[mid])
            targets.append(c["sketches"][s:s + sketches])
            refs.append(tr.crops[r])
            ref_sk.append(c["sketches"][r])
            mels.append(c["mels"][mid])

        def img(a: list[np.ndarray]) -> torch.Tensor:
            return torch.from_numpy(np.stack(a)).movedim(-1, -3).float() / 255.0

        return {"face": img(faces), "target_sketches": img(targets), "ref_images": img(refs), "ref_sketches": img(ref_sk),
                "mel": torch.from_numpy(np.stack(mels))}
