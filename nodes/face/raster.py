"""A vectorised z-buffer triangle rasteriser in torch (CPU or GPU), batched over frames.

Scanline rasterisation without a loop: every (triangle, pixel row) pair a triangle spans is
enumerated at once, the row's span inside the triangle comes from intersecting the row with
the triangle's edges, and the pixels of all spans are enumerated at once — so the work is
proportional to the covered area, with no per-pixel inside test. Pixel (i, j) is the point
x = j, y = i (nodes/types.py); a pixel is covered when its centre is inside (edges included).
Depth (a plane per triangle) and triangle id are packed into one int64 key (an order-preserving
integer image of the float depth in the high half), so a single `scatter_reduce(amin)`
resolves visibility, ties included. Barycentric weights are computed afterwards, for the
winning triangle of each covered pixel only. Back faces (negative signed area, see
topology.signed_area) are culled.
"""
from __future__ import annotations

import dataclasses

import torch

_EMPTY = torch.iinfo(torch.int64).max


@dataclasses.dataclass
class Fragments:
    """The covered pixels of a rasterised batch (sparse): for each, its frame, row and column,
    the winning triangle and the barycentric weights of its three vertices at the pixel centre."""

    frame: torch.Tensor  # int64 (M,)
    row: torch.Tensor  # int64 (M,)
    col: torch.Tensor  # int64 (M,)
    triangle: torch.Tensor  # int64 (M,)
    bary: torch.Tensor  # float32 (M, 3)
    shape: tuple[int, int, int]  # (B, H, W)

    @property
    def covered(self) -> torch.Tensor:
        """bool (B, H, W)."""
        out = torch.zeros(self.shape, dtype=torch.bool, device=self.frame.device)
        out[self.frame, self.row, self.col] = True
        return out

    def triangle_map(self) -> torch.Tensor:
        """int64 (B, H, W): the visible triangle per pixel, -1 where uncovered."""
        out = torch.full(self.shape, -1, dtype=torch.int64, device=self.frame.device)
        out[self.frame, self.row, self.col] = self.triangle
        return out

    def interpolate(self, triangles: torch.Tensor, attributes: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Barycentric interpolation of per-vertex attributes (B, N, C) at the covered pixels,
        written into `out` (B, H, W, C) (zeros when not given; other pixels are left alone)."""
        bsz, nf, ch = attributes.shape[0], triangles.shape[0], attributes.shape[-1]
        if out is None:
            out = torch.zeros((*self.shape, ch), dtype=attributes.dtype, device=attributes.device)
        # corners per (frame, triangle) first, then one contiguous row gather per pixel
        corners = attributes[:, triangles].reshape(bsz * nf, 3, ch)
        vals = corners.index_select(0, self.frame * nf + self.triangle)  # (M, 3, C)
        w = self.bary
        res = vals[:, 0] * w[:, :1] + vals[:, 1] * w[:, 1:2] + vals[:, 2] * w[:, 2:]
        out.view(-1, ch).index_copy_(0, self.flat_index(), res.to(out.dtype))
        return out

    def flat_index(self) -> torch.Tensor:
        """Index of each covered pixel in a flattened (B, H, W) array."""
        _, h, w = self.shape
        return (self.frame * h + self.row) * w + self.col


def rasterize(points: torch.Tensor, depth: torch.Tensor, triangles: torch.Tensor, height: int, width: int,
              cull_back: bool = True) -> Fragments:
    """points (B, N, 2) pixels, depth (B, N) (smaller = nearer), triangles (F, 3) int64."""
    bsz, nf = points.shape[0], triangles.shape[0]
    dev = points.device
    points, depth = points.float(), depth.float()
    a, b, c = points[:, triangles[:, 0]], points[:, triangles[:, 1]], points[:, triangles[:, 2]]  # (B, F, 2)
    ab, ac = b - a, c - a
    area = ab[..., 0] * ac[..., 1] - ab[..., 1] * ac[..., 0]
    ok = (area > 1e-9) if cull_back else (area.abs() > 1e-9)
    inv = torch.where(ok, 1.0 / torch.where(ok, area, torch.ones_like(area)), torch.zeros_like(area))
    za, zb, zc = depth[:, triangles[:, 0]], depth[:, triangles[:, 1]], depth[:, triangles[:, 2]]
    # depth as a plane over the image: z = za + gx (x - ax) + gy (y - ay)
    gx = ((zb - za) * ac[..., 1] - (zc - za) * ab[..., 1]) * inv
    gy = ((zc - za) * ab[..., 0] - (zb - za) * ac[..., 0]) * inv
    # per (frame, face) constants as rows of one table, so each stage gathers once
    consts = torch.stack([a[..., 0], a[..., 1], ab[..., 0], ab[..., 1], ac[..., 0], ac[..., 1], inv, gx, gy, za], -1).reshape(-1, 10)
    # the z-buffer covers only the window all visible triangles of the batch fall in
    lo = torch.minimum(torch.minimum(a, b), c)[ok]
    hi = torch.maximum(torch.maximum(a, b), c)[ok]
    if lo.numel() == 0:
        return _empty(bsz, height, width, dev)
    wx0, wy0 = (int(v) for v in lo.amin(0).ceil().clamp(min=0).tolist())
    wx1 = int(min(width - 1, float(hi[:, 0].max().floor()))) + 1
    wy1 = int(min(height - 1, float(hi[:, 1].max().floor()))) + 1
    if wx1 <= wx0 or wy1 <= wy0:
        return _empty(bsz, height, width, dev)
    win = (wy0, wy1, wx0, wx1)
    zbuf = torch.full((bsz * (wy1 - wy0) * (wx1 - wx0),), _EMPTY, dtype=torch.int64, device=dev)

    # 1. rows: every (face, pixel row) pair the face spans
    ymin = torch.minimum(torch.minimum(a[..., 1], b[..., 1]), c[..., 1]).ceil().clamp(min=wy0)
    ymax = torch.maximum(torch.maximum(a[..., 1], b[..., 1]), c[..., 1]).floor().clamp(max=wy1 - 1)
    n_rows = torch.where(ok, (ymax - ymin + 1).clamp(min=0), torch.zeros_like(ymin)).long().reshape(-1)
    face = torch.repeat_interleave(torch.arange(bsz * nf, device=dev), n_rows)  # flat (frame * F + face)
    if face.numel() == 0:
        return _empty(bsz, height, width, dev)
    first = torch.cumsum(n_rows, 0) - n_rows
    y = ymin.reshape(-1)[face] + (torch.arange(face.numel(), device=dev) - first[face]).float()
    k = consts.index_select(0, face)  # (R, 10)
    # 2. the row's span inside the triangle: intersections with the non-horizontal edges
    corners = torch.stack([a, b, c], 2).reshape(-1, 3, 2).index_select(0, face)  # (R, 3, 2)
    p, q = corners, corners[:, [1, 2, 0]]
    dy = q[..., 1] - p[..., 1]
    t = (y[:, None] - p[..., 1]) / torch.where(dy == 0, torch.ones_like(dy), dy)
    hit = (dy != 0) & (t >= 0) & (t <= 1)
    xs = p[..., 0] + t * (q[..., 0] - p[..., 0])
    eps = 1e-4
    x_lo = torch.where(hit, xs, torch.full_like(xs, float("inf"))).amin(1).sub(eps).ceil().clamp(min=wx0)
    x_hi = torch.where(hit, xs, torch.full_like(xs, float("-inf"))).amax(1).add(eps).floor().clamp(max=wx1 - 1)
    n_px = (x_hi - x_lo + 1).clamp(min=0).long()
    # 3. pixels of each row span: depth from the plane, one scatter of (depth, face) keys.
    # Per-row quantities are gathered once per pixel as two tables (float and int).
    row = torch.repeat_interleave(torch.arange(face.numel(), device=dev), n_px)
    if row.numel() == 0:
        return _empty(bsz, height, width, dev)
    start = (torch.cumsum(n_px, 0) - n_px).float()
    frame = torch.div(face, nf, rounding_mode="floor")
    wh, ww = wy1 - wy0, wx1 - wx0
    base = (frame * wh + (y.long() - wy0)) * ww + (x_lo.long() - wx0) - start.long()  # pixel index - pixel ordinal
    z_row = k[:, 9] + k[:, 8] * (y - k[:, 1]) - k[:, 7] * k[:, 0]  # depth plane: z = z_row + gx * x
    rows_f = torch.stack([x_lo - start, z_row, k[:, 7]], 1).index_select(0, row)  # (M, 3)
    rows_i = torch.stack([base, face], 1).index_select(0, row)  # (M, 2)
    ordinal = torch.arange(row.numel(), device=dev)
    z = rows_f[:, 1] + rows_f[:, 2] * (ordinal.float() + rows_f[:, 0])
    zbuf.scatter_reduce_(0, ordinal + rows_i[:, 0], (_sortable(z) << 32) | rows_i[:, 1], reduce="amin")
    return _fragments(zbuf, consts, nf, (bsz, height, width), win)


def _empty(bsz, height, width, dev) -> Fragments:
    none = torch.zeros(0, dtype=torch.int64, device=dev)
    return Fragments(none, none, none, none, torch.zeros((0, 3), device=dev), (bsz, height, width))


def _fragments(zbuf, consts, nf, shape, win) -> Fragments:
    """Decode the winning face of each pixel and its barycentric weights at the pixel centre."""
    wy0, wy1, wx0, wx1 = win
    frame, row, col = torch.nonzero(zbuf.view(shape[0], wy1 - wy0, wx1 - wx0) != _EMPTY, as_tuple=True)
    face = zbuf.view(shape[0], wy1 - wy0, wx1 - wx0)[frame, row, col] & 0xFFFFFFFF  # flat (frame * F + face)
    row, col = row + wy0, col + wx0
    k = consts.index_select(0, face)
    dx, dy = col.float() - k[:, 0], row.float() - k[:, 1]
    l1 = (dx * k[:, 5] - dy * k[:, 4]) * k[:, 6]
    l2 = (k[:, 2] * dy - k[:, 3] * dx) * k[:, 6]
    bary = torch.stack([1.0 - l1 - l2, l1, l2], 1)
    return Fragments(frame, row, col, face - frame * nf, bary, shape)


def _sortable(z: torch.Tensor) -> torch.Tensor:
    """An int64 in [0, 2^31) whose order is the order of the float32 values (the lowest mantissa
    bit is dropped so that the key shifted left by 32 stays a positive int64)."""
    bits = z.contiguous().view(torch.int32).to(torch.int64)
    return torch.where(bits < 0, -1 - bits, bits + 0x80000000) >> 1
