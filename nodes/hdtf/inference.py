"""Running the trained HDTF generators on whole clips (used by the nodes, evaluation and bench).

`animate` maps audio features + the reference's fitted coefficients to per-frame MorphCoeffs.
`render_chunks` runs the flow-guided video generator over a flow sequence a chunk at a time
(the reference encoded once), so working memory stays flat however long the audio is;
`render_video` collects its chunks into whole arrays.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from nodes.face.pose_deltas import apply_pose_delta
from nodes.types import MorphCoeffs

EXPRESSION_MAX = 1.5  # the face model's fitted coefficient box (nodes/face/model.py)


def animate(generator, features: np.ndarray, identity: np.ndarray, reference: MorphCoeffs, *,
            style: bool = True, device: str = "cpu", fps: float = 25.0) -> MorphCoeffs:
    """features (T, 15) -> MorphCoeffs with T frames: the reference's shape, generated mouth and
    brow coefficients (clipped to the model's box) and pose = reference pose + generated delta.
    A `mouth_prior: rules` generator also gets the rules mouth of the features (as in training)."""
    import torch

    from nodes.lipsync.prior import rules_mouth_prior

    t = features.shape[0]
    with torch.no_grad():
        a = torch.from_numpy(np.ascontiguousarray(features, np.float32))[None].to(device)
        i = torch.from_numpy(np.asarray(identity, np.float32))[None].to(device)
        prior = None
        if getattr(generator, "uses_prior", False):
            prior = torch.from_numpy(rules_mouth_prior(features, fps))[None].to(device)
        out = {k: v[0].float().cpu().numpy() for k, v in generator(a, i, style=style, prior=prior).items()}
    expression = np.clip(np.concatenate([out["mouth"], out["brow"]], axis=1), 0.0, EXPRESSION_MAX)
    ref_pose = np.asarray(reference.pose, np.float32)[0]
    pose = apply_pose_delta(ref_pose, out["pose"], tuple(reference.image_size))
    return MorphCoeffs(
        shape=np.asarray(reference.shape, np.float32),
        expression=expression.astype(np.float32),
        pose=pose.astype(np.float32),
        error=np.zeros(t, np.float32),
        image_size=tuple(reference.image_size),
    )


@dataclass
class VideoOutputs:
    frames: np.ndarray  # uint8 (T, H, W, 3)
    foreground_mask: np.ndarray  # float32 (T, h, w) at feature resolution
    matting_mask: np.ndarray  # float32 (T, h, w)
    warped_reference: np.ndarray  # uint8 (T, h, w, 3): I_ref warped by F_app (downsampled)
    flow: np.ndarray  # float32 (T, h, w, 2): revised flow F = F_app * M_f, pixels of the h x w grid


def resize_flow(flow: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize backward pixel flows (T, H, W, 2) to (T, h, w, 2), rescaling the vectors."""
    import cv2

    h, w = size
    if flow.shape[1:3] == (h, w):
        return flow
    sx, sy = w / flow.shape[2], h / flow.shape[1]
    out = np.empty((flow.shape[0], h, w, 2), np.float32)
    for k, f in enumerate(flow):
        r = cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA if sx < 1 else cv2.INTER_LINEAR)
        out[k, ..., 0], out[k, ..., 1] = r[..., 0] * sx, r[..., 1] * sy
    return out


def render_video(generator, reference: np.ndarray, flow: np.ndarray, *, matting: bool = True, chunk: int = 8,
                 device: str = "cpu", size: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> VideoOutputs:
    """Frames from a reference image (H, W, 3) uint8 and F_app flows (T, H, W, 2).

    `size`: process (and output) at size x size — the resolution the model was trained at —
    resizing the reference and the flows (vectors rescaled); None keeps the input size.
    """
    fields = tuple(VideoOutputs.__dataclass_fields__)
    t = flow.shape[0]
    out: VideoOutputs | None = None
    done = 0
    for part in render_chunks(generator, reference, flow, matting=matting, chunk=chunk, device=device, size=size,
                              progress=progress):
        if out is None:  # preallocated once the first chunk shows the shapes
            out = VideoOutputs(*(np.empty((t, *getattr(part, f).shape[1:]), getattr(part, f).dtype) for f in fields))
        n = len(part.frames)
        for f in fields:
            getattr(out, f)[done:done + n] = getattr(part, f)
        done += n
    if out is None:  # no frames
        h, w = (size, size) if size else reference.shape[:2]
        fh, fw = h // generator.size_multiple, w // generator.size_multiple
        out = VideoOutputs(np.empty((0, h, w, 3), np.uint8), np.empty((0, fh, fw), np.float32),
                           np.empty((0, fh, fw), np.float32), np.empty((0, fh, fw, 3), np.uint8),
                           np.empty((0, fh, fw, 2), np.float32))
    return out


def render_chunks(generator, reference: np.ndarray, flow, *, matting: bool = True, chunk: int = 8,
                  device: str = "cpu", size: int | None = None,
                  progress: Callable[[int, int], None] | None = None) -> Iterator[VideoOutputs]:
    """`render_video` a chunk of `chunk` frames at a time: the reference is encoded once, each
    chunk of flow is read (`flow` may be a lazy graphcore.stream.Chunks view), processed and
    yielded, so memory stays flat however long the clip is. The same batches as
    render_video, so the same values."""
    import cv2
    import torch

    from .blocks import pixel_flow_to_normalized

    if reference.ndim != 3 or reference.shape[2] != 3:
        raise ValueError(f"reference must be an RGB image (H, W, 3), got {reference.shape}")
    if flow.ndim != 4 or tuple(flow.shape[1:3]) != reference.shape[:2]:
        raise ValueError(f"flow {tuple(flow.shape)} does not match the reference image {reference.shape[:2]} (needs (T, H, W, 2))")
    h, w = (size, size) if size else reference.shape[:2]
    m = generator.size_multiple
    if h % m or w % m:
        raise ValueError(f"frame size {h}x{w} must be a multiple of {m} for this generator")
    if (h, w) != reference.shape[:2]:
        reference = cv2.resize(reference, (w, h), interpolation=cv2.INTER_AREA)
    t = flow.shape[0]
    fh, fw = h // m, w // m
    to_u8 = lambda x: (x.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()  # noqa: E731
    pixels_per_unit = torch.tensor([(fw - 1) / 2.0, (fh - 1) / 2.0], device=device)
    blocks = flow.chunks(chunk) if hasattr(flow, "chunks") else (flow[s:s + chunk] for s in range(0, t, chunk))
    done = 0
    with torch.no_grad():
        ref = torch.from_numpy(np.ascontiguousarray(reference)).to(device).permute(2, 0, 1)[None].float() / 255.0
        encoded = generator.encode_reference(ref)
        for block in blocks:
            f = resize_flow(np.asarray(block, np.float32), (h, w))
            fn = pixel_flow_to_normalized(torch.from_numpy(f).to(device))
            r = generator(ref, fn, matting=matting, encoded=encoded)
            done += f.shape[0]
            yield VideoOutputs(
                frames=to_u8(r["image"]),
                foreground_mask=r["foreground_mask"][:, 0].float().cpu().numpy(),
                matting_mask=r["matting_mask"][:, 0].float().cpu().numpy(),
                warped_reference=to_u8(r["warped_reference"]),
                flow=(r["flow"].permute(0, 2, 3, 1) * pixels_per_unit).float().cpu().numpy(),
            )
            if progress is not None:
                progress(done, t)

