"""Memory-augmented GAN that refines rendered frames (Yi et al. §3.4, Fig. 2, eq. 3-5).

Generator G: a U-Net over a window of three rendered frames (r_{t-2}, r_{t-1}, r_t) stacked
on channels, with AdaIN after every inner convolution whose scales and shifts come from an MLP
over the identity feature f_t. The last up-convolution feeds two parallel 7x7 heads: a colour
mask C_t (tanh) and an attention mask A_t (sigmoid), and

    o_t = A_t * r_t + (1 - A_t) * C_t                                                (eq. 3)

The layout follows the official unetac_adain_256: 8 stride-2 levels at 256 px, widths
ngf*(1, 2, 4, 8, 8, 8, 8, 8), dropout 0.5 in the three innermost up-convolutions, and an MLP
of three layers whose hidden width equals the number of AdaIN parameters — about 259M
parameters in the paper preset, 205M of them in the MLP.

Discriminator D: a conditional PatchGAN over [r_{t-2}, r_{t-1}, r_t, checked frame]
(trainers/discriminators.py, one scale).

Memory network M: keys are *spatial features* of the rendered frame r_t — a ResNet-18-style
encoder, global average pool ('pool5'), a learnable FC layer and L2 normalisation — and values
are the *identity features* of the matching ground-truth frames. Trained with the threshold
triplet loss of Yoo et al. (2019) and updated item by item (refresh the nearest key when its
value is the same identity, otherwise replace the oldest item); at test time the identity
feature is the value of the nearest key (cosine), smoothed over adjacent frames.

Loss (eq. 4): GAN + lambda1 |g - o|_1 + lambda2 |A|_2 + lambda3 sum_ij (grad A)^2 with
lambda1 = 100, lambda2 = 2, lambda3 = 1e-5 (§4.1).

Departures, and why:
- No ImageNet weights can be loaded here, so the ResNet-18-style key encoder is trained (with
  the FC layer) by the triplet loss instead of being frozen.
- AdaIN scales are 1 + (MLP output) rather than the raw output, so a freshly initialised
  MLP starts as plain instance normalisation; the same function class, steadier start.
- The attention term lambda2 |A|_2 is the mean of A^2 over pixels (the paper does not say how
  the norm is reduced; a per-pixel mean keeps lambda2 = 2 meaningful at every resolution); the
  smoothness term is the paper's sum of squared neighbour differences per image, batch-averaged.
- The depth (number of stride-2 levels) is a preset field: `tiny` uses 7 levels so that it
  trains at 128 px on a CPU; the structure is otherwise the paper's.

`official=True` (imported official checkpoints, docs/official-weights.md): the key encoder takes
the rendered frame as the release does, ImageNet-normalised at the frame's own size (256 px);
the weights are converted by nodes/yi/official.py (the AdaIN MLP's output rows re-ordered).
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from trainers.discriminators import MultiScalePatchDiscriminator

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
WINDOW = 3  # rendered frames per generator input (r_{t-2}, r_{t-1}, r_t)


class MemoryGANConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ngf: int = Field(64, description="width of the first U-Net level")
    levels: int = Field(8, ge=3, le=9, description="stride-2 levels (8 at 256 px as the paper)")
    identity: Literal["own", "arcface"] = Field("arcface", description="identity features (nodes/face/identity.py)")
    identity_dim: int = Field(512, description="identity feature size (ArcFace: 512, own: 84)")
    mlp_dim: int = Field(0, ge=0, description="AdaIN MLP hidden width (0: the number of AdaIN parameters, as the official code)")
    dropout: float = Field(0.5, ge=0, lt=1, description="dropout in the three innermost up-convolutions")
    ndf: int = 64
    d_layers: int = 3
    # memory network
    encoder_widths: tuple[int, int, int, int] = (64, 128, 256, 512)
    key_dim: int = Field(512, description="spatial feature (key) size")
    memory_size: int = Field(30000, ge=2, description="memory items (official default)")
    encoder_size: int = Field(224, ge=32, description="rendered frames are resized to this for the key encoder")
    official: bool = Field(False, description="an imported official checkpoint: ImageNet-normalised key encoder input")


class AdaIN2d(nn.Module):
    """Instance normalisation whose per-sample affine parameters are given at call time."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.num_features = channels

    def forward(self, x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x) * (1 + gamma[..., None, None]) + beta[..., None, None]


