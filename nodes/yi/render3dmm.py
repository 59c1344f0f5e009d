"""Rendering the 3D facial animation and background matching (Yi et al. §3.1, §3.3).

Rendering. The mesh of the project's 3DMM (identity from the target, expression and pose from
the audio) is projected with the scaled orthographic camera (nodes/face/camera.py) and
rasterised with the vectorised z-buffer of nodes/face/raster.py. Colour follows the paper's
Lambertian model with spherical-harmonics lighting, B = 3 bands (9 functions, 27 coefficients
for R, G, B; Ramamoorthi & Hanrahan 2001, Deng et al.'s constants):

    C(n_i, t_i, gamma) = t_i * sum_b gamma_b Phi_b(n_i)                                (§3.1)

gamma is fitted from the target's frames by linear least squares on the colours of visible
vertices. Albedo t (§3.3) is either
- `detailed`: the most neutral (smallest expression norm), most frontal (smallest rotation)
  target frame divided by its SH shading, or
- `low`: per-vertex colours over several target frames, divided by their shading, averaged and
  smoothed over the mesh (a low-frequency albedo).

Background matching (§3.3): key frames are the frames whose yaw (or another axis) is a local
extreme within a short window, plus the first and last frame; each key frame takes the target
frame with the nearest head pose as its key background; frames between two key frames blend the
two key backgrounds linearly, and their pose is shifted by the linearly interpolated difference
between the matched and the generated pose, so the face sits where the background's head is.
A single target image gives its own background to every frame.

Departures, and why:
- The project's 3DMM has no texture basis (nodes/face/model.py), so the paper's 3DMM texture
  (80 coefficients) is replaced by the smoothed per-vertex colours above.
- Its mesh has 468 vertices, too few for per-vertex colours to be 'detailed' (the BFM has 35k),
  so the detailed albedo is kept as a texture: the reference frame divided by its shading,
  looked up at each pixel through the reference frame's projection of the same surface point
  (barycentric coordinates of the visible triangle). Triangles hidden or back-facing in the
  reference frame fall back to the low-frequency albedo. The eye and mouth caps are textured
  the same way, so the reference frame's eyes and mouth interior are carried along.
- A single image is not rotated to the predicted pose with face profiling (Zhu et al. 2016);
  its background is used as it is, and the memory GAN repairs the seams.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

# SH constants of Deng et al. (2019), used by the paper's renderer [16]
_A = (math.pi, 2 * math.pi / math.sqrt(3.0), 2 * math.pi / math.sqrt(8.0))
_C = (1 / math.sqrt(4 * math.pi), math.sqrt(3.0) / math.sqrt(4 * math.pi), 3 * math.sqrt(5.0) / math.sqrt(64 * math.pi))
N_SH = 9

Albedo = Literal["detailed", "low"]


def sh_basis(normals: torch.Tensor) -> torch.Tensor:
    """The 9 SH functions Phi_b at unit normals (..., 3) -> (..., 9)."""
    x, y, z = normals.unbind(-1)
    a0, a1, a2 = _A
    c0, c1, c2 = _C
    return torch.stack([
        torch.full_like(x, a0 * c0), -a1 * c1 * y, a1 * c1 * z, -a1 * c1 * x,
        a2 * c2 * x * y, -a2 * c2 * y * z, a2 * c2 * 0.5 / math.sqrt(3.0) * (3 * z * z - 1),
        -a2 * c2 * x * z, a2 * c2 * 0.5 * (x * x - y * y),
    ], -1)


def shading(normals: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """Irradiance per channel: sum_b gamma_{c,b} Phi_b(n) for normals (..., 3), gamma (3, 9) -> (..., 3)."""
    return sh_basis(normals) @ gamma.t()


def fit_sh_lighting(normals: torch.Tensor, colours: torch.Tensor, albedo: torch.Tensor,
                    weights: torch.Tensor | None = None) -> torch.Tensor:
    """gamma (3, 9) minimising sum_i w_i |c_i - t_i * Phi(n_i) gamma|^2, per channel (linear
    least squares, a small ridge on the non-constant bands). normals/colours/albedo (N, 3)."""
    phi = sh_basis(normals.double())  # (N, 9)
    w = torch.ones(len(phi), dtype=torch.float64) if weights is None else weights.double()
    ridge = torch.diag(torch.tensor([0.0] + [1e-6] * (N_SH - 1), dtype=torch.float64)) * w.sum()
    out = []
    for c in range(3):
        a = phi * albedo[:, c:c + 1].double()
        ata = a.t() @ (a * w[:, None]) + ridge
        atb = a.t() @ (colours[:, c].double() * w)
        out.append(torch.linalg.solve(ata, atb))
    return torch.stack(out).float()


def vertex_normals(vertices: torch.Tensor, triangles: torch.Tensor) -> torch.Tensor:
    """Unit normals (B, V, 3) pointing towards the camera (area-weighted face normals) for
    camera-frame vertices (B, V, 3) with x right, y down, z away from the camera and triangles
    whose front faces have positive signed image area (nodes/face/topology.py)."""
    a, b, c = (vertices[:, triangles[:, k]] for k in range(3))
    face = -torch.cross(b - a, c - a, dim=-1)  # (B, F, 3); minus: front faces point to -z
    normals = torch.zeros_like(vertices)
    for k in range(3):
        normals.index_add_(1, triangles[:, k], face)
    return F.normalize(normals, dim=-1)


def _per_fragment(frags, triangles: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
    """Barycentric values (M, C) of per-vertex attributes (B, V, C) at the covered pixels."""
    corners = attributes[frags.frame[:, None], triangles[frags.triangle]]  # (M, 3, C)
    return (corners * frags.bary[..., None]).sum(1)


def _bilinear(image: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """Colours (N, C) of image (H, W, C) at pixel points (N, 2) (x right, y down, pixel centres)."""
    h, w = image.shape[:2]
    grid = torch.stack([xy[:, 0] / max(w - 1, 1) * 2 - 1, xy[:, 1] / max(h - 1, 1) * 2 - 1], -1)
    out = F.grid_sample(image.permute(2, 0, 1)[None], grid[None, None], mode="bilinear", padding_mode="border",
                        align_corners=True)
    return out[0, :, 0].t()


@dataclasses.dataclass
class Appearance:
    """What rendering needs from the target: lighting, albedo, and where the detailed texture is."""

    gamma: np.ndarray  # (3, 9) SH coefficients
    vertex_albedo: np.ndarray  # (V, 3) low-frequency albedo in [0, 1]-ish
    texture: np.ndarray  # (H, W, 3) detailed albedo texture (reference frame / its shading)
    texture_uv: np.ndarray  # (V, 2) pixel position of each vertex in the texture
    texture_ok: np.ndarray  # (F,) bool: triangle visible and front-facing in the reference frame
    reference_frame: int


class MeshGeometry:
    """Projection, normals and rasterisation of the 3DMM for batches of frames (torch)."""

    def __init__(self, model, device: str = "cpu") -> None:
        from nodes.face.flow import FlowBuilder

        self.model = model
        self.device = torch.device(device)
        self._proj = FlowBuilder(model, device=device)
        self.triangles = self._proj.triangles

    def project(self, shape: np.ndarray, expression: np.ndarray, pose: np.ndarray) -> Projected:
        """Pixels (B, V, 2), depth (B, V) and unit normals (B, V, 3) towards the camera."""
        points, depth = self._proj.project(shape, expression, pose)
        normals = vertex_normals(torch.cat([points, depth[..., None]], -1), self.triangles)
        return Projected(points, depth, normals)

    def rasterize(self, proj: Projected, height: int, width: int):
        from nodes.face.raster import rasterize

        return rasterize(proj.points, proj.depth, self.triangles, height, width)


@dataclasses.dataclass
class Projected:
    points: torch.Tensor  # (B, V, 2) pixels
    depth: torch.Tensor  # (B, V)
    normals: torch.Tensor  # (B, V, 3)

    def __getitem__(self, i: slice) -> Projected:
        return Projected(self.points[i], self.depth[i], self.normals[i])


def select_reference(expression: np.ndarray, pose: np.ndarray) -> int:
    """The most neutral, most frontal frame: smallest expression norm + rotation magnitude,
    each divided by its median over the clip so both count alike (§3.3)."""
    e = np.linalg.norm(np.asarray(expression, np.float64), axis=1)
    r = np.linalg.norm(np.asarray(pose, np.float64)[:, :3], axis=1)
    score = e / max(np.median(e), 1e-6) + r / max(np.median(r), 1e-6)
    return int(np.argmin(score))


def _smooth_fill(values: np.ndarray, known: np.ndarray, model, iterations: int) -> np.ndarray:
    """Per-vertex values smoothed over the mesh; unknown vertices filled from their neighbours
    (normalised diffusion: smooth(values * known) / smooth(known))."""
    from nodes.face.topology import smooth

    w = known.astype(np.float64)
    num = smooth(values * w[:, None], model.mean, model.triangles, iterations=iterations)
    den = smooth(w, model.mean, model.triangles, iterations=iterations)
    fallback = values[known].mean(0) if known.any() else np.full(3, 0.5)
    out = np.where(den[:, None] > 1e-3, num / np.maximum(den[:, None], 1e-3), fallback)
    return out


def fit_appearance(model, frames: np.ndarray, coeffs, *, max_frames: int = 16, reference_frame: int | None = None,
                   smooth_iterations: int = 30, device: str = "cpu") -> Appearance:
    """Lighting and albedo of the target (frames (T, H, W, 3) uint8 with their fitted coeffs)."""
    geom = MeshGeometry(model, device)
    t = len(frames)
    h, w = frames.shape[1:3]
    use = np.unique(np.linspace(0, t - 1, min(t, max_frames)).round().astype(int))
    ref = select_reference(coeffs.expression, coeffs.pose) if reference_frame is None else int(reference_frame)
    use = np.union1d(use, [ref])
    with torch.no_grad():
        proj = geom.project(coeffs.shape, coeffs.expression[use], coeffs.pose[use])
        points, normals = proj.points, proj.normals
        frags = geom.rasterize(proj, h, w)
        n_v = points.shape[1]
        tri_vis = torch.zeros((len(use), len(geom.triangles)), dtype=torch.bool, device=geom.device)
        tri_vis[frags.frame, frags.triangle] = True
        # a vertex is visible when one of its triangles is visible in that frame
        vt = torch.zeros((len(use), n_v), dtype=torch.float32, device=geom.device)
        for k in range(3):
            vt.index_add_(1, geom.triangles[:, k], tri_vis.float())
        # colours at the silhouette mix in the background: fit on inner, camera-facing vertices
        inner = torch.as_tensor(~model.regions["face_edge"], device=geom.device)
        visible = (vt > 0) & inner[None] & (normals[..., 2] < -0.3)
        img = torch.as_tensor(frames[use], dtype=torch.float32, device=geom.device) / 255.0
        colours = torch.stack([_bilinear(img[i], points[i]) for i in range(len(use))])  # (K, V, 3)
        # 1) lighting against a flat albedo (the mean colour), 2) low-frequency albedo under that
        # lighting, 3) lighting again against the low-frequency albedo
        vis = visible.reshape(-1)
        nrm, col = normals.reshape(-1, 3)[vis], colours.reshape(-1, 3)[vis]
        flat = col.mean(0, keepdim=True).expand_as(col)
        gamma = fit_sh_lighting(nrm, col, flat)
        albedo = None
        for _ in range(2):
            shade = shading(normals, gamma).clamp_min(0.05)
            ratio = (colours / shade).double()
            cnt = visible.double().sum(0)
            mean = (ratio * visible[..., None]).sum(0) / cnt.clamp_min(1)[:, None]
            albedo = _smooth_fill(mean.cpu().numpy(), (cnt > 0).cpu().numpy(), model, smooth_iterations)
            vert_alb = torch.as_tensor(albedo, dtype=torch.float32, device=geom.device)
            gamma = fit_sh_lighting(nrm, col, vert_alb[None].expand(len(use), -1, -1).reshape(-1, 3)[vis])
        # detailed texture: the reference frame divided by its per-pixel shading
        i_ref = int(np.flatnonzero(use == ref)[0])
        shade_v = shading(normals[i_ref:i_ref + 1], gamma).clamp_min(0.05)
        ref_frags = geom.rasterize(proj[i_ref:i_ref + 1], h, w)
        shade_px = _per_fragment(ref_frags, geom.triangles, shade_v)
        texture = img[i_ref].clone()
        flat_idx = ref_frags.row * w + ref_frags.col
        texture.view(-1, 3)[flat_idx] = (texture.view(-1, 3)[flat_idx] / shade_px).clamp(0, 1.5)
        ok = torch.zeros(len(geom.triangles), dtype=torch.bool, device=geom.device)
        ok[ref_frags.triangle] = True
    return Appearance(gamma=gamma.cpu().numpy(), vertex_albedo=albedo.astype(np.float32),
                      texture=texture.cpu().numpy().astype(np.float32), texture_uv=points[i_ref].cpu().numpy(),
                      texture_ok=ok.cpu().numpy(), reference_frame=ref)


class FaceRenderer:
    """Renders coefficient sequences with one target's appearance: colour + coverage per frame."""

    def __init__(self, model, appearance: Appearance, albedo: Albedo = "detailed", device: str = "cpu") -> None:
        self.geom = MeshGeometry(model, device)
        self.device = self.geom.device
        self.albedo = albedo
        t = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=self.device)  # noqa: E731
        self.gamma = t(appearance.gamma)
        self.vertex_albedo = t(appearance.vertex_albedo)
        self.texture = t(appearance.texture)
        self.texture_uv = t(appearance.texture_uv)
        self.texture_ok = torch.as_tensor(appearance.texture_ok, device=self.device)

    @torch.no_grad()
    def render(self, shape: np.ndarray, expression: np.ndarray, pose: np.ndarray, height: int, width: int,
               background: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(frames (B, H, W, 3) float in [0, 1] with the face over `background` (B, H, W, 3) or black,
        coverage (B, H, W) bool) for expression (B, E), pose (B, 6)."""
        b = len(expression)
        proj = self.geom.project(shape, expression, pose)
        frags = self.geom.rasterize(proj, height, width)
        # one gather for every per-vertex quantity: irradiance (Gouraud), albedo, texture position
        attrs = [shading(proj.normals, self.gamma), self.vertex_albedo[None].expand(b, -1, -1)]
        if self.albedo == "detailed":
            attrs.append(self.texture_uv[None].expand(b, -1, -1))
        vals = _per_fragment(frags, self.geom.triangles, torch.cat(attrs, -1))
        shade, albedo = vals[:, :3], vals[:, 3:6]
        if self.albedo == "detailed":
            use = self.texture_ok[frags.triangle]
            albedo = torch.where(use[:, None], _bilinear(self.texture, vals[:, 6:8]), albedo)
        colour = (albedo * shade).clamp(0, 1)
        out = (torch.zeros((b, height, width, 3), device=self.device) if background is None
               else background.clone(memory_format=torch.contiguous_format))
        out.view(-1, 3)[frags.flat_index()] = colour
        return out, frags.covered


# --- background matching (§3.3) ---------------------------------------------------------------


def key_frames(pose: np.ndarray, window: int = 25, axis: int = 1) -> np.ndarray:
    """Frames whose angle on `axis` (0 pitch, 1 yaw, 2 roll) is the largest or smallest within
    +-window/2 frames — the leftmost/rightmost head turns — plus the first and last frame."""
    a = np.asarray(pose, np.float64)[:, axis]
    t = len(a)
    half = max(1, window // 2)
    keys = {0, t - 1}
    for i in range(t):
        lo, hi = max(0, i - half), min(t, i + half + 1)
        seg = a[lo:hi]
        if a[i] >= seg.max() or a[i] <= seg.min():
            keys.add(i)
    # plateaus give runs of equal extremes: keep the first of each run
    keys = sorted(keys)
    return np.array([k for j, k in enumerate(keys) if j == 0 or k != keys[j - 1] + 1 or k == t - 1], np.int64)


def pose_distance(a: np.ndarray, b: np.ndarray, image_size: tuple[int, int], translation_weight: float = 1.0) -> np.ndarray:
    """Pairwise distances (len(a), len(b)) between poses: squared angle differences (rad^2) plus
    squared translation in fractions of the image (x translation_weight) and log-scale."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    h, w = image_size
    norm = np.array([1, 1, 1, 1 / w, 1 / h, 1.0]) * np.array([1, 1, 1, translation_weight, translation_weight, 1.0])
    d = (a[:, None, :] - b[None, :, :]) * norm
    return (d**2).sum(-1)


@dataclasses.dataclass
class BackgroundPlan:
    keys: np.ndarray  # (K,) key frames of the generated sequence
    matches: np.ndarray  # (K,) target frame matched to each key frame
    pose: np.ndarray  # (T, 6) generated pose shifted to fit the backgrounds


def plan_backgrounds(gen_pose: np.ndarray, target_pose: np.ndarray, image_size: tuple[int, int], *, window: int = 25,
                     axis: int = 1, fit_pose: bool = True, exclude: np.ndarray | None = None) -> BackgroundPlan:
    """Key frames, their matched target frames and the adjusted pose. `exclude` (T_gen, T_target)
    bool marks pairs that may not match (training: a frame must not take its own background)."""
    keys = key_frames(gen_pose, window, axis)
    d = pose_distance(gen_pose[keys], target_pose, image_size)
    if exclude is not None:
        d = np.where(exclude[keys], np.inf, d)
        if not np.isfinite(d).any(axis=1).all():
            raise ValueError("no target frame is left to match some key frame")
    matches = d.argmin(1)
    pose = np.asarray(gen_pose, np.float32).copy()
    if fit_pose:
        t = np.arange(len(gen_pose))
        diff = target_pose[matches] - gen_pose[keys]
        pose += np.stack([np.interp(t, keys, diff[:, j]) for j in range(6)], 1).astype(np.float32)
    return BackgroundPlan(keys, matches, pose)


def background_frames(plan: BackgroundPlan, target_frames: np.ndarray, frames: slice) -> np.ndarray:
    """The interpolated backgrounds (B, H, W, 3) float32 in [0, 1] for a range of frames."""
    idx = np.arange(frames.start, frames.stop)
    pos = np.searchsorted(plan.keys, idx, side="right") - 1
    pos = np.clip(pos, 0, len(plan.keys) - 2) if len(plan.keys) > 1 else np.zeros_like(pos)
    k0 = plan.keys[pos]
    k1 = plan.keys[np.minimum(pos + 1, len(plan.keys) - 1)]
    wgt = np.where(k1 > k0, (idx - k0) / np.maximum(k1 - k0, 1), 0.0).astype(np.float32)[:, None, None, None]
    a = target_frames[plan.matches[pos]].astype(np.float32)
    b = target_frames[plan.matches[np.minimum(pos + 1, len(plan.keys) - 1)]].astype(np.float32)
    return ((1 - wgt) * a + wgt * b) / 255.0


def render_sequence(renderer: FaceRenderer, shape: np.ndarray, expression: np.ndarray, pose: np.ndarray,
                    height: int, width: int, background: Callable[[slice], np.ndarray] | None = None,
                    chunk: int = 16, progress: Callable[[int, int], None] | None = None,
                    ) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
    """Yield (slice, uint8 frames (B, H, W, 3), coverage masks float32 (B, H, W)) chunk by chunk."""
    n = len(expression)
    for start in range(0, n, chunk):
        sl = slice(start, min(n, start + chunk))
        bg = None
        if background is not None:
            bg = torch.as_tensor(np.ascontiguousarray(background(sl), np.float32), device=renderer.device)
        img, cov = renderer.render(shape, expression[sl], pose[sl], height, width, bg)
        yield sl, (img * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy(), cov.float().cpu().numpy()
        if progress is not None:
            progress(sl.stop, n)
