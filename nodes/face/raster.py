"""A vectorised z-buffer triangle rasteriser in torch (CPU or GPU), batched over frames.

Scanline rasterisation without a loop: every (triangle, pixel row) pair a triangle spans is
enumerated at once, the row's span inside the triangle comes from intersecting the row with
the triangle's edges, and the pixels of all spans are enumerated at once — so the work is
proportional to the covered area, with no per-pixel inside test. Pixel (i, j) is the point
x = j, y = i (nodes/types.py); a pixel is covered when its centre is inside (edges included).
Depth (a plane per triangle, shifted to be positive so that its float32 bits order like
integers) and triangle id are packed into one int64 key, so a single `scatter_reduce(amin)`
resolves visibility, ties included. Back faces (negative signed area, see
topology.signed_area) are culled. Per-vertex attributes are interpolated through the affine
map each triangle defines (barycentric interpolation written as a*x + b*y + c per triangle),
so covered pixels need one small gather each; barycentric weights are available on demand.
"""
from __future__ import annotations

import contextlib
import dataclasses
import threading

import torch

_EMPTY = torch.iinfo(torch.int64).max
_THREADS_LOCK = threading.Lock()
_threads_held = 0
_threads_saved = 1


@contextlib.contextmanager
def single_threaded():
    """Run torch CPU ops on one intra-op thread meanwhile (restored afterwards, also when used
    from several threads at once). The rasteriser's ops touch 10^4-10^5 elements each: split
    over OpenMP threads they gain little on an idle machine, and on a busy one every op waits
    for a descheduled thread at its barrier (measured here: a 65k-element multiply took 37 us
    on one thread and 2.9 ms on two with the machine's 2 cores shared by other jobs)."""
    global _threads_held, _threads_saved
    with _THREADS_LOCK:
        if _threads_held == 0:
            _threads_saved = torch.get_num_threads()
            torch.set_num_threads(1)
        _threads_held += 1
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _threads_held -= 1
            if _threads_held == 0:
                torch.set_num_threads(_threads_saved)


