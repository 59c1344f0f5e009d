"""More mouths for the face renderer's training pairs (an option, not in the paper).

§2.4 trains the renderer on the target video alone. A few seconds of one person talking show a
narrow range of mouths (the bundled sample's 176 frames all show teeth): the renderer never sees
closed lips or wide openings, so it draws A2E's closures and openings as the target's usual
half-open mouth (docs/metatalk.md: its crops follow its input render at r 0.92). Here each extra
pair is one of the target's crops warped by the 3DMM's dense flow (the synthetic teacher's
renderer, nodes/synth/render.py) from its fitted expression to a mouth drawn from a pool of
expressions (the teacher dataset's: every viseme, closures included), with the crop's own
brows and pose. Render3DMM of the new coefficients is the pair's input, so the pair is exact
where the flow is: the 3DMM moves the rendered mouth and the warped photo alike.
"""
from __future__ import annotations

import numpy as np

from nodes.face.model import N_MOUTH
from nodes.types import MorphCoeffs


def pooled_expressions(dataset_url: str, split: str | None = None) -> np.ndarray:
    """Every frame's expression (N, 33) of a talkgraph dataset's clips (one split, or all)."""
    from trainers.data.dataset import open_dataset

    ds = open_dataset(dataset_url)
    clips = ds.split(split) if split else range(len(ds))
    rows = [ds.clip(i).coeffs["expression"] for i in clips]
    if not rows:
        raise ValueError(f"{dataset_url}: no clips{f' in split {split!r}' if split else ''}")
    return np.concatenate(rows).astype(np.float32)


def vary_mouths(frames: np.ndarray, coeffs: MorphCoeffs, pool: np.ndarray, count: int, seed: int, model,
                device: str = "cpu") -> tuple[np.ndarray, MorphCoeffs]:
    """`count` crops (uint8 (count, H, W, 3)) warped to pooled mouths, and their coefficients."""
    from nodes.synth.render import Driving, render_chunks

    rng = np.random.default_rng(seed)
    source = rng.integers(0, len(frames), count)
    expression = np.asarray(coeffs.expression, np.float32)[source].copy()
    expression[:, :N_MOUTH] = pool[rng.integers(0, len(pool), count), :N_MOUTH]
    pose = np.asarray(coeffs.pose, np.float32)[source]
    shape = np.asarray(coeffs.shape, np.float32)
    out = np.empty((count, *frames.shape[1:]), np.uint8)
    no_blink = np.zeros(1, np.float32)
    for k, i in enumerate(source):
        driving = Driving(shape, expression[k:k + 1], pose[k:k + 1], no_blink)
        for _, image in render_chunks(frames[i], model, shape, coeffs.expression[i], coeffs.pose[i], driving, device=device):
            out[k] = image[0]
    varied = MorphCoeffs(shape, expression, pose, np.asarray(coeffs.error, np.float32)[source], coeffs.image_size)
    return out, varied
