"""MetaTalk's neural face renderer (§2.4, eq. 2-4): the lower half of the synthetic face ->
the lower half of the real face, at the crop's resolution (§2.1: 512, 768 or 1024).

Masking (AudioDVP's strategy, §2.4): the 3DMM is rendered with the target's appearance and
drawn over the real target frame, so inside the face the network sees only the render (the
real mouth is covered) and around it the real frame; the generator translates the lower half
of the crop (rows size/2 .. size: a (size/2) × size band) and its output is blended back into
the crop: only where the face was rendered (grown and feathered, as AudioDVP blends its mask
region; `region: band` replaces the whole band below a feathered top edge).

Generator G: a U-Net (a stack of stride-2 convolutions encoding the synthetic lower face, a
stack of transposed convolutions decoding it, skip connections), pix2pix's layout since the
paper gives no widths: 4×4 convolutions, widths ngf·min(2^i, 8), instance norm, LeakyReLU(0.2)
down / ReLU up, dropout 0.5 in the three innermost up levels, tanh output. "We adapt the
resolution of the target face by modifying the input size of the U-net": the depth is the
number of halvings the band allows, up to `max_levels` (8 at 512 and 1024, 7 at 768 whose band
is 384 = 3·2^7 rows), so the generator's weights depend on the crop size it was built for.

Discriminator D: a PatchGAN (Isola et al. [15]) over the lower half, unconditional as eq. 3.
Loss (eq. 4): L1 (eq. 2) + λ · the GAN loss of eq. 3 (non-saturating form for G).

Departures: instance instead of batch norm (CPU batches of 1-4); the paper's λ is not given
(`lambda_adv`, default 0.01 against the L1 on [-1, 1] images).

Option `residual` (preset `tiny_residual`; not the paper): G's output is added to its input and
its last layer starts at zero, so G starts as the identity (the render drawn over the crop) and
learns what differs (teeth, mouth interior, shading, the jaw's edge). The tiny U-Net trained from
scratch on a short target draws a blurred mouth that its lip-sync loses on (docs/metatalk.md).

Option `size: 256` (not a crop adaption size): the low-definition renderer of Table 3's ablation,
AudioDVP's 256 × 256 crops (workflows with `--set crop.sizes=[256]`); the "High definition" row
is the default, the crop-adapted size.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from trainers.discriminators import MultiScalePatchDiscriminator

CROP_SIZES = (512, 768, 1024)  # §2.1
LOW_DEFINITION = 256  # Table 3's ablation: AudioDVP's crop size
RENDER_SIZES = (LOW_DEFINITION, *CROP_SIZES)


class FaceRendererConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size: Literal[256, 512, 768, 1024] = Field(
        512, description="crop side (§2.1: 512/768/1024; 256: the low-definition ablation of Table 3); G translates its lower half")
    ngf: int = Field(64, ge=1, description="width of the first U-Net level")
    max_levels: int = Field(8, ge=2, le=10, description="most stride-2 levels (the band's size may allow fewer)")
    dropout: float = Field(0.5, ge=0, lt=1)
    ndf: int = Field(64, ge=1, description="PatchGAN width")
    d_layers: int = Field(3, ge=1, le=6, description="PatchGAN strided layers (3: the 70×70 PatchGAN)")
    residual: bool = Field(False, description="G's output is a correction added to its input, zero at the start (not the paper; "
                                              "preset tiny_residual)")


def band_shape(size: int) -> tuple[int, int]:
    """(rows, cols) of the lower half G translates."""
    return size // 2, size


def unet_levels(cfg: FaceRendererConfig) -> int:
    """Halvings the band allows (both sides stay whole), at most max_levels."""
    rows = band_shape(cfg.size)[0]
    n = 0
    while n < cfg.max_levels and rows % 2 == 0 and rows > 1:
        rows //= 2
        n += 1
    return n


class _Down(nn.Module):
    def __init__(self, c_in: int, c_out: int, norm: bool) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(c_in, c_out, 4, 2, 1),
                                   nn.InstanceNorm2d(c_out, affine=True) if norm else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class _Up(nn.Module):
    def __init__(self, c_in: int, c_out: int, dropout: float) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), nn.InstanceNorm2d(c_out, affine=True),
                                   nn.Dropout(dropout) if dropout else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class NeuralFaceRendererNet(nn.Module):
    """G: forward(synthetic lower half (B, 3, size/2, size) in [-1, 1]) -> real-looking lower half."""

    def __init__(self, cfg: FaceRendererConfig) -> None:
        super().__init__()
        self.cfg = cfg
        n = self.levels = unet_levels(cfg)
        widths = [cfg.ngf * min(2**i, 8) for i in range(n)]
        self.first = nn.Conv2d(3, widths[0], 4, 2, 1)
        # the innermost level has no norm (its maps may be 1 pixel high)
        self.down = nn.ModuleList(_Down(widths[i - 1], widths[i], norm=i < n - 1) for i in range(1, n))
        self.up = nn.ModuleList(
            _Up(widths[-1] if k == 0 else 2 * widths[n - 1 - k], widths[n - 2 - k], cfg.dropout if k < 3 else 0.0)
            for k in range(n - 1))
        self.last = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(2 * widths[0], 3, 4, 2, 1), nn.Tanh())
        if cfg.residual:  # start as the identity: the render drawn over the crop
            nn.init.zeros_(self.last[1].weight)
            nn.init.zeros_(self.last[1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.first(x)]
        for layer in self.down:
            skips.append(layer(skips[-1]))
        h = skips.pop()
        for layer in self.up:
            h = torch.cat([layer(h), skips.pop()], 1)
        return (x + self.last(h)).clamp(-1, 1) if self.cfg.residual else self.last(h)


def build_discriminator(cfg: FaceRendererConfig) -> nn.Module:
    """D of eq. 3: one PatchGAN over the lower half (trainers/discriminators.py)."""
    return MultiScalePatchDiscriminator(3, 0, cfg.ndf, cfg.d_layers, num_scales=1)


def band_blend_mask(size: int, feather: int) -> torch.Tensor:
    """(size/2, size) weight of G's output when sewn back: 1 below a linear ramp of `feather`
    rows at the band's top edge, so the seam with the real upper half does not show."""
    rows, cols = band_shape(size)
    ramp = torch.clamp(torch.arange(rows, dtype=torch.float32) / max(feather, 1), 0, 1)
    return ramp[:, None].expand(rows, cols).contiguous()


