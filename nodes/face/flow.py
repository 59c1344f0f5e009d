"""The approximate dense motion flow F_app of HDTF §4.2, from 3DMM coefficients.

For every driving frame, F_app is a backward flow in pixels (nodes/types.py): the driving
frame's pixel x reads the reference image at x + F(x), so WarpImage(reference, F) gives the
driving frame. It is built in four parts (paper Fig. 5b):

- inner face: both meshes are projected (scaled orthographic camera, nodes/face/camera.py);
  the driving frame's mesh — 898 triangles, eye and mouth holes capped — is rasterised with a
  z-buffer (nodes/face/raster.py) and the vertex displacement (reference position - driving
  position) is interpolated barycentrically at every covered pixel. Inside a triangle this is
  the exact affine motion of that triangle.
- upper torso: the torso is assumed to move with the head, so it takes the mean inner-face
  flow. It is the band of rows below the torso line y_t = (lowest projected face point) +
  `neck` x face height, within `torso_width` x face width of the face's centre column.
- head-related region (hair, ears, neck): pixels outside the face, above the torso line and
  within `head_margin` x face height of it take the flow of the nearest face pixel (which is
  a face-edge pixel), found with a distance transform that returns the nearest pixel
  (OpenCV's 5x5 chamfer transform with pixel labels, on every other row and column: the pixel
  found is within ~2 px of the exact nearest one).
- background: flow 0 and region 0; the video generator's foreground mask corrects it (§4.2).

Departures from the official construction (code_constructing_Fapp): it spreads the vertex
displacements with nearest-vertex griddata over the whole image and sets all rows below the
face to the mean; here the face is interpolated barycentrically over the rasterised mesh (so
occlusion and the mouth opening are handled), the head-related and torso regions are bounded
(documented above) and the background is left at zero as the paper describes.

Frames are processed in chunks written into preallocated outputs, so working memory does not
depend on the number of frames.
"""
from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator

import numpy as np

from .camera import rotation_matrix
from .model import MorphableModel

REGION_BACKGROUND, REGION_TORSO, REGION_HEAD, REGION_FACE = 0, 1, 2, 3
REGION_LEVELS = np.array([0.0, 1.0 / 3.0, 2.0 / 3.0, 1.0], np.float32)  # as stored in the Mask output


@dataclasses.dataclass
class FlowSettings:
    head_margin: float = 0.35  # head-related band width, x face height
    neck: float = 0.2  # torso starts this far below the chin, x face height
    torso_width: float = 3.0  # torso band width, x face width
    identity: str = "reference"  # whose identity shapes the driving mesh: "reference" | "driving"
    chunk: int = 8


@dataclasses.dataclass
class Coefficients:
    """The parts of MorphCoeffs the flow needs (shape (S,), expression (T, E), pose (T, 6))."""

    shape: np.ndarray
    expression: np.ndarray
    pose: np.ndarray


