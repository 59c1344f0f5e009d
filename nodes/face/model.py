"""The project's linear 3DMM on the MediaPipe face-mesh topology (HDTF paper §3, eq. 1):

    S(alpha, beta) = S_mean + A_id @ alpha + A_exp @ beta

468 vertices (MediaPipe landmarks 0..467; the 10 iris points 468..477 are not part of the
mesh), 898 triangles, a 60-component identity basis and a 33-component expression basis
(28 mouth + 5 eyebrow, named in MOUTH_COMPONENTS / BROW_COMPONENTS, in this order), plus two
auxiliary eyelid components (eye blinks — HDTF §6 makes blinks rule-based, so they are kept out
of the fitted expression vector).

Units and frame: millimetres; x to the subject's left (image right in a frontal view), y down,
z away from the camera (see nodes/face/camera.py). "_left" always means the subject's left.

How the model is built (tools/build_face_model.py, deterministic):
- Mean shape: MediaPipe face mesh run on skimage.data.astronaut(), made exactly left/right
  symmetric with the mesh's mirror vertex pairs (found by reflecting across a plane fitted to
  the midline vertices and matching by optimal assignment), frontalised (symmetry plane -> x,
  the face's long axis -> y), scaled so the outer eye corners are 90 mm apart, then
  neutralised: the portrait smiles with parted lips, so jaw_open / smile / stretch amounts are
  solved that close the lips, bring the mouth corners level with the lip line and the mouth
  width to 0.58 x the eye-corner span, and are subtracted (twice, rebuilding the expression
  basis on the updated mean in between).
- Expression basis: one hand-placed deformation per named component. jaw_open is a rigid
  18-degree rotation about a hinge axis near the temporo-mandibular joints, blended by a
  harmonic weight field (1 on the lower lip, chin and jaw line; 0 on the upper lip, nose and
  above the hinge); the other components move anatomically placed regions (lips, mouth
  corners, cheeks, brows) by a stated displacement with smooth geodesic fall-off. Coefficient
  1.0 is a full, natural-looking extent; coefficients are fitted in [0, 1.5].
- Identity basis: 22 anatomical deformations (face width/height, midface projection, jaw width, chin length
  and protrusion, nose length/width/projection/bridge, eye spacing/size/height/depth, lip
  thickness, mouth width/height, cheek fullness, cheekbones, forehead slope, brow ridge, face
  taper) followed by 38 smooth random fields drawn from the 40 lowest-frequency eigenvectors
  of the mesh Laplacian (fixed seed; mostly mirror-symmetric, 1.5 mm RMS decaying with the
  index), all made orthogonal — to each other, to the similarity
  motions (translation, rotation, scale, which belong to the pose) and to the expression basis
  (so that identity and expression do not compete when a single image is fitted) — by
  Gram-Schmidt. Each column is what remains of its designed deformation (same units, so
  alpha ~ N(0, 1) is the prior the fit's Tikhonov term expresses).

A user-supplied model (BFM, FLAME, ICT-FaceKit) can be used by the geometric nodes through the
MorphableModel protocol below: give its mean, bases, triangles, region masks and the embedding
of the 478 MediaPipe landmarks in its mesh (triangle vertices + barycentric weights).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from nodes.bundled import asset_path

from .camera import project

MOUTH_COMPONENTS: tuple[str, ...] = (
    "jaw_open", "jaw_left", "jaw_right", "jaw_forward", "mouth_close", "lip_pucker", "lip_funnel",
    "smile_left", "smile_right", "frown_left", "frown_right", "dimple_left", "dimple_right",
    "stretch_left", "stretch_right", "roll_lower", "roll_upper", "shrug_lower", "shrug_upper",
    "press_left", "press_right", "lower_down_left", "lower_down_right", "upper_up_left",
    "upper_up_right", "mouth_left", "mouth_right", "cheek_puff",
)
BROW_COMPONENTS: tuple[str, ...] = (
    "brow_down_left", "brow_down_right", "brow_inner_up", "brow_outer_up_left", "brow_outer_up_right",
)
EXPRESSION_COMPONENTS: tuple[str, ...] = MOUTH_COMPONENTS + BROW_COMPONENTS
AUX_COMPONENTS: tuple[str, ...] = ("eye_blink_left", "eye_blink_right")
N_SHAPE = 60
N_MOUTH, N_BROW = len(MOUTH_COMPONENTS), len(BROW_COMPONENTS)
N_EXPRESSION = N_MOUTH + N_BROW
N_LANDMARKS = 478  # MediaPipe face mesh with refined irises
# Fitted expression coefficients live in [0, EXPRESSION_MAX]: the components are one-sided
# (left/right pairs are mirror images), so the box is what makes them identifiable.
EXPRESSION_MAX = 1.5


def scale_mouth(expression: np.ndarray, reference: np.ndarray, gain: float) -> np.ndarray:
    """(T, E) expression whose mouth components (the first N_MOUTH) move `gain` times as far from
    the `reference` mouth (E,), kept in the components' box [0, EXPRESSION_MAX]; the brows
    untouched. For a renderer that draws mouth motion smaller than it is given (docs/lipsync.md)."""
    out = np.array(expression, np.float32, copy=True)
    if gain != 1.0:
        ref = np.asarray(reference, np.float32)[:N_MOUTH]
        out[:, :N_MOUTH] = np.clip(ref + np.float32(gain) * (out[:, :N_MOUTH] - ref), 0.0, EXPRESSION_MAX)
    return out


REGIONS: tuple[str, ...] = (
    "inner_face", "face_edge", "lips", "lips_outer", "lips_inner", "upper_lip", "lower_lip",
    "eye_left", "eye_right", "eyes", "brow_left", "brow_right", "brows", "nose",
)

MODEL_VERSION = 1
DEFAULT_MODEL_PATH = asset_path(f"face_model/talkgraph_3dmm_v{MODEL_VERSION}.npz")


@runtime_checkable
class MorphableModel(Protocol):
    """What the geometric nodes (Fit3DMM, DenseFlowBuilder, renderers) need from a linear 3DMM.

    Arrays are float32 in the model's own units; the frame is the one of nodes/face/camera.py
    (x subject's left, y down, z away from the camera) — an adapter for BFM/FLAME rotates its
    model into it. Downstream learned nodes (AnimationGenerator) also rely on the expression
    vector's meaning, so a model with other expression components needs them retrained.
    """

    name: str
    mean: np.ndarray  # (V, 3)
    shape_basis: np.ndarray  # (V, 3, S)
    expression_basis: np.ndarray  # (V, 3, E)
    expression_names: tuple[str, ...]
    triangles: np.ndarray  # (F, 3) int, front faces have positive signed area in the image
    regions: dict[str, np.ndarray]  # name -> bool (V,), at least "inner_face" and "face_edge"
    landmark_ids: np.ndarray  # (K,) indices into the 478 MediaPipe landmarks
    landmark_vertices: np.ndarray  # (K, 3) model vertices of the triangle holding each landmark
    landmark_bary: np.ndarray  # (K, 3) barycentric weights within that triangle

    def vertices(self, shape: np.ndarray, expression: np.ndarray) -> np.ndarray: ...


@dataclasses.dataclass(eq=False)
class FaceModel:
    """The project's 3DMM (see the module docstring for how it is built)."""

    name: str
    version: int
    mean: np.ndarray  # float32 (468, 3), mm
    shape_basis: np.ndarray  # float32 (468, 3, 60), mm per unit coefficient
    expression_basis: np.ndarray  # float32 (468, 3, 33)
    aux_basis: np.ndarray  # float32 (468, 3, 2): eye blinks, not part of the fitted expression
    triangles: np.ndarray  # int64 (898, 3)
    cap_triangles: np.ndarray  # bool (898,): triangles closing the eye and mouth holes
    regions: dict[str, np.ndarray]  # name -> bool (468,)
    loops: dict[str, np.ndarray]  # ordered contours, e.g. "lips_inner_upper" (right corner -> left corner)
    mirror: np.ndarray  # int (468,): index of each vertex's mirror image
    shape_std: np.ndarray  # float32 (60,): length (mm, over all vertices) of each identity column
    landmark_ids: np.ndarray
    landmark_vertices: np.ndarray
    landmark_bary: np.ndarray
    expression_names: tuple[str, ...] = EXPRESSION_COMPONENTS
    aux_names: tuple[str, ...] = AUX_COMPONENTS
    shape_names: tuple[str, ...] = ()
    sha256: str = ""

    @property
    def n_vertices(self) -> int:
        return self.mean.shape[0]

    def vertices(self, shape: np.ndarray | None = None, expression: np.ndarray | None = None,
                 aux: np.ndarray | None = None) -> np.ndarray:
        """Eq. 1. shape (S,) or (T, S); expression (E,) or (T, E); returns (V, 3) or (T, V, 3)."""
        out = self.mean.astype(np.float32)
        batch = [np.ndim(a) == 2 for a in (shape, expression, aux) if a is not None]
        for basis, c in ((self.shape_basis, shape), (self.expression_basis, expression), (self.aux_basis, aux)):
            if c is not None:
                out = out + np.einsum("vdk,...k->...vd", basis, np.asarray(c, dtype=np.float32))
        if any(batch) and out.ndim == 2:
            out = out[None]
        return out

    def project(self, shape: np.ndarray, expression: np.ndarray, pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vertices in pixels and their depth for per-frame expression (T, E) and pose (T, 6)."""
        return project(self.vertices(shape, expression), pose)

    def landmark_points(self, vertices: np.ndarray) -> np.ndarray:
        """Model positions of the mapped MediaPipe landmarks: (..., V, 3) -> (..., K, 3)."""
        v = vertices[..., self.landmark_vertices, :]  # (..., K, 3, 3)
        return np.einsum("...kjd,kj->...kd", v, self.landmark_bary)


def load_face_model(path: str | Path | None = None) -> FaceModel:
    """Load a FaceModel .npz (default: the bundled talkgraph_3dmm_v1.npz)."""
    path = Path(path) if path is not None else DEFAULT_MODEL_PATH
    if not path.is_file():
        raise FileNotFoundError(
            f"face model {path} not found; rebuild it with `python -m tools.build_face_model --out {path}` (in a source checkout)"
        )
    raw = path.read_bytes()
    with np.load(path, allow_pickle=False) as z:
        d = {k: z[k] for k in z.files}
    meta = json.loads(bytes(d.pop("meta_json")).decode())
    regions = {k[len("region_"):]: d[k].astype(bool) for k in d if k.startswith("region_")}
    loops = {k[len("loop_"):]: d[k].astype(np.int64) for k in d if k.startswith("loop_")}
    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    return FaceModel(
        name=meta["name"],
        version=int(meta["version"]),
        mean=f32(d["mean"]),
        shape_basis=f32(d["shape_basis"]),
        expression_basis=f32(d["expression_basis"]),
        aux_basis=f32(d["aux_basis"]),
        triangles=d["triangles"].astype(np.int64),
        cap_triangles=d["cap_triangles"].astype(bool),
        regions=regions,
        loops=loops,
        mirror=d["mirror"].astype(np.int64),
        shape_std=f32(d["shape_std"]),
        landmark_ids=d["landmark_ids"].astype(np.int64),
        landmark_vertices=d["landmark_vertices"].astype(np.int64),
        landmark_bary=f32(d["landmark_bary"]),
        expression_names=tuple(meta["expression_names"]),
        aux_names=tuple(meta["aux_names"]),
        shape_names=tuple(meta["shape_names"]),
        sha256=hashlib.sha256(raw).hexdigest(),
    )
