"""Inference with the Audio2Head networks on numpy inputs (the nodes' and the evaluation's core).

Images are uint8 (H, W, 3); keypoints are nodes.types.Keypoints ([-1, 1] coordinates).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch

from nodes.types import Keypoints

from .blocks import image_tensor
from .motion_field import predict_windows
from .mouth import with_mouth
from .pose import draw_pose_boxes

Progress = Callable[[int, int], None]


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if image.shape[:2] == (size, size):
        return image
    interp = cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


def official_reference(image: np.ndarray) -> np.ndarray:
    """The release's reference: cv2.resize (bilinear) to 256 x 256."""
    import cv2

    return image if image.shape[:2] == (256, 256) else cv2.resize(image, (256, 256))


@torch.no_grad()
def predict_head_motion(model, reference: np.ndarray, features: np.ndarray, device: str = "cpu") -> np.ndarray:
    """HeadPose (T, 6) for the T audio frames (s_1 .. s_T of eq. 1-2), in camera units.
    An official checkpoint: the release's pose rows (Rodrigues vector, mm), frame i taking s_i
    (s_0: the reference's own pose) as its inference.py does."""
    if model.cfg.official:
        reference = official_reference(reference)
    image = image_tensor(reference[None]).to(device)
    poses = model(image, torch.from_numpy(features[None]).to(device))
    chosen = poses[0, :-1] if model.cfg.official else poses[0, 1:]
    return model.denormalize_pose(chosen).float().cpu().numpy()


@torch.no_grad()
def reference_pose(model, reference: np.ndarray, device: str = "cpu") -> np.ndarray:
    """s_0: the head pose N_H reads from the reference image, (6,)."""
    image = image_tensor(reference[None]).to(device)
    poses = model(image, torch.zeros(1, 0, 4, 41, device=device))
    return model.denormalize_pose(poses[0, 0]).float().cpu().numpy()


