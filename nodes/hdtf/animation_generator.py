"""Style-specific audio-to-animation generator G^ani (HDTF §4.1, Fig. 4) and its three
conditional temporal discriminators (eq. 4, 6).

Step 1: a 1-D CNN audio encoder turns the per-frame audio features (13 MFCC + 2 pitch, 25 fps)
into f^audio; AdaIN with scale/shift from fully-connected layers over the reference identity
embedding turns it into the style-specific f^audio_ref.
Step 2: a CNN mouth decoder gives p^mou (28); an encoder-decoder long-time temporal decoder
(a 1-D U-Net: the paper's faster alternative to self-attention) feeds a CNN eyebrow decoder
(p^ebro, 5) and a CNN head-pose decoder (p^hed).

Departures, and why:
- Head pose has 6 dims, the project's MorphCoeffs pose (pitch, yaw, roll, tx, ty, log-scale)
  as deltas from the reference frame's pose, with tx, ty in fractions of the image width/height
  (so one model serves every resolution); the paper's p^hed has 5 (no scale).
- Inputs and outputs are standardised inside the model with statistics of the training set
  (buffers saved in the checkpoint), so callers pass and receive raw values.
- The identity embedding is VGG-Face's when the user supplies its weights; otherwise the
  documented fallback of nodes/hdtf/identity.py (3DMM shape + face appearance statistics).
- Option `mouth_prior: rules` (off in every preset; docs/lipsync.md "Rules prior + learned
  residual"): the rule-based mouth of the same phonetic features (nodes/lipsync/rules.py
  `features_rule_mouth`) is an extra input, and the mouth output is that prior plus a learned
  residual whose last layer starts at zero. Why: trained on a few synthetic voices, the paper's
  mouth decoder reads phones worse than the viseme table on unseen voices; the residual only has
  to learn what the table gets wrong.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from nodes.lipsync.prior import zero_residual_
from nodes.standardizer import Standardizer
from trainers.discriminators import TemporalPatchDiscriminator

MOUTH_DIM, BROW_DIM, POSE_DIM = 28, 5, 6
PARTS = {"mouth": MOUTH_DIM, "brow": BROW_DIM, "pose": POSE_DIM}


class AnimationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    audio_dim: int = 15
    identity: Literal["morph", "vggface"] = "morph"
    identity_dim: int = Field(66, description="60 shape coefficients + 6 appearance statistics, or 4096 (VGG-Face)")
    channels: int = 256
    encoder_blocks: int = 3
    decoder_channels: int = 128
    temporal_levels: int = Field(4, ge=1, le=8, description="down/up levels of the long-time decoder")
    kernel: int = 5
    style_hidden: int = 256
    disc_channels: int = 64
    disc_layers: int = 3
    mouth_prior: Literal["none", "rules"] = Field("none", description=(
        "none: the paper's mouth decoder; rules: the rule-based mouth is an extra input and the output is it plus a "
        "learned residual (a departure: docs/lipsync.md)"))
    residual_inputs: Literal["all", "phones", "prior"] = Field("all", description=(
        "mouth_prior rules: what the mouth residual reads: all (every feature and the prior, through the shared "
        "encoder), phones (its own small encoder over the phone classes and the prior: no acoustic cues) or prior "
        "(its own encoder over the prior alone); brow and pose always read every feature"))


class ResBlock1d(nn.Module):
    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(channels, channels, kernel, padding=kernel // 2)
        self.conv2 = nn.Conv1d(channels, channels, kernel, padding=kernel // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(F.leaky_relu(x, 0.2)), 0.2))


class AdaIN1d(nn.Module):
    """Adaptive instance normalisation over time (Huang & Belongie 2017): the identity
    embedding's fully-connected layers give per-channel scale and shift."""

    def __init__(self, channels: int, identity_dim: int, hidden: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(identity_dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 2 * channels))

    def forward(self, x: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.mlp(identity).unsqueeze(-1).chunk(2, dim=1)
        return F.instance_norm(x) * (1 + gamma) + beta


class ParamDecoder(nn.Module):
    """CNN decoder of one parameter group: residual block, conv, 1x1 projection."""

    def __init__(self, c_in: int, c_mid: int, c_out: int, kernel: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            ResBlock1d(c_in, kernel), nn.LeakyReLU(0.2),
            nn.Conv1d(c_in, c_mid, kernel, padding=kernel // 2), nn.LeakyReLU(0.2),
            nn.Conv1d(c_mid, c_out, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class LongTimeDecoder(nn.Module):
    """Encoder-decoder over time: strided convs down `levels` times, then up with skips, so
    each output frame sees a long context (eyebrow and head motion follow prosody)."""

    def __init__(self, channels: int, levels: int, kernel: int) -> None:
        super().__init__()
        self.levels = levels
        self.down = nn.ModuleList(nn.Conv1d(channels, channels, 4, stride=2, padding=1) for _ in range(levels))
        self.mid = ResBlock1d(channels, kernel)
        self.up = nn.ModuleList(nn.Conv1d(2 * channels, channels, kernel, padding=kernel // 2) for _ in range(levels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[-1]
        m = 2**self.levels
        if t % m:
            x = F.pad(x, (0, (-t) % m), mode="replicate")
        skips = []
        for conv in self.down:
            skips.append(x)
            x = F.leaky_relu(conv(x), 0.2)
        x = self.mid(x)
        for conv in self.up:
            x = F.interpolate(x, scale_factor=2.0, mode="linear", align_corners=False)
            x = F.leaky_relu(conv(torch.cat([x, skips.pop()], dim=1)), 0.2)
        return x[..., :t]


class AnimationGeneratorNet(nn.Module):
    """forward(audio (B,T,15), identity (B,identity_dim), style=True, prior=None) -> {'mouth' (B,T,28),
    'brow' (B,T,5), 'pose' (B,T,6)} in raw units. With style=False the AdaIN parameters come
    from the training set's mean identity (the "w/o style" switch). With `mouth_prior: rules`,
    `prior` (B,T,28) is the rule-based mouth in coefficients and 'mouth' = prior + residual."""

    def __init__(self, cfg: AnimationConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c, k = cfg.channels, cfg.kernel
        self.audio_norm = Standardizer(cfg.audio_dim)
        self.identity_norm = Standardizer(cfg.identity_dim)
        self.out_norm = nn.ModuleDict({name: Standardizer(d) for name, d in PARTS.items()})
        self.uses_prior = cfg.mouth_prior == "rules"
        self.own_mouth_encoder = self.uses_prior and cfg.residual_inputs != "all"
        c_in = cfg.audio_dim + (MOUTH_DIM if self.uses_prior and not self.own_mouth_encoder else 0)
        self.audio_encoder = nn.Sequential(
            nn.Conv1d(c_in, c, k, padding=k // 2), *[ResBlock1d(c, k) for _ in range(cfg.encoder_blocks)]
        )
        if self.own_mouth_encoder:
            from trainers.data.phonetic import N_PHONES

            self.n_phones = N_PHONES if cfg.residual_inputs == "phones" else 0
            self.mouth_encoder = nn.Sequential(nn.Conv1d(self.n_phones + MOUTH_DIM, c, k, padding=k // 2), ResBlock1d(c, k))
        self.style = AdaIN1d(c, cfg.identity_dim, cfg.style_hidden)
        self.mouth_decoder = ParamDecoder(c, cfg.decoder_channels, MOUTH_DIM, k)
        self.long_time = LongTimeDecoder(c, cfg.temporal_levels, k)
        self.brow_decoder = ParamDecoder(c, cfg.decoder_channels, BROW_DIM, k)
        self.pose_decoder = ParamDecoder(c, cfg.decoder_channels, POSE_DIM, k)
        if self.uses_prior:  # the residual starts at zero: an untrained model gives the rules' mouth
            self.zero_residual()

    prior_input_layers = ("audio_encoder.0.weight",)  # mouth_prior rules: the prior's channels follow the features'

    def zero_residual(self) -> None:
        zero_residual_(self.mouth_decoder.net[-1])

    def forward_normalized(self, audio_n: torch.Tensor, identity_n: torch.Tensor, style: bool = True,
                           prior_n: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Standardised inputs -> standardised outputs (what the losses compare). `prior_n`: the
        rules mouth standardised like the mouth output (needed with `mouth_prior: rules`)."""
        if self.uses_prior and prior_n is None:
            raise ValueError("this animation generator adds a learned residual to the rules mouth prior: pass `prior`")
        if not style:
            identity_n = torch.zeros_like(identity_n)
        if self.own_mouth_encoder:
            h = self.style(self.audio_encoder(audio_n.transpose(1, 2)), identity_n)
            phones_prior = torch.cat([audio_n[..., :self.n_phones], prior_n], dim=-1).transpose(1, 2)
            h_mouth = self.style(self.mouth_encoder(phones_prior), identity_n)
        else:
            x = torch.cat([audio_n, prior_n], dim=-1) if self.uses_prior else audio_n
            h = h_mouth = self.style(self.audio_encoder(x.transpose(1, 2)), identity_n)
        lt = self.long_time(h)
        mouth = self.mouth_decoder(h_mouth).transpose(1, 2)
        return {
            "mouth": mouth + prior_n if self.uses_prior else mouth,
            "brow": self.brow_decoder(lt).transpose(1, 2),
            "pose": self.pose_decoder(lt).transpose(1, 2),
        }

    def forward(self, audio: torch.Tensor, identity: torch.Tensor, style: bool = True,
                prior: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if audio.shape[1] < 2:
            raise ValueError("need at least 2 frames of audio features")
        # an unseen face far outside the training identities is kept within the trained range
        identity_n = self.identity_norm.norm(identity).clamp(-4.0, 4.0)
        prior_n = None if prior is None else self.out_norm["mouth"].norm(prior)
        out = self.forward_normalized(self.audio_norm.norm(audio), identity_n, style, prior_n)
        return {k: self.out_norm[k].denorm(v) for k, v in out.items()}


class AnimationDiscriminators(nn.Module):
    """D^mou, D^ebro, D^hed: conditional 1-D PatchGANs over {f_audio, p} (standardised)."""

    def __init__(self, cfg: AnimationConfig) -> None:
        super().__init__()
        self.nets = nn.ModuleDict(
            {name: TemporalPatchDiscriminator(d, cfg.audio_dim, cfg.disc_channels, cfg.disc_layers, cfg.kernel) for name, d in PARTS.items()}
        )

    def forward(self, params: dict[str, torch.Tensor], audio_n: torch.Tensor) -> dict[str, list[list[torch.Tensor]]]:
        return {name: net(params[name], audio_n) for name, net in self.nets.items()}

