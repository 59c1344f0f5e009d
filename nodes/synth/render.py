"""Render a talking face from one portrait: the 3DMM's dense flow (HDTF §4.2 F_app) + warping.

The portrait's fitted coefficients are the reference; every driving frame's mesh motion
(expression, pose and eye blinks) becomes a backward flow (`nodes.face.flow.FlowBuilder`) that
warps the portrait (`nodes.warp.warp_frames`). Frames are produced chunk by chunk, so memory
does not grow with the clip. Blinks use the model's two auxiliary eye-blink components, which
are appended to the expression basis for the flow (they are not part of MorphCoeffs).

`landmark_tracks` gives the matching ground-truth landmarks: the portrait's detected points
moved by the model's motion (see docs/dataset-format.md, "Where the landmarks come from").
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import numpy as np

N_IRIS = 10  # MediaPipe's refined landmarks 468..477
HEAD_REACH = 0.6  # outside the face, the flow fades out over this many face heights


@dataclasses.dataclass
class Driving:
    shape: np.ndarray  # (60,) identity
    expression: np.ndarray  # (T, 33)
    pose: np.ndarray  # (T, 6)
    blink: np.ndarray  # (T,) eyelid closure in [0, 1], both eyes


def with_blinks(model):
    """The model with its eye-blink components appended to the expression basis."""
    return dataclasses.replace(
        model,
        expression_basis=np.concatenate([model.expression_basis, model.aux_basis], axis=-1),
        expression_names=tuple(model.expression_names) + tuple(model.aux_names),
    )


def _expression_with_blinks(expression: np.ndarray, blink: np.ndarray | None) -> np.ndarray:
    b = np.zeros(len(expression), np.float32) if blink is None else np.asarray(blink, np.float32)
    return np.concatenate([np.asarray(expression, np.float32), np.repeat(b[:, None], 2, axis=1)], axis=1)


def render_chunks(image: np.ndarray, model, ref_shape: np.ndarray, ref_expression: np.ndarray, ref_pose: np.ndarray,
                  driving: Driving, *, chunk: int = 8, device: str = "cpu",
                  progress: Callable[[int, int], None] | None = None) -> Iterator[tuple[slice, np.ndarray]]:
    """Yield (frame slice, uint8 frames (B, H, W, 3)) of the portrait animated by `driving`."""
    from nodes.face.flow import REGION_FACE, Coefficients, FlowBuilder, FlowSettings
    from nodes.warp import warp_frames

    h, w = image.shape[:2]
    builder = FlowBuilder(with_blinks(model), FlowSettings(chunk=chunk), device=device)
    reference = Coefficients(np.asarray(ref_shape, np.float32),
                             _expression_with_blinks(np.asarray(ref_expression, np.float32).reshape(1, -1), None),
                             np.asarray(ref_pose, np.float32).reshape(1, 6))
    drive = Coefficients(np.asarray(driving.shape, np.float32), _expression_with_blinks(driving.expression, driving.blink),
                         np.asarray(driving.pose, np.float32))
    n = len(driving.expression)
    for sl, flow, codes in builder.chunks(reference, drive, h, w):
        flow = np.stack([extend_face_flow(f, c == REGION_FACE) for f, c in zip(flow, codes)])
        yield sl, warp_frames(image, flow, chunk=chunk, device=device)
        if progress is not None:
            progress(sl.stop, n)


def extend_face_flow(flow: np.ndarray, face: np.ndarray, reach: float = HEAD_REACH) -> np.ndarray:
    """Continue the face's flow (H, W, 2) smoothly outside the face mask (H, W) and fade it out.

    DenseFlowBuilder's F_app is piecewise (face / head band / torso band / still background):
    its seams tear the warped portrait (hair, collar) where no learned generator repairs them.
    Here every pixel outside the face takes the flow of its nearest face pixel (continuous at
    the face's edge), weighted by exp(-(d / (reach * face height))^2) of its distance d to the
    face, and the result is blurred to remove the nearest-pixel creases — all at a quarter of the
    resolution, then resized. Hair, ears and neck follow the head; the far background stays.
    """
    import cv2

    if not face.any():
        return flow
    h, w = face.shape
    f = 4
    hs, ws = max(1, h // f), max(1, w // f)
    small_face = cv2.resize(face.astype(np.uint8), (ws, hs), interpolation=cv2.INTER_AREA) > 0
    if not small_face.any():
        return flow
    small_flow = cv2.resize(np.where(face[..., None], flow, 0).astype(np.float32), (ws, hs), interpolation=cv2.INTER_AREA)
    cover = cv2.resize(face.astype(np.float32), (ws, hs), interpolation=cv2.INTER_AREA)
    small_flow = np.where(small_face[..., None], small_flow / np.maximum(cover[..., None], 1e-6), 0)
    dist, labels = cv2.distanceTransformWithLabels((~small_face).astype(np.uint8), cv2.DIST_L2, 5,
                                                   labelType=cv2.DIST_LABEL_PIXEL)
    ys, xs = np.nonzero(small_face)
    lut = np.zeros((labels.max() + 1, 2), np.float32)
    lut[labels[ys, xs]] = small_flow[ys, xs]
    extended = lut[labels]
    rows = np.flatnonzero(small_face.any(axis=1))
    face_h = max(1.0, float(rows[-1] - rows[0] + 1))
    weight = np.exp(-(dist / (reach * face_h)) ** 2)[..., None]
    out = cv2.GaussianBlur(extended * weight, (0, 0), sigmaX=max(1.0, 0.04 * face_h))
    out = cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.where(face[..., None], flow, out).astype(np.float32)


def landmark_tracks(model, ref_landmarks: np.ndarray, ref_shape: np.ndarray, ref_expression: np.ndarray,
                    ref_pose: np.ndarray, driving: Driving) -> np.ndarray:
    """(T, 478, 2): the portrait's detected landmarks moved as the 3DMM moves.

    L_t = L_ref + P(shape_t, expr_t, pose_t, blink_t) - P(shape_ref, expr_ref, pose_ref) at the model's
    landmark embedding (shape_t = driving.shape: the same as the reference's for a talking clip, a
    new one when an identity is made from the portrait); the 10 iris points move with the mean of their eye region (without the
    blink: the eyeball does not move when the lid closes).
    """
    from nodes.face.camera import project

    ref_landmarks = np.asarray(ref_landmarks, np.float32)[..., :2].reshape(-1, 2)
    blink = np.repeat(np.asarray(driving.blink, np.float32)[:, None], 2, axis=1)
    v_ref = model.vertices(ref_shape, np.asarray(ref_expression, np.float32).reshape(-1))
    p_ref, _ = project(model.landmark_points(v_ref), np.asarray(ref_pose, np.float64).reshape(6))
    v = model.vertices(driving.shape, driving.expression, blink)
    p, _ = project(model.landmark_points(v), driving.pose)
    out = np.repeat(ref_landmarks[None], len(driving.expression), axis=0)
    out[:, model.landmark_ids] += (p - p_ref[None]).astype(np.float32)
    if ref_landmarks.shape[0] > 468:
        # iris points: the mean motion of the nearer eye's vertices, with the lids open
        v_open = model.vertices(driving.shape, driving.expression)
        vp_ref, _ = project(v_ref, np.asarray(ref_pose, np.float64).reshape(6))
        vp, _ = project(v_open, driving.pose)
        centres = {e: vp_ref[model.regions[e]].mean(0) for e in ("eye_left", "eye_right")}
        for i in range(468, ref_landmarks.shape[0]):
            eye = min(centres, key=lambda e: np.linalg.norm(ref_landmarks[i] - centres[e]))
            mask = model.regions[eye]
            out[:, i] += (vp[:, mask].mean(1) - vp_ref[mask].mean(0)).astype(np.float32)
    return out