def official_windows(model, reference: torch.Tensor, features: np.ndarray, drawings: np.ndarray,
                     progress: Progress | None = None) -> dict[str, np.ndarray]:
    """The release's windowing: windows of T frames every T/2, zero audio and the last pose past
    the end; the first window gives frames [0, 3T/4), each later one its [T/4, 3T/4)."""
    n, t = len(features), model.cfg.window
    starts = list(range(0, n, t // 2))
    values, jacobians = [], []
    for k, s in enumerate(starts):
        idx = np.minimum(np.arange(s, s + t), n - 1)
        audio = np.where((np.arange(s, s + t) < n)[:, None, None], features[idx], 0.0).astype(np.float32)
        out = model(reference, torch.from_numpy(audio)[None].to(reference.device), torch.from_numpy(drawings[idx])[None].to(reference.device))
        keep = slice(0 if k == 0 else t // 4, 3 * t // 4)
        values.append(out["value"][0, keep].float().cpu().numpy())
        jacobians.append(out["jacobian"][0, keep].float().cpu().numpy())
        if progress:
            progress(k + 1, len(starts))
        if s + 3 * t // 4 >= n:
            break
    return {"value": np.concatenate(values)[:n], "jacobian": np.concatenate(jacobians)[:n]}


@torch.no_grad()
def motion_field(model, reference: np.ndarray, features: np.ndarray, poses: np.ndarray, device: str = "cpu",
                 batch: int = 4, progress: Progress | None = None) -> tuple[Keypoints, np.ndarray]:
    """Keypoints for every frame and the pose-box maps that conditioned them."""
    if model.cfg.official:  # the release's pose boxes at 256 px, its reference size and windows
        from .release import draw_pose_boxes as draw_official

        drawings = draw_official(poses)
        ref = image_tensor(official_reference(reference)[None]).to(device)
        out = official_windows(model, ref, features.astype(np.float32), drawings, progress)
        return Keypoints(value=out["value"], jacobian=out["jacobian"]), (drawings / 255.0).astype(np.float32)
    boxes = draw_pose_boxes(poses, reference.shape[:2], model.cfg.size)
    ref = image_tensor(reference[None]).to(device)
    out = predict_windows(model, ref, features.astype(np.float32), boxes, batch=batch, progress=progress)
    return Keypoints(value=out["value"], jacobian=out["jacobian"]), boxes


@torch.no_grad()
def detect_keypoints(detector, frames: np.ndarray, device: str = "cpu", chunk: int = 16,
                     progress: Progress | None = None) -> Keypoints:
    values, jacobians = [], []
    for i in range(0, len(frames), chunk):
        kp = detector(image_tensor(frames[i:i + chunk]).to(device))
        values.append(kp["value"].float().cpu().numpy())
        jacobians.append(kp["jacobian"].float().cpu().numpy())
        if progress:
            progress(min(i + chunk, len(frames)), len(frames))
    return Keypoints(value=np.concatenate(values), jacobian=np.concatenate(jacobians))


def relative_keypoints(driving: Keypoints, source: Keypoints) -> Keypoints:
    """FOMM's relative motion: the source keypoints move as the driving keypoints have moved since
    the first driving frame (value: source + driving - driving[0]; Jacobian: J_d J_d0^-1 J_s).
    An offset between the first driving frame and the reference then cancels, at the price of
    assuming that frame shows the reference's head state."""
    value = source.value[:1] + driving.value - driving.value[:1]
    change = driving.jacobian @ np.linalg.inv(driving.jacobian[:1])
    return Keypoints(value=value.astype(np.float32), jacobian=(change @ source.jacobian[:1]).astype(np.float32))


@torch.no_grad()
def render(renderer, reference: np.ndarray, source: Keypoints, driving: Keypoints, device: str = "cpu", chunk: int = 8,
           use_jacobians: bool = True, progress: Progress | None = None,
           mouth: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Frames (T, H, W, 3) uint8 rendered from the reference, and the occlusion maps (T, h, w).
    `mouth`: (the reference's mouth keypoints (M, 2), each frame's (T, M, 2)) for a renderer with
    mouth keypoints (mouth.py)."""
    n = len(driving.value)
    frames = np.empty((n, *reference.shape[:2], 3), np.uint8)
    occlusions = []
    done = 0
    for block, occ in render_chunks(renderer, reference, source, driving, device, chunk, use_jacobians, progress, mouth):
        frames[done:done + len(block)] = block
        occlusions.append(occ)
        done += len(block)
    return frames, np.concatenate(occlusions)


@torch.no_grad()  # (torch keeps a generator's every step under no_grad)
def render_chunks(renderer, reference: np.ndarray, source: Keypoints, driving: Keypoints, device: str = "cpu",
                  chunk: int = 8, use_jacobians: bool = True, progress: Progress | None = None,
                  mouth: tuple[np.ndarray, np.ndarray] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """`render` a chunk of `chunk` frames at a time: (frames, occlusion maps) per chunk, so a
    long clip never holds all its frames (the same batches, so the same values)."""
    ref = image_tensor(reference[None]).to(device)
    kp_s = {"value": torch.from_numpy(source.value[:1]).to(device), "jacobian": torch.from_numpy(source.jacobian[:1]).to(device)}
    n = len(driving.value)
    wanted = renderer.cfg.mouth_kp
    if wanted and (mouth is None or mouth[0].shape != (wanted, 2) or mouth[1].shape != (n, wanted, 2)):
        got = "none" if mouth is None else f"{mouth[0].shape} and {mouth[1].shape}"
        raise ValueError(f"this renderer takes {wanted} mouth keypoints: (reference ({wanted}, 2), frames ({n}, {wanted}, 2)); got {got}")
    if wanted:
        kp_s = with_mouth(kp_s, torch.from_numpy(np.asarray(mouth[0], np.float32))[None].to(device))
    for i in range(0, n, chunk):
        j = slice(i, min(i + chunk, n))
        b = j.stop - j.start
        kp_d = {"value": torch.from_numpy(driving.value[j]).to(device), "jacobian": torch.from_numpy(driving.jacobian[j]).to(device)}
        if wanted:
            kp_d = with_mouth(kp_d, torch.from_numpy(np.asarray(mouth[1][j], np.float32)).to(device))
        out = renderer(ref.expand(b, -1, -1, -1), {k: v.expand(b, *v.shape[1:]) for k, v in kp_s.items()}, kp_d, use_jacobians)
        frames = (out["prediction"].clamp(0, 1) * 255 + 0.5).byte().permute(0, 2, 3, 1).cpu().numpy()
        occ = out.get("occlusion_map")
        yield frames, occ[:, 0].float().cpu().numpy() if occ is not None else np.ones((b, 1, 1), np.float32)
        if progress:
            progress(j.stop, n)