class FlowBuilder:
    """F_app for one model; `build` fills whole arrays, `chunks` yields them piece by piece."""

    def __init__(self, model: MorphableModel, settings: FlowSettings | None = None, device: str = "cpu"):
        import torch

        self.model = model
        self.s = settings or FlowSettings()
        self.device = torch.device(device)
        t = lambda a, dt=torch.float32: torch.as_tensor(np.ascontiguousarray(a), dtype=dt, device=self.device)  # noqa: E731
        n_v = model.mean.shape[0]
        self.n_vertices = n_v
        self.mean = t(model.mean)
        self.shape_basis = t(model.shape_basis.reshape(n_v * 3, -1))
        self.exp_basis_t = t(model.expression_basis.reshape(n_v * 3, -1).T)  # (E, V*3)
        self.triangles = t(model.triangles, torch.int64)

    # --- geometry -------------------------------------------------------------------------

    def project(self, shape: np.ndarray, expression: np.ndarray, pose: np.ndarray):
        """Projected vertices (B, V, 2) and depths (B, V) as torch tensors."""
        import torch

        base = self.mean + (self.shape_basis @ torch.as_tensor(shape, dtype=torch.float32, device=self.device)).view(-1, 3)
        exp = torch.as_tensor(np.ascontiguousarray(expression, dtype=np.float32), device=self.device)
        verts = base[None] + (exp @ self.exp_basis_t).view(len(exp), -1, 3)
        pose = np.asarray(pose, dtype=np.float64)
        rot = torch.as_tensor(rotation_matrix(pose[:, 0], pose[:, 1], pose[:, 2]), dtype=torch.float32, device=self.device)
        scale = torch.as_tensor(np.exp(pose[:, 5]), dtype=torch.float32, device=self.device)[:, None, None]
        cam = scale * (verts @ rot.transpose(1, 2))
        trans = torch.as_tensor(pose[:, 3:5], dtype=torch.float32, device=self.device)[:, None]
        return cam[..., :2] + trans, cam[..., 2]

    # --- the flow -------------------------------------------------------------------------

    def build(self, reference: Coefficients, driving: Coefficients, height: int, width: int,
              progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Flow (T, H, W, 2) float32 and region mask (T, H, W) float32 (levels REGION_LEVELS)."""
        n = len(driving.expression)
        flow = np.empty((n, height, width, 2), np.float32)
        regions = np.empty((n, height, width), np.float32)
        codes = np.empty((min(n, self.s.chunk), height, width), np.uint8)
        for start in range(0, n, self.s.chunk):
            sl = slice(start, min(n, start + self.s.chunk))
            self.compute(reference, driving, sl, flow[sl], codes[: sl.stop - sl.start])
            np.multiply(codes[: sl.stop - sl.start], np.float32(1.0 / 3.0), out=regions[sl])  # = REGION_LEVELS[codes]
            if progress is not None:
                progress(sl.stop, n)
        return flow, regions

    def chunks(self, reference: Coefficients, driving: Coefficients, height: int,
               width: int) -> Iterator[tuple[slice, np.ndarray, np.ndarray]]:
        """Yield (frame slice, flow (B, H, W, 2), region codes (B, H, W) uint8) chunk by chunk;
        the arrays are reused for the next chunk (copy what you keep)."""
        n = len(driving.expression)
        flow = np.empty((min(n, self.s.chunk), height, width, 2), np.float32)
        codes = np.empty((min(n, self.s.chunk), height, width), np.uint8)
        for start in range(0, n, self.s.chunk):
            sl = slice(start, min(n, start + self.s.chunk))
            b = sl.stop - sl.start
            self.compute(reference, driving, sl, flow[:b], codes[:b])
            yield sl, flow[:b], codes[:b]

    def compute(self, reference: Coefficients, driving: Coefficients, frames: slice,
                flow: np.ndarray, codes: np.ndarray) -> None:
        """Fill flow (B, H, W, 2) and region codes (B, H, W) for the driving frames `frames`."""
        import torch

        from .raster import rasterize, single_threaded

        bsz, height, width = codes.shape
        shape = reference.shape if self.s.identity == "reference" else driving.shape
        threads = single_threaded() if self.device.type == "cpu" else contextlib.nullcontext()
        with torch.no_grad(), threads:
            ref_points, _ = self.project(reference.shape, reference.expression[:1], reference.pose[:1])
            points, depth = self.project(shape, driving.expression[frames], driving.pose[frames])
            frags = rasterize(points, depth, self.triangles, height, width)
            flow[...] = 0.0
            codes[...] = REGION_BACKGROUND
            disp = ref_points - points
            if self.device.type == "cpu":
                frags.interpolate(self.triangles, disp, out=torch.from_numpy(flow))
            else:
                flow[...] = frags.interpolate(self.triangles, disp).cpu().numpy()
            covered = frags.flat_index().cpu().numpy()
            codes.reshape(-1)[covered] = REGION_FACE
            # mean inner-face flow per frame (the torso's), over the covered pixels
            face_flow = torch.from_numpy(flow).view(-1, 2).to(self.device).index_select(0, frags.flat_index())
            total = torch.zeros((bsz, 2), device=self.device).index_add_(0, frags.frame, face_flow)
            count = torch.bincount(frags.frame, minlength=bsz)
            means = (total / count.clamp(min=1)[:, None]).cpu().numpy()
        self._fill_outside(flow, codes, points.cpu().numpy(), means, count.cpu().numpy())

    def _fill_outside(self, flow: np.ndarray, codes: np.ndarray, points: np.ndarray, means: np.ndarray,
                      n_covered: np.ndarray) -> None:
        """Torso = mean face flow; head-related = nearest face pixel's flow; background stays 0."""
        import cv2

        bsz, h, w = codes.shape
        # (dx, dy) pairs viewed as one complex64 each: gathers, fills and masked copies then
        # move one 8-byte element per pixel instead of two 4-byte ones
        cflow = flow.view(np.complex64)[..., 0]
        for b in range(bsz):
            if n_covered[b] == 0:
                continue  # the face is outside the image: nothing to propagate
            (x0, y0), (x1, y1) = points[b].min(0), points[b].max(0)
            face_h, face_w = y1 - y0, x1 - x0
            # torso: the band of rows below the torso line (no face pixel lies there)
            torso_top = int(np.clip(np.ceil(y1 + self.s.neck * face_h), 0, h))
            half = 0.5 * self.s.torso_width * face_w
            c0 = int(np.clip(np.ceil(0.5 * (x0 + x1) - half), 0, w))
            c1 = int(np.clip(np.floor(0.5 * (x0 + x1) + half) + 1, 0, w))
            if torso_top < h and c0 < c1:
                cflow[b, torso_top:, c0:c1] = complex(means[b, 0], means[b, 1])
                codes[b, torso_top:, c0:c1] = REGION_TORSO
            # head-related: each pixel within the margin of the face (in the window the margin
            # reaches, above the torso line) takes its nearest face pixel's flow. This runs on
            # every other row and column of the window and is copied to the 2x2 cells (4x less
            # work; the face pixel used is within ~2 px of the exact nearest one, where the
            # face-edge flow barely changes). With pixel labels every face pixel is its own
            # label, so a label -> flow table answers directly.
            margin = self.s.head_margin * face_h
            wy0, wy1 = int(np.clip(np.floor(y0 - margin), 0, h)), int(np.clip(np.ceil(y1 + margin) + 1, 0, h))
            wx0, wx1 = int(np.clip(np.floor(x0 - margin), 0, w)), int(np.clip(np.ceil(x1 + margin) + 1, 0, w))
            wy1 = min(wy1, torso_top)
            if wy1 <= wy0 or wx1 <= wx0:
                continue
            outside = codes[b, wy0:wy1, wx0:wx1] != REGION_FACE
            coarse = np.ascontiguousarray(outside[::2, ::2])
            if coarse.all():
                continue  # a face too thin to show on the coarse grid: leave the band empty
            dist, labels = cv2.distanceTransformWithLabels(coarse.view(np.uint8), cv2.DIST_L2, 5,
                                                           labelType=cv2.DIST_LABEL_PIXEL)
            win_flow = cflow[b, wy0:wy1, wx0:wx1]
            table = np.zeros(int(labels.max()) + 1, np.complex64)
            table[labels[~coarse]] = win_flow[::2, ::2][~coarse]
            hh, ww = outside.shape
            up = lambda a: a.repeat(2, 0).repeat(2, 1)[:hh, :ww]  # noqa: E731 (coarse -> window)
            head = up(dist <= 0.5 * margin) & outside
            np.copyto(win_flow, up(table[labels]), where=head)
            np.copyto(codes[b, wy0:wy1, wx0:wx1], REGION_HEAD, where=head)