class _Level(nn.Module):
    """act -> (de)conv 4x4 stride 2 -> optional AdaIN -> optional dropout."""

    def __init__(self, c_in: int, c_out: int, up: bool, adain: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        self.act = nn.ReLU() if up else nn.LeakyReLU(0.2)
        conv = nn.ConvTranspose2d if up else nn.Conv2d
        self.conv = conv(c_in, c_out, 4, 2, 1)
        self.norm = AdaIN2d(c_out) if adain else None
        self.drop = nn.Dropout(dropout) if dropout else None

    def forward(self, x: torch.Tensor, params: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        x = self.conv(self.act(x))
        if self.norm is not None:
            x = self.norm(x, *params.pop(0))
        return self.drop(x) if self.drop is not None else x


class AttentionUNet(nn.Module):
    """G: forward(window (B, 9, H, W) in [-1, 1], identity (B, D)) -> (colour C, attention A)."""

    def __init__(self, cfg: MemoryGANConfig, in_channels: int = 3 * WINDOW, out_channels: int = 3) -> None:
        super().__init__()
        n, ngf = cfg.levels, cfg.ngf
        widths = [ngf * min(2**i, 8) for i in range(n)]  # e1 .. en
        self.first = nn.Conv2d(in_channels, widths[0], 4, 2, 1)
        self.down = nn.ModuleList(_Level(widths[i - 1], widths[i], up=False, adain=i < n - 1) for i in range(1, n))
        ups = []
        for k in range(n - 1):  # d1 .. d_{n-1}: out width of the skip it is joined with
            c_in = widths[-1] if k == 0 else 2 * widths[n - 1 - k]
            ups.append(_Level(c_in, widths[n - 2 - k], up=True, dropout=cfg.dropout if k < 3 else 0.0))
        self.up = nn.ModuleList(ups)
        self.last = _Level(2 * widths[0], widths[0], up=True)
        self.colour = nn.Sequential(nn.ReLU(), nn.Conv2d(widths[0], out_channels, 7, 1, 3), nn.Tanh())
        self.attention = nn.Sequential(nn.ReLU(), nn.Conv2d(widths[0], 1, 7, 1, 3), nn.Sigmoid())
        self.adain_sizes = [m.num_features for m in self.modules() if isinstance(m, AdaIN2d)]
        n_adain = 2 * sum(self.adain_sizes)
        hidden = cfg.mlp_dim or n_adain
        self.mlp = nn.Sequential(nn.Linear(cfg.identity_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, n_adain))
        self.multiple = 2**n

    def adain_params(self, identity: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        flat = self.mlp(identity)
        out, i = [], 0
        for c in self.adain_sizes:
            out.append((flat[:, i:i + c], flat[:, i + c:i + 2 * c]))
            i += 2 * c
        return out

    def forward(self, window: torch.Tensor, identity: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = window.shape[-2:]
        if h % self.multiple or w % self.multiple:
            raise ValueError(f"frame size {w}x{h} must be a multiple of {self.multiple} for this U-Net")
        params = self.adain_params(identity)  # consumed in module order: down, up, last
        x = self.first(window)
        skips = [x]
        for level in self.down:
            x = level(x, params)
            skips.append(x)
        skips.pop()
        for level in self.up:
            x = torch.cat([level(x, params), skips.pop()], 1)
        x = self.last(x, params)
        return self.colour(x), self.attention(x)


def compose(rendered: torch.Tensor, colour: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    """Eq. 3: o = A r + (1 - A) C."""
    return attention * rendered + (1 - attention) * colour


def attention_losses(attention: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 4's attention terms: mean A^2 (against saturation at 1) and the per-image sum of
    squared neighbour differences (smoothness), batch-averaged."""
    dx = (attention[..., :, 1:] - attention[..., :, :-1]).pow(2).flatten(1).sum(1)
    dy = (attention[..., 1:, :] - attention[..., :-1, :]).pow(2).flatten(1).sum(1)
    return attention.pow(2).mean(), (dx + dy).mean()


# --- memory network ---------------------------------------------------------------------------


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.skip = None
        if stride != 1 or c_in != c_out:
            self.skip = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + (x if self.skip is None else self.skip(x)))


class SpatialEncoder(nn.Module):
    """ResNet-18 layout (7x7 stem, max-pool, 4 stages of 2 basic blocks) -> 'pool5' -> FC -> L2 norm."""

    def __init__(self, widths: tuple[int, int, int, int], key_dim: int, input_size: int, imagenet_input: bool = False) -> None:
        super().__init__()
        self.input_size = input_size
        self.imagenet_input = imagenet_input
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 7, 2, 3, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        blocks, c = [], widths[0]
        for i, w in enumerate(widths):
            blocks += [BasicBlock(c, w, 1 if i == 0 else 2), BasicBlock(w, w, 1)]
            c = w
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(c, key_dim)

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        """frame (B, 3, H, W) in [-1, 1] -> unit keys (B, key_dim)."""
        if frame.shape[-1] != self.input_size or frame.shape[-2] != self.input_size:
            frame = F.interpolate(frame, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False,
                                  antialias=True)
        if self.imagenet_input:  # [-1, 1] -> [0, 1] -> ImageNet mean/std, the release's torchvision ResNet-18 input
            mean = frame.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
            std = frame.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
            frame = (frame * 0.5 + 0.5 - mean) / std
        pooled = self.blocks(self.stem(frame)).mean((2, 3))
        return F.normalize(self.fc(pooled), dim=1)


class IdentityMemory(nn.Module):
    """The memory items: unit spatial keys (M, Dk) paired with unit identity values (M, Dv).

    Buffers (saved in checkpoints): keys, values, age (updates since the item was last written
    or refreshed) and filled. Empty items are never retrieved and are the first to be replaced.
    """

    def __init__(self, size: int, key_dim: int, value_dim: int, age_noise: float = 4.0) -> None:
        super().__init__()
        self.age_noise = age_noise
        self.register_buffer("keys", F.normalize(torch.randn(size, key_dim), dim=1))
        self.register_buffer("values", torch.zeros(size, value_dim))
        self.register_buffer("age", torch.zeros(size))
        self.register_buffer("filled", torch.zeros(size, dtype=torch.bool))

    @property
    def n_filled(self) -> int:
        return int(self.filled.sum())

    def _scores(self, query: torch.Tensor) -> torch.Tensor:
        # a copy of the keys: `update` changes them in place while the loss may still need them
        keys = self.keys.clone() if query.requires_grad else self.keys
        return (query @ keys.t()).masked_fill(~self.filled, float("-inf"))

    def triplet_loss(self, query: torch.Tensor, value: torch.Tensor, threshold: float, top_k: int = 256,
                     margin: float = 0.3) -> torch.Tensor:
        """Threshold triplet loss (Yoo et al. 2019): among the query's top-k keys, items whose value
        is the same identity (cosine > threshold) are positives, the rest negatives; the nearest
        positive must beat the nearest negative by `margin`. Rows without both give no loss."""
        k = min(top_k, self.n_filled)
        if k < 2:
            return query.sum() * 0.0
        score, idx = self._scores(query).topk(k, dim=1)
        same = (self.values[idx] * value[:, None, :]).sum(-1) > threshold  # (B, k)
        neg_inf = torch.full_like(score, float("-inf"))
        pos = torch.where(same, score, neg_inf).amax(1)
        neg = torch.where(same, neg_inf, score).amax(1)
        ok = torch.isfinite(pos) & torch.isfinite(neg)
        if not ok.any():
            return query.sum() * 0.0
        return F.relu(neg[ok] - pos[ok] + margin).mean()

    @torch.no_grad()
    def update(self, query: torch.Tensor, value: torch.Tensor, threshold: float,
               generator: torch.Generator | None = None) -> tuple[int, int]:
        """Write a batch of (key, value) pairs; returns (refreshed, replaced) counts.

        When the nearest key's value is the same identity its key moves towards the query
        (normalised sum) and its age resets; otherwise the oldest item (empty items first,
        ages jittered by uniform noise so equal ages do not always pick the same slot) is
        replaced by the new pair."""
        b = query.shape[0]
        self.age += 1.0
        refresh = torch.zeros(b, dtype=torch.bool, device=query.device)
        if self.n_filled:
            top1 = self._scores(query).argmax(1)
            refresh = (self.values[top1] * value).sum(-1) > threshold
            hit = top1[refresh]
            self.keys.index_add_(0, hit, query[refresh])
            self.keys[hit] = F.normalize(self.keys[hit], dim=1)
            self.age[hit] = 0.0
        new = (~refresh).nonzero().flatten()
        if len(new):
            noise = (torch.rand(self.age.shape, generator=generator, device=self.age.device) * 2 - 1) * self.age_noise
            priority = torch.where(self.filled, self.age + noise, torch.full_like(self.age, float("inf")))
            slots = priority.topk(len(new)).indices
            self.keys[slots] = query[new]
            self.values[slots] = value[new]
            self.age[slots] = 0.0
            self.filled[slots] = True
        return int(refresh.sum()), len(new)

    @torch.no_grad()
    def retrieve(self, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(value of the nearest key (B, Dv), its cosine score (B,))."""
        if not self.n_filled:
            raise ValueError("the memory is empty: it was never trained")
        score, idx = self._scores(query).max(1)
        return self.values[idx], score


def smooth_features(features: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian smoothing of per-frame features (T, D) over time (edges replicated), renormalised:
    §3.4's remedy for jitter when consecutive frames retrieve different items."""
    if sigma <= 0 or features.shape[0] < 2:
        return features
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=features.dtype, device=features.device)
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    w = (w / w.sum()).view(1, 1, -1).expand(features.shape[1], 1, -1)
    padded = F.pad(features.t()[None], (radius, radius), mode="replicate")
    out = F.conv1d(padded, w, groups=features.shape[1])[0].t()
    return F.normalize(out, dim=1)


class MemoryGANNet(nn.Module):
    """What a checkpoint holds for inference: G, the memory network (key encoder + items) and
    the training set's mean identity (the 'without identity feature and memory' switch)."""

    def __init__(self, cfg: MemoryGANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.generator = AttentionUNet(cfg)
        self.encoder = SpatialEncoder(cfg.encoder_widths, cfg.key_dim, cfg.encoder_size, imagenet_input=cfg.official)
        self.memory = IdentityMemory(cfg.memory_size, cfg.key_dim, cfg.identity_dim)
        self.register_buffer("mean_identity", torch.zeros(cfg.identity_dim))

    def forward(self, window: torch.Tensor, identity: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """window (B, 9, H, W) in [-1, 1] -> (refined o, colour C, attention A)."""
        colour, attention = self.generator(window, identity)
        return compose(window[:, -3:], colour, attention), colour, attention

    @torch.no_grad()
    def retrieve_identity(self, rendered: torch.Tensor, sigma: float = 2.0, chunk: int = 32) -> torch.Tensor:
        """Per-frame identity features for a clip of rendered frames (T, 3, H, W), from the memory,
        smoothed over time with a Gaussian of `sigma` frames."""
        feats = [self.memory.retrieve(self.encoder(rendered[i:i + chunk]))[0] for i in range(0, len(rendered), chunk)]
        return smooth_features(torch.cat(feats), sigma)


def build_discriminator(cfg: MemoryGANConfig) -> MultiScalePatchDiscriminator:
    """D(window, checked frame): PatchGAN over the 3 rendered frames + the frame judged."""
    return MultiScalePatchDiscriminator(in_channels=3, cond_channels=3 * WINDOW, channels=cfg.ndf,
                                        n_layers=cfg.d_layers, num_scales=1)