def face_blend_mask(face_mask, grow: int, feather: int):
    """(T, H, W) float32 weight of G's output in the crop for the `face` region: the rendered face
    grown by `grow` pixels (dilation), its edge faded over `feather` pixels (box blur)."""
    import cv2
    import numpy as np

    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)) if grow else None
    out = np.empty(face_mask.shape, np.float32)
    for t, m in enumerate(np.asarray(face_mask, np.float32)):
        m = cv2.dilate(m, kernel) if kernel is not None else m
        out[t] = cv2.blur(m, (2 * feather + 1, 2 * feather + 1)) if feather else m
    return np.clip(out, 0, 1)


# --- the renderer's input and output (used by the node and the trainer) ---

def compose(rendered: np.ndarray, face_mask: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """AudioDVP's masking (§2.4): the rendered face where it was drawn, the real frame elsewhere."""
    return np.where(face_mask[..., None] > 0.5, rendered, frames)


def lower_half(images: np.ndarray) -> np.ndarray:
    """(T, S, S, 3) -> the band G translates, (T, S/2, S, 3)."""
    return images[:, images.shape[1] - images.shape[1] // 2:]


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).movedim(-1, 1).float().div(127.5).sub(1.0)


def from_tensor(x: torch.Tensor) -> np.ndarray:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).movedim(1, -1).cpu().numpy()
