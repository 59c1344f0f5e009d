"""Fit the 3DMM to 2-D landmarks (HDTF §3, eq. 2): weighted least squares under a scaled
orthographic camera,

    min  sum_t sum_k w_k | p_tk - (s_t Pi R_t M_k(alpha, beta_t) + t_t) |^2
         + lambda_id |alpha|^2 + lambda_exp sum_t |beta_t|^2,      0 <= beta <= EXPRESSION_MAX

with one identity alpha per video and per-frame expression beta_t and pose (R_t, s_t, t_t).

Alternating optimisation, vectorised over frames:
- pose: affine camera by linear least squares, projected onto the nearest scaled rotation
  (SVD, orthogonal Procrustes), then Gauss-Newton steps on (rotation, log-scale, translation);
- coefficients: the residual is linear in (alpha, beta) once the pose is fixed. Residuals are
  measured in model units (pixels / s), so the regularisation weights do not depend on the
  image size. The normal matrices are assembled from 3x3 blocks precomputed once
  (sum_k w_k A_k[a]^T A_k[b]), which makes a frame cost O(93^2) instead of O(K 93^2).
  beta is box-constrained: the components are one-sided and left/right pairs are mirror
  images, so without the box they would not be identifiable. The box QP is solved per frame
  by projected Newton iterations (vectorised over frames, warm-started).
Identity is estimated first on up to `identity_frames` evenly spaced frames (jointly with their
pose and expression); then every frame's pose and expression are fitted chunk by chunk with the
identity fixed, so memory does not grow with the video's length.

Departures from the paper: the paper does not give its weights or regulariser; ours are
documented in docs/nodes/fit3dmm.md. By default the landmarks' depth is not used (eq. 2 is
2-D); `depth_weight > 0` adds MediaPipe's relative z as a third, down-weighted coordinate (its
offset is a free per-frame translation), which makes depth-only components such as
jaw_forward observable.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from .camera import euler_angles
from .model import EXPRESSION_MAX, MorphableModel


@dataclasses.dataclass
class FitSettings:
    lambda_shape: float = 0.02  # mm^2 per unit^2 of identity coefficient
    lambda_expression: float = 0.005  # mm^2 per unit^2 of expression coefficient
    lip_weight: float = 3.0
    contour_weight: float = 2.0
    eye_brow_weight: float = 1.5
    iterations: int = 6  # joint pose + expression Gauss-Newton steps (identity: alternated with them)
    identity_frames: int = 64
    chunk: int = 256
    expression_max: float = EXPRESSION_MAX
    fit_shape: bool = True
    depth_weight: float = 0.0  # > 0 also fits the landmarks' relative depth (MediaPipe z) with this weight


@dataclasses.dataclass
class FitResult:
    shape: np.ndarray  # (S,)
    expression: np.ndarray  # (T, E)
    pose: np.ndarray  # (T, 6): pitch, yaw, roll, tx, ty, log-scale
    error: np.ndarray  # (T,) mean reprojection error in pixels over the fitted landmarks


def landmark_weights(model: MorphableModel, settings: FitSettings) -> np.ndarray:
    """delta_k of eq. 2: heavier on the lips (what audio drives) and on the face contour (what
    pins the face's outline and the jaw), a little heavier on eyes and brows."""
    w = np.ones(len(model.landmark_ids))
    for region, weight in (("eyes", settings.eye_brow_weight), ("brows", settings.eye_brow_weight),
                           ("face_edge", settings.contour_weight), ("lips", settings.lip_weight)):
        mask = model.regions.get(region)
        if mask is None:
            continue
        hit = mask[model.landmark_vertices].any(1)
        w[hit] = weight
    return w


class Fitter:
    """Eq. 2 for one model and settings; `fit(points)` handles any number of frames."""

    def __init__(self, model: MorphableModel, settings: FitSettings | None = None):
        self.model = model
        self.s = settings or FitSettings()
        bary = model.landmark_bary.astype(np.float64)
        lv = model.landmark_vertices

        def at_landmarks(a):  # (V, 3, ...) -> (K, 3, ...)
            return np.einsum("kj,kjd...->kd...", bary, a[lv].astype(np.float64))

        self.mean = at_landmarks(model.mean)  # (K, 3)
        self.n_shape = model.shape_basis.shape[-1]
        self.n_exp = model.expression_basis.shape[-1]
        self.basis = np.concatenate([at_landmarks(model.shape_basis), at_landmarks(model.expression_basis)], -1)  # (K, 3, C)
        self.w = landmark_weights(model, self.s)
        self.w_norm = self.w / self.w.sum()
        wb = self.w_norm[:, None, None] * self.basis
        # G[a, b] = sum_k w_k A_k[a]^T A_k[b]: the normal matrix of any frame is a 3x3 mix of these
        self.gram = np.einsum("kac,kbd->abcd", wb, self.basis)  # (3, 3, C, C)
        self.wbasis_flat = wb.reshape(-1, wb.shape[-1])  # (K*3, C)
        self.basis_exp_flat = self.basis[..., self.n_shape:].reshape(len(self.w), -1)  # (K, 3*E)

    # --- public -------------------------------------------------------------------------

    def fit(self, points: np.ndarray, shape: np.ndarray | None = None,
            progress: Callable[[int, int], None] | None = None) -> FitResult:
        """points: (T, N, 2|3) landmarks in pixels (N covers the model's landmark ids, e.g. the
        478 MediaPipe points). `shape` fixes the identity instead of estimating it."""
        dims = 3 if (self.s.depth_weight > 0 and points.shape[-1] >= 3) else 2
        p = np.asarray(points, dtype=np.float64)[:, self.model.landmark_ids, :dims]
        n_frames = len(p)
        if shape is None and self.s.fit_shape:
            pick = np.unique(np.linspace(0, n_frames - 1, min(n_frames, self.s.identity_frames)).round().astype(int))
            shape = self._fit_identity(p[pick])
        elif shape is None:
            shape = np.zeros(self.n_shape)
        shape = np.asarray(shape, dtype=np.float64)
        expression = np.zeros((n_frames, self.n_exp))
        pose = np.zeros((n_frames, 6))
        error = np.zeros(n_frames)
        for start in range(0, n_frames, self.s.chunk):
            sl = slice(start, min(start + self.s.chunk, n_frames))
            expression[sl], pose[sl], error[sl] = self._fit_frames(p[sl], shape)
            if progress is not None:
                progress(sl.stop, n_frames)
        return FitResult(shape.astype(np.float32), expression.astype(np.float32), pose.astype(np.float32), error.astype(np.float32))

    # --- stages -------------------------------------------------------------------------

    def _fit_identity(self, p: np.ndarray) -> np.ndarray:
        s = self.n_shape
        alpha = np.zeros(s)
        beta = np.zeros((len(p), self.n_exp))
        pose = self._init_pose(p, self._shapes(alpha, beta))
        for _ in range(self.s.iterations):
            pose, beta = self._joint_step(p, alpha, pose, beta)
            # identity for fixed poses and expressions (one linear solve over all frames)
            h, g = self._normal_equations(p, *pose)
            lhs = h[:, :s, :s].sum(0) + self.s.lambda_shape * np.eye(s)
            rhs = (g[:, :s] - np.einsum("tij,tj->ti", h[:, :s, s:], beta)).sum(0)
            alpha = np.linalg.solve(lhs, rhs)
        return alpha

    def _fit_frames(self, p: np.ndarray, alpha: np.ndarray):
        beta = np.zeros((len(p), self.n_exp))
        pose = self._init_pose(p, self._shapes(alpha, beta))
        for _ in range(self.s.iterations):
            pose, beta = self._joint_step(p, alpha, pose, beta)
        rot, logs, trans = pose
        x = self._shapes(alpha, beta)
        proj = np.exp(logs)[:, None, None] * (x @ rot[:, :2].transpose(0, 2, 1)) + trans[:, None, :2]
        error = np.linalg.norm(proj - p[..., :2], axis=-1).mean(1)
        return beta, np.concatenate([euler_angles(rot), trans[:, :2], logs[:, None]], 1), error

    def _joint_step(self, p, alpha, pose, beta):
        """One Gauss-Newton step on pose and expression together, identity fixed.

        Model units (residuals / s). Linearised, the problem is a least-squares problem in the
        pose increment d and the new expression b' (the model is linear in b); d is eliminated
        (Schur complement), b' solves the boxed QP that remains, then d follows. Solving jointly
        avoids the slow zig-zag of alternating pose and expression when they are coupled (jaw
        vs. pitch, mouth shift vs. yaw)."""
        rot, logs, trans = pose
        dims = p.shape[-1]
        dw = self._dim_weights(dims)
        n = len(p)
        scale = np.exp(logs)
        x = self._shapes(alpha, beta)
        y = x @ rot.transpose(0, 2, 1)  # (T, K, 3)
        r = (p - (scale[:, None, None] * y[..., :dims] + trans[:, None])) / scale[:, None, None]
        z = np.concatenate([y, np.broadcast_to(1.0 / scale[:, None, None], y[..., :1].shape)], -1)  # (T, K, 4)
        wz = self.w_norm[None, :, None] * z
        lift = _POSE_JACOBIAN[dims]  # (dims, P, 4)
        # pose block
        zz = wz.transpose(0, 2, 1) @ z  # (T, 4, 4)
        h_pp = np.einsum("d,dpa,tab,dqb->tpq", dw, lift, zz, lift)
        g_p = np.einsum("d,dpa,tad->tp", dw, lift, wz.transpose(0, 2, 1) @ r)
        # pose x expression block: sum_k w z_k (R A_k)[d]^T = sum_a R[d, a] N_a
        nz = (wz.transpose(0, 2, 1).reshape(n * 4, -1) @ self.basis_exp_flat).reshape(n, 4, 3, self.n_exp)
        m_d = np.einsum("tda,tcae->tdce", rot[:, :dims], nz)  # (T, dims, 4, E)
        h_pe = np.einsum("d,dpc,tdce->tpe", dw, lift, m_d)
        # expression block and gradient (shared with the identity solve)
        h_ee, g_e = self._normal_equations(p, rot, logs, trans, alpha=alpha)
        # the residual with the current expression moved into the unknown b' (the expression
        # gradient from _normal_equations is already measured from the expression-free shape)
        g_p = g_p + np.einsum("tpe,te->tp", h_pe, beta)
        damp = 1e-6 * np.trace(h_pp, axis1=1, axis2=2)[:, None, None] * np.eye(h_pp.shape[-1])
        h_pp_inv_pe = np.linalg.solve(h_pp + damp, h_pe)  # (T, P, E)
        h_pp_inv_gp = np.linalg.solve(h_pp + damp, g_p[..., None])[..., 0]
        h_red = h_ee - h_pe.transpose(0, 2, 1) @ h_pp_inv_pe
        g_red = g_e - np.einsum("tpe,tp->te", h_pe, h_pp_inv_gp)
        beta = self._box_qp(0.5 * (h_red + h_red.transpose(0, 2, 1)), g_red, beta)
        step = h_pp_inv_gp - np.einsum("tpe,te->tp", h_pp_inv_pe, beta)
        rot = _rodrigues(step[:, :3]) @ rot
        u, _, vt = np.linalg.svd(rot)  # keep R a rotation despite rounding
        return (u @ vt, logs + step[:, 3], trans + step[:, 4:]), beta

    def _shapes(self, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
        fixed = self.mean + self.basis[..., : self.n_shape] @ alpha  # (K, 3)
        return fixed[None] + (beta @ self.basis[..., self.n_shape:].reshape(-1, self.n_exp).T).reshape(len(beta), -1, 3)

    def _dim_weights(self, dims: int) -> np.ndarray:
        return np.array([1.0, 1.0, self.s.depth_weight][:dims])

    def _init_pose(self, p: np.ndarray, x: np.ndarray):
        """Weighted affine camera on x, y, projected onto the nearest scaled rotation (SVD)."""
        w = self.w_norm[None, :, None]
        pm, xm = (w * p).sum(1), (w * x).sum(1)
        pc, xc = p[..., :2] - pm[:, None, :2], x - xm[:, None]
        a = (w * pc).transpose(0, 2, 1) @ xc  # (T, 2, 3)
        b = (w * xc).transpose(0, 2, 1) @ xc  # (T, 3, 3)
        m = np.linalg.solve(b, a.transpose(0, 2, 1)).transpose(0, 2, 1)
        u, sv, vt = np.linalg.svd(m, full_matrices=False)
        r2 = u @ vt  # orthonormal rows
        rot = np.concatenate([r2, np.cross(r2[:, 0], r2[:, 1])[:, None]], 1)
        logs = np.log(sv.mean(1))
        trans = pm - np.exp(logs)[:, None] * np.einsum("tij,tj->ti", rot[:, : p.shape[-1]], xm)
        return rot, logs, trans

    def _normal_equations(self, p, rot, logs, trans, alpha: np.ndarray | None = None):
        """Normal equations of the coefficient problem for fixed poses, in model units.

        Without `alpha`: H_t (T, C, C) and g_t (T, C) over identity and expression. With it
        (identity fixed): the expression block H_ee (T, E, E) and g_e - H_ea alpha (T, E)."""
        dims = p.shape[-1]
        dw = self._dim_weights(dims)
        q = (p - trans[:, None]) / np.exp(logs)[:, None, None]
        r = q - self.mean @ rot[:, :dims].transpose(0, 2, 1)  # (T, K, dims)
        back = ((r * dw) @ rot[:, :dims]).reshape(len(p), -1)  # P^T D r in the model frame
        # P^T D P = R^T diag(1, 1, depth_weight) R = I - (1 - dw_z) r3 r3^T
        r3 = rot[:, 2]
        keep = 1.0 - (dw[2] if dims == 3 else 0.0)
        ptp = (np.eye(3)[None] - keep * r3[:, :, None] * r3[:, None, :]).reshape(len(p), 9)
        if alpha is None:
            c = self.gram.shape[-1]
            return (ptp @ self.gram.reshape(9, c * c)).reshape(len(p), c, c), back @ self.wbasis_flat
        s, e = self.n_shape, self.n_exp
        h = (ptp @ self.gram[..., s:, s:].reshape(9, e * e)).reshape(len(p), e, e)
        coupling = ptp @ (self.gram[..., s:, :s] @ alpha).reshape(9, e)
        return h, back @ self.wbasis_flat[:, s:] - coupling

    def _box_qp(self, h, g, x0, iterations: int = 15):
        """min 1/2 x^T (H + lambda I) x - g^T x over 0 <= x <= max, per frame: projected Newton
        (Bertsekas) — Newton steps on the free variables, projected backtracking search; frames
        drop out as soon as they stop improving."""
        hi = self.s.expression_max
        n = h.shape[-1]
        h = h + self.s.lambda_expression * np.eye(n)[None]
        x = np.clip(x0, 0.0, hi)
        live = np.arange(len(x))
        eye = np.eye(n)[None]

        def objective(hh, gg, z):
            return 0.5 * np.einsum("ti,ti->t", z, (hh @ z[..., None])[..., 0]) - np.einsum("ti,ti->t", gg, z)

        f = objective(h, g, x)
        for _ in range(iterations):
            hl, gl, xl, fl = h[live], g[live], x[live], f[live]
            grad = (hl @ xl[..., None])[..., 0] - gl
            # epsilon-active set: variables this close to a bound and pushed against it are
            # held, which avoids jamming on tiny clipped steps
            eps = np.minimum(1e-3, np.abs(xl - np.clip(xl - grad, 0.0, hi)).sum(1, keepdims=True))
            bound = ((xl <= eps) & (grad > 0)) | ((xl >= hi - eps) & (grad < 0))
            free = ~bound
            hf = np.where(free[:, :, None] & free[:, None, :], hl, eye)
            step = np.linalg.solve(hf, np.where(free, -grad, 0.0)[..., None])[..., 0]
            done = np.zeros(len(live), bool)
            for alpha in (1.0, 0.5, 0.25, 0.1, 0.03, 0.01):
                todo = ~done
                cand = np.clip(xl[todo] + alpha * step[todo], 0.0, hi)
                fc = objective(hl[todo], gl[todo], cand)
                ok = fc < fl[todo] - 1e-12 * (1.0 + np.abs(fl[todo]))
                idx = np.flatnonzero(todo)[ok]
                xl[idx], fl[idx] = cand[ok], fc[ok]
                done[idx] = True
                if done.all():
                    break
            x[live], f[live] = xl, fl
            live = live[done]
            if live.size == 0:
                break
        return x


# Pose Jacobian rows as linear maps of z = (sX, sY, sZ, 1) for the parameters
# (wx, wy, wz, log s, t_0..t_{dims-1}), per image coordinate (x, y[, depth]).
def _pose_jacobian(dims: int) -> np.ndarray:
    lift = np.zeros((dims, 4 + dims, 4))
    # x row: (0, sZ, -sY, sX, 1, 0[, 0]); y row: (-sZ, 0, sX, sY, 0, 1[, 0]); z row: (sY, -sX, 0, sZ, 0, 0, 1)
    lift[0, 1, 2], lift[0, 2, 1], lift[0, 3, 0], lift[0, 4, 3] = 1, -1, 1, 1
    lift[1, 0, 2], lift[1, 2, 0], lift[1, 3, 1], lift[1, 5, 3] = -1, 1, 1, 1
    if dims == 3:
        lift[2, 0, 1], lift[2, 1, 0], lift[2, 3, 2], lift[2, 6, 3] = 1, -1, 1, 1
    return lift


_POSE_JACOBIAN = {2: _pose_jacobian(2), 3: _pose_jacobian(3)}


def _rodrigues(w: np.ndarray) -> np.ndarray:
    """Rotation matrices exp([w]x) for rows of w (T, 3)."""
    theta = np.linalg.norm(w, axis=1)[:, None, None]
    k = np.zeros((len(w), 3, 3))
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -w[:, 2], w[:, 1], -w[:, 0]
    k = k - k.transpose(0, 2, 1)
    small = theta < 1e-12
    a = np.where(small, 1.0, np.sin(theta) / np.where(small, 1.0, theta))
    b = np.where(small, 0.5, (1 - np.cos(theta)) / np.where(small, 1.0, theta) ** 2)
    return np.eye(3)[None] + a * k + b * (k @ k)


def fit_coefficients(model: MorphableModel, landmarks: np.ndarray, settings: FitSettings | None = None,
                     shape: np.ndarray | None = None, progress: Callable[[int, int], None] | None = None) -> FitResult:
    """Fit eq. 2 to landmarks (T, N, 2|3). BLAS runs single-threaded meanwhile: the work is many
    small batched solves, for which OpenBLAS threads only add synchronisation (measured ~100x
    slower batched 33x33 solves with 2 threads here)."""
    fitter = Fitter(model, settings)
    with _single_thread_blas():
        return fitter.fit(landmarks, shape, progress)


def _single_thread_blas():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with the nodes extra
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")