@dataclasses.dataclass
class Fragments:
    """The covered pixels of a rasterised batch (sparse): for each, its frame, row and column
    and the visible triangle."""

    frame: torch.Tensor  # int64 (M,)
    row: torch.Tensor  # int64 (M,)
    col: torch.Tensor  # int64 (M,)
    triangle: torch.Tensor  # int64 (M,) index into the triangle list
    shape: tuple[int, int, int]  # (B, H, W)
    planes: torch.Tensor  # float32 (B*F, 7): a, b - a, c - a and 1 / (2 * area) per (frame, triangle)

    @property
    def face(self) -> torch.Tensor:
        """Flat (frame * F + triangle) id of each covered pixel."""
        return self.frame * (self.planes.shape[0] // self.shape[0]) + self.triangle

    @property
    def bary(self) -> torch.Tensor:
        """float32 (M, 3): barycentric weights of the triangle's vertices at each pixel centre."""
        k = self.planes.index_select(0, self.face)
        dx, dy = self.col.float() - k[:, 0], self.row.float() - k[:, 1]
        l1 = (dx * k[:, 5] - dy * k[:, 4]) * k[:, 6]
        l2 = (k[:, 2] * dy - k[:, 3] * dx) * k[:, 6]
        return torch.stack([1.0 - l1 - l2, l1, l2], 1)

    @property
    def covered(self) -> torch.Tensor:
        """bool (B, H, W)."""
        out = torch.zeros(self.shape, dtype=torch.bool, device=self.frame.device)
        out.view(-1)[self.flat_index()] = True
        return out

    def triangle_map(self) -> torch.Tensor:
        """int64 (B, H, W): the visible triangle per pixel, -1 where uncovered."""
        out = torch.full(self.shape, -1, dtype=torch.int64, device=self.frame.device)
        out.view(-1)[self.flat_index()] = self.triangle
        return out

    def flat_index(self) -> torch.Tensor:
        """Index of each covered pixel in a flattened (B, H, W) array."""
        _, h, w = self.shape
        return (self.frame * h + self.row) * w + self.col

    def interpolate(self, triangles: torch.Tensor, attributes: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Barycentric interpolation of per-vertex attributes (B, N, C) at the covered pixels,
        written into `out` (B, H, W, C) (zeros when not given; other pixels are left alone)."""
        bsz, nf, ch = attributes.shape[0], triangles.shape[0], attributes.shape[-1]
        if out is None:
            out = torch.zeros((*self.shape, ch), dtype=attributes.dtype, device=attributes.device)
        # per (frame, triangle): value = va + (vb - va) l1 + (vc - va) l2 with l1, l2 affine in
        # (x, y), i.e. value = gx * x + gy * y + g0
        va, vb, vc = (attributes[:, triangles[:, i]].reshape(bsz * nf, ch) for i in range(3))
        k = self.planes
        ax, ay, abx, aby, acx, acy, inv = (k[:, i:i + 1] for i in range(7))
        db, dc = (vb - va) * inv, (vc - va) * inv
        gx = db * acy - dc * aby
        gy = dc * abx - db * acx
        g0 = va - gx * ax - gy * ay
        coef = torch.cat([gx, gy, g0], 1).index_select(0, self.face)  # (M, 3C)
        x, y = self.col.to(coef.dtype)[:, None], self.row.to(coef.dtype)[:, None]
        res = coef[:, :ch] * x + coef[:, ch:2 * ch] * y + coef[:, 2 * ch:]
        out.view(-1, ch).index_copy_(0, self.flat_index(), res.to(out.dtype))
        return out


def rasterize(points: torch.Tensor, depth: torch.Tensor, triangles: torch.Tensor, height: int, width: int,
              cull_back: bool = True) -> Fragments:
    """points (B, N, 2) pixels, depth (B, N) (smaller = nearer), triangles (F, 3) int64."""
    bsz, nf = points.shape[0], triangles.shape[0]
    dev = points.device
    points = points.float()
    # depth shifted to be positive, so that its float bits order like integers (see step 3)
    depth = depth.float()
    depth = depth - depth.amin(1, keepdim=True) + 1.0
    a, b, c = points[:, triangles[:, 0]], points[:, triangles[:, 1]], points[:, triangles[:, 2]]  # (B, F, 2)
    ab, ac = b - a, c - a
    area = ab[..., 0] * ac[..., 1] - ab[..., 1] * ac[..., 0]
    ok = (area > 1e-9) if cull_back else (area.abs() > 1e-9)
    inv = torch.where(ok, 1.0 / torch.where(ok, area, torch.ones_like(area)), torch.zeros_like(area))
    planes = torch.stack([a[..., 0], a[..., 1], ab[..., 0], ab[..., 1], ac[..., 0], ac[..., 1], inv], -1).reshape(-1, 7)
    empty = Fragments(*(torch.zeros(0, dtype=torch.int64, device=dev),) * 4, (bsz, height, width), planes)
    # the z-buffer covers only the window all visible triangles of the batch fall in
    lo_xy = torch.minimum(torch.minimum(a, b), c)
    hi_xy = torch.maximum(torch.maximum(a, b), c)
    if not bool(ok.any()):
        return empty
    lo, hi = lo_xy[ok].amin(0), hi_xy[ok].amax(0)
    wx0, wy0 = max(0, int(torch.ceil(lo[0]))), max(0, int(torch.ceil(lo[1])))
    wx1, wy1 = min(width - 1, int(torch.floor(hi[0]))) + 1, min(height - 1, int(torch.floor(hi[1]))) + 1
    if wx1 <= wx0 or wy1 <= wy0:
        return empty
    wh, ww = wy1 - wy0, wx1 - wx0
    zbuf = torch.full((bsz * wh * ww,), _EMPTY, dtype=torch.int64, device=dev)
    za, zb, zc = depth[:, triangles[:, 0]], depth[:, triangles[:, 1]], depth[:, triangles[:, 2]]
    # depth as a plane over the image: z = za + gx (x - ax) + gy (y - ay)
    gx = ((zb - za) * ac[..., 1] - (zc - za) * ab[..., 1]) * inv
    gy = ((zc - za) * ab[..., 0] - (zb - za) * ac[..., 0]) * inv
    # per (frame, face) quantities the row stage needs, as one table: corners, depth plane
    table = torch.stack([a[..., 0], a[..., 1], b[..., 0], b[..., 1], c[..., 0], c[..., 1], za, gx, gy], -1).reshape(-1, 9)

    # 1. rows: every (face, pixel row) pair the face spans
    ymin = lo_xy[..., 1].ceil().clamp(min=wy0)
    ymax = hi_xy[..., 1].floor().clamp(max=wy1 - 1)
    n_rows = torch.where(ok, (ymax - ymin + 1).clamp(min=0), torch.zeros_like(ymin)).long().reshape(-1)
    face = torch.repeat_interleave(torch.arange(bsz * nf, device=dev), n_rows)  # flat (frame * F + face)
    if face.numel() == 0:
        return empty
    first = torch.cumsum(n_rows, 0) - n_rows
    y = ymin.reshape(-1)[face] + (torch.arange(face.numel(), device=dev) - first[face]).float()
    k = table.index_select(0, face)  # (R, 9)
    # 2. the row's span inside the triangle: intersections with the non-horizontal edges
    x_lo = torch.full_like(y, float("inf"))
    x_hi = torch.full_like(y, float("-inf"))
    for i, j in ((0, 1), (1, 2), (2, 0)):
        px, py, qx, qy = k[:, 2 * i], k[:, 2 * i + 1], k[:, 2 * j], k[:, 2 * j + 1]
        dy = qy - py
        t = (y - py) / torch.where(dy == 0, torch.ones_like(dy), dy)
        hit = (dy != 0) & (t >= 0) & (t <= 1)
        xs = px + t * (qx - px)
        x_lo = torch.where(hit, torch.minimum(x_lo, xs), x_lo)
        x_hi = torch.where(hit, torch.maximum(x_hi, xs), x_hi)
    eps = 1e-4
    x_lo = (x_lo - eps).ceil().clamp(min=wx0)
    x_hi = (x_hi + eps).floor().clamp(max=wx1 - 1)
    n_px = torch.where(x_hi >= x_lo, x_hi - x_lo + 1, torch.zeros_like(x_lo)).long()
    # 3. pixels of each row span: depth from the plane, one scatter of (depth, face) keys.
    # Per-row quantities are gathered once per pixel as two tables (float and int).
    row = torch.repeat_interleave(torch.arange(face.numel(), device=dev), n_px)
    if row.numel() == 0:
        return empty
    start = torch.cumsum(n_px, 0) - n_px
    frame = torch.div(face, nf, rounding_mode="floor")
    first_pix = (frame * wh + (y.long() - wy0)) * ww + (x_lo.long() - wx0)  # the span's first pixel
    z_row = k[:, 6] + k[:, 8] * (y - k[:, 1]) - k[:, 7] * k[:, 0]  # depth plane: z = z_row + gx * x
    rows_f = torch.stack([x_lo, z_row, k[:, 7]], 1).index_select(0, row)  # (M, 3)
    rows_i = torch.stack([first_pix, face, start], 1).index_select(0, row)  # (M, 3)
    offset = torch.arange(row.numel(), device=dev) - rows_i[:, 2]  # pixel's place in its span (exact)
    z = rows_f[:, 1] + rows_f[:, 2] * (rows_f[:, 0] + offset.float())
    # positive float32 bits compare like the values: key = depth bits (high half) | face id
    key = (z.clamp(min=1e-30).view(torch.int32).to(torch.int64) << 32) | rows_i[:, 1]
    zbuf.scatter_reduce_(0, rows_i[:, 0] + offset, key, reduce="amin")
    # 4. decode the winners
    frame, wrow, wcol = torch.nonzero(zbuf.view(bsz, wh, ww) != _EMPTY, as_tuple=True)
    won = zbuf.view(bsz, wh, ww)[frame, wrow, wcol] & 0xFFFFFFFF  # flat (frame * F + face)
    return Fragments(frame, wrow + wy0, wcol + wx0, won - frame * nf, (bsz, height, width), planes)
