"""Audio2Head / FOMM loss pieces not already in trainers/losses.py.

- `pose_ssim_loss`: eq. 3, SSIM of the 6 x T pose "image";
- `RandomTPS` + `equivariance_losses`: FOMM §3.3's equivariance constraints (keypoints and
  Jacobians must follow a random thin-plate-spline warp of the image), used by the keypoint
  detector's training and by stage 2 of the motion field generator (eq. 7);
- `pyramid_loss`: a loss summed over an image pyramid (FOMM's multi-scale perceptual loss and
  Audio2Head's L_rec^mul of eq. 6), around trainers.losses.PerceptualLoss.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .blocks import coordinate_grid


def pose_ssim_loss(pred: torch.Tensor, target: torch.Tensor, window: int | None = 32, spread: float = 6.0,
                   c1: float = 1e-4, c2: float = 9e-4) -> torch.Tensor:
    """Eq. 3: 1 - SSIM of the pose sequences seen as (D x T) images.

    pred, target: (B, T, D) standardised poses, mapped to [0, 1] images as 0.5 + x / spread (so
    +-3 standard deviations fill the range the usual C1, C2 assume). The statistics (means,
    variances, covariance) are taken over all D rows and `window` consecutive frames, averaged
    over the window positions (window None or >= T: the whole image, eq. 3 literally)."""
    x, y = 0.5 + pred / spread, 0.5 + target / spread
    t = x.shape[1]
    w = t if window is None or window >= t else window
    x, y = x.transpose(1, 2).unsqueeze(1), y.transpose(1, 2).unsqueeze(1)  # (B, 1, D, T)
    pool = lambda v: F.avg_pool2d(v, (v.shape[2], w), stride=1)  # noqa: E731 (box window over D rows x w frames)
    mx, my = pool(x), pool(y)
    vx, vy, cov = pool(x * x) - mx**2, pool(y * y) - my**2, pool(x * y) - mx * my
    ssim = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return 1.0 - ssim.mean()


class RandomTPS:
    """A random affine + thin-plate-spline warp of [-1, 1] coordinates (FOMM §3.3, eq. 12-13):
    x' = A x + b + sum_k w_k phi(|x - c_k|_1), phi(r) = r^2 log r, control points on a grid."""

    def __init__(self, batch: int, sigma_affine: float = 0.05, sigma_tps: float = 0.005, points: int = 5,
                 generator: torch.Generator | None = None, device=None) -> None:
        noise = torch.randn(batch, 2, 3, generator=generator) * sigma_affine
        self.theta = (noise + torch.eye(2, 3)).to(device)
        self.control = coordinate_grid(points, points).view(-1, 2).to(device)
        self.weights = (torch.randn(batch, points * points, generator=generator) * sigma_tps).to(device)

    def warp(self, xy: torch.Tensor) -> torch.Tensor:
        """(B, N, 2) coordinates -> warped (B, N, 2)."""
        theta = self.theta.to(xy.dtype)
        out = torch.einsum("bij,bnj->bni", theta[:, :, :2], xy) + theta[:, None, :, 2]
        d = xy[:, :, None, :] - self.control.to(xy.dtype)[None, None]  # (B, N, P, 2)
        r = d.abs().sum(-1)
        phi = r**2 * torch.log(r + 1e-6)
        return out + (phi * self.weights.to(xy.dtype)[:, None, :]).sum(-1, keepdim=True)

    def jacobian(self, xy: torch.Tensor) -> torch.Tensor:
        """d warp / d xy at (B, N, 2) -> (B, N, 2, 2), analytically."""
        theta = self.theta.to(xy.dtype)
        jac = theta[:, None, :, :2].expand(xy.shape[0], xy.shape[1], 2, 2).clone()
        d = xy[:, :, None, :] - self.control.to(xy.dtype)[None, None]
        r = d.abs().sum(-1)
        dphi_dr = 2 * r * torch.log(r + 1e-6) + r**2 / (r + 1e-6)
        g = (dphi_dr * self.weights.to(xy.dtype)[:, None, :]).unsqueeze(-1) * torch.sign(d)  # (B, N, P, 2)
        return jac + g.sum(2).unsqueeze(-2)  # the TPS term adds the same row to both outputs

    def warp_image(self, image: torch.Tensor) -> torch.Tensor:
        """The image seen through the warp: out(z) = image(warp(z))."""
        b, _, h, w = image.shape
        grid = coordinate_grid(h, w, device=image.device, dtype=image.dtype).view(1, -1, 2).expand(b, -1, -1)
        return F.grid_sample(image, self.warp(grid).view(b, h, w, 2), padding_mode="reflection", align_corners=True)


def equivariance_losses(kp: dict, kp_of_warped: dict, tps: RandomTPS) -> tuple[torch.Tensor, torch.Tensor]:
    """FOMM's equivariance terms: the keypoints of an image must be the warp of the keypoints of
    its warped copy, and their Jacobians must compose to the identity:
        L_eq^P = |p - T(p_w)|_1,   L_eq^J = |I - J^-1 (dT(p_w) J_w)|_1
    kp: {"value" (B, K, 2), "jacobian" (B, K, 2, 2)} of the image (detected or predicted);
    kp_of_warped: the detector's keypoints of `tps.warp_image(image)`."""
    value = (kp["value"] - tps.warp(kp_of_warped["value"])).abs().mean()
    composed = tps.jacobian(kp_of_warped["value"]) @ kp_of_warped["jacobian"]
    eye = torch.eye(2, device=composed.device, dtype=composed.dtype)
    jac = (eye - torch.inverse(kp["jacobian"]) @ composed).abs().mean()
    return value, jac


def pyramid(image: torch.Tensor, scales: int) -> list[torch.Tensor]:
    out = [image]
    for _ in range(scales - 1):
        out.append(F.avg_pool2d(out[-1], 2))
    return out


def pyramid_loss(loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], pred: torch.Tensor, target: torch.Tensor,
                 scales: int = 4) -> torch.Tensor:
    """Sum of `loss` over the image pyramid (scales 1, 1/2, 1/4, ...): FOMM's multi-scale
    perceptual loss, Audio2Head's L_rec^mul (eq. 6)."""
    return sum(loss(p, t) for p, t in zip(pyramid(pred, scales), pyramid(target, scales)))
