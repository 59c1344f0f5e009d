"""IP_LAP's transformer-based landmark generator (§3.1, Fig. 2 left).

Inputs for T adjacent frames: mel windows m_t (16 x 80, fed as 80 bins x 16 steps), pose-prior
landmarks l^p_t (2 x 74) and N_l reference landmarks l^r_i (2 x 131 = pose + content of another
frame), all in face-box coordinates (nodes/ip_lap/facemesh.py). Eq. 1-3: a Wav2Lip-style audio
encoder E_a and 1-D conv encoders E_p, E_r give d-dim embeddings, each LayerNorm-ed (one shared
LayerNorm, as the official code). Eq. 4-6: sinusoidal temporal encodings on the audio and pose
tokens and a learned type embedding on all three kinds. Eq. 7: L encoder layers over the
N_l + 2T tokens [reference, audio, pose]. Eq. 8-9: the audio tokens' outputs give the lips, the
pose tokens' outputs the jaw, through one linear map each.

Output: content landmarks (B, T, 2, 57) — jaw (17) then lips (40), as facemesh.CONTENT_IDX.

Departures (paper text vs official code; the `paper` preset follows the code, whose released
weights it must load): the encoder layers are post-norm (z = LN(z + MSA(z)), as
`nn.TransformerEncoderLayer` by default) where eq. 7 writes pre-norm; n_l = 40 and n_j = 17
where §4.1 says 41 and 16; dropout 0.1 on the input tokens and inside the layers.

Option `mouth_prior: rules` (not in the paper, never in a preset; docs/ip_lap.md "Rules lip
prior"): forward also takes a rule-based prior of the jaw and lips (nodes/ip_lap/mouth_prior.py:
the rules mouth of the speech's phonetic features on the 3DMM, as a landmark displacement in
the box, added to the video's closed rest) and the phonetic features; the output is the prior
plus the two heads' output, a residual whose heads start at zero, and the phonetic features
enter the audio tokens through a linear map that starts at zero (`residual_inputs: phones`: in
place of the mel encoder's embedding, which is then not used; `residual_gate: speech`: the
residual is scaled by the features' speech dimension, so silence gives the prior exactly) (so a warm-started model gives
exactly the prior at step 0). Why: trained on a few synthetic voices, the mel encoder reads an
unseen voice poorly (held-out benchmark 0.42, half-open in silence); the phonetic rules read
it better, and the network only has to learn what they get wrong. Measured (400 steps from the
bundled generator): the prior alone 0.67; a residual that reads the mels 0.62 (it learns the
training voices again); from the phones, speech-gated, lambda_residual 1000: 0.686, closed in
silence (the bundled `landmark_generator_prior_tiny.pt`).
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from trainers.data.phonetic import SPEECH

from .blocks import ConvNorm, EncoderLayer, audio_encoder, sinusoidal_positions
from .facemesh import N_CONTENT, N_JAW, N_LIP, N_POSE

TOKEN_POSE, TOKEN_AUDIO, TOKEN_REFERENCE = 1, 2, 3  # rows of the type embedding (row 0 is unused padding)
MAX_POSITIONS = 512


class LandmarkGeneratorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    frames: int = Field(5, ge=1, le=64, description="T: frames predicted at a time")
    dim: int = Field(512, ge=8, description="d: token width")
    layers: int = Field(4, ge=1, le=24)
    heads: int = Field(4, ge=1, le=32)
    ff_dim: int = Field(1024, ge=8, description="width of the encoder layers' MLP")
    dropout: float = Field(0.1, ge=0, lt=1)
    audio_widths: tuple[int, int, int, int] = (32, 64, 128, 256)
    landmark_widths: tuple[int, int, int, int, int, int, int] = (4, 8, 16, 32, 64, 128, 256)
    mouth_prior: Literal["none", "rules"] = Field("none", description=(
        "none: the paper's generator; rules: the output is a rule-based jaw + lip prior plus a learned residual, "
        "the phonetic features an extra input (a departure: docs/ip_lap.md)"))
    phonetic_dim: int = Field(44, ge=1, description="mouth_prior rules: width of the phonetic features")
    residual_inputs: Literal["all", "phones"] = Field("all", description=(
        "mouth_prior rules: the audio tokens read the mel windows and the phonetic features (all) or the phonetic "
        "features alone (phones: the voice-dependent mel spectrogram does not reach the residual)"))
    residual_gate: Literal["none", "speech"] = Field("none", description=(
        "mouth_prior rules: speech = the residual is scaled by the phonetic features' speech dimension (1 - P(SIL) "
        "x voice activity), so silence gives the prior's closed rest exactly"))


def reference_encoder(w: tuple[int, ...], dim: int) -> nn.Sequential:
    """E_r: (B, 2, 131) -> (B, dim, 1): stride-2 stages 131 -> 66 -> 33 -> 17 -> 9 -> 5 -> 3, then a valid conv."""
    c = [ConvNorm(2, w[0], 3, dim=1)]
    for i in range(1, 7):
        c.append(ConvNorm(w[i - 1], w[i], 3, 2, dim=1))
        c += [ConvNorm(w[i], w[i], 3, residual=True, dim=1) for _ in range(2 if i < 6 else 1)]
    c += [ConvNorm(w[6], dim, 3, padding=0, dim=1), ConvNorm(dim, dim, 1, padding=0, act="tanh", dim=1)]
    return nn.Sequential(*c)


def pose_encoder(w: tuple[int, ...], dim: int) -> nn.Sequential:
    """E_p: (B, 2, 74) -> (B, dim, 1): 74 -> 74 -> 37 -> 19 -> 10 -> 5 -> 3, then a valid conv and a
    residual 1x1 conv (the official layout: unlike E_r its first stage keeps the length)."""
    c = [ConvNorm(2, w[0], 3, dim=1)]
    for i in range(1, 7):
        c.append(ConvNorm(w[i - 1], w[i], 3, 1 if i == 1 else 2, dim=1))
        c += [ConvNorm(w[i], w[i], 3, residual=True, dim=1) for _ in range(2)]
    c += [ConvNorm(w[6], dim, 3, padding=0, dim=1), ConvNorm(dim, dim, 1, padding=0, residual=True, act="tanh", dim=1)]
    return nn.Sequential(*c)


class LandmarkGeneratorNet(nn.Module):
    """forward(mels (B, T, 80, 16), pose (B, T, 2, 74), ref_pose (B, Nl, 2, 74), ref_content (B, Nl, 2, 57),
    [prior (B, T, 2, 57), phonetic (B, T, 44): `mouth_prior: rules` only]) -> content landmarks (B, T, 2, 57)."""

    def __init__(self, cfg: LandmarkGeneratorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.audio_encoder = audio_encoder(cfg.audio_widths, d, "tanh")
        self.reference_encoder = reference_encoder(cfg.landmark_widths, d)
        self.pose_encoder = pose_encoder(cfg.landmark_widths, d)
        self.embed_norm = nn.LayerNorm(d)
        self.token_type = nn.Embedding(4, d, padding_idx=0)
        self.register_buffer("positions", sinusoidal_positions(MAX_POSITIONS, d), persistent=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(EncoderLayer(d, cfg.heads, cfg.ff_dim, cfg.dropout) for _ in range(cfg.layers))
        self.lip_head = nn.Linear(d, N_LIP * 2)
        self.jaw_head = nn.Linear(d, N_JAW * 2)
        self.uses_prior = cfg.mouth_prior == "rules"
        if self.uses_prior:  # the residual starts at zero: an untrained (or warm-started) model gives the prior
            self.phonetic_embed = nn.Linear(cfg.phonetic_dim, d)
            for m in (self.phonetic_embed, self.lip_head, self.jaw_head):
                nn.init.zeros_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, mels: torch.Tensor, pose: torch.Tensor, ref_pose: torch.Tensor, ref_content: torch.Tensor,
                prior: torch.Tensor | None = None, phonetic: torch.Tensor | None = None) -> torch.Tensor:
        b, t = pose.shape[:2]
        n_ref = ref_pose.shape[1]
        if mels.shape[2:] != (80, 16) or pose.shape[2:] != (2, N_POSE) or ref_content.shape[2:] != (2, N_CONTENT):
            raise ValueError(f"expected mels (B, T, 80, 16), pose (B, T, 2, {N_POSE}), references (B, Nl, 2, {N_POSE}) + "
                             f"(B, Nl, 2, {N_CONTENT}); got {tuple(mels.shape)}, {tuple(pose.shape)}, "
                             f"{tuple(ref_pose.shape)}, {tuple(ref_content.shape)}")
        if self.uses_prior and (prior is None or phonetic is None):
            raise ValueError("this landmark generator adds a learned residual to the rules lip prior: pass `prior` and `phonetic`")
        reference = torch.cat([ref_pose, ref_content], dim=3).flatten(0, 1)             # (B*Nl, 2, 131)
        if self.uses_prior and self.cfg.residual_inputs == "phones":  # the mels are not read (option)
            a = mels.new_zeros(b, t, self.cfg.dim)
        else:
            a = self.embed_norm(self.audio_encoder(mels.flatten(0, 1)[:, None]).flatten(1))  # eq. 1
        p = self.embed_norm(self.pose_encoder(pose.flatten(0, 1)).flatten(1))             # eq. 2
        r = self.embed_norm(self.reference_encoder(reference).flatten(1))                 # eq. 3
        pos = self.positions[:t]
        kind = self.token_type.weight
        a = a.view(b, t, -1) + pos + kind[TOKEN_AUDIO]                                   # eq. 4
        if self.uses_prior:
            a = a + self.phonetic_embed(phonetic)
        p = p.view(b, t, -1) + pos + kind[TOKEN_POSE]                                    # eq. 5
        r = r.view(b, n_ref, -1) + kind[TOKEN_REFERENCE]                                 # eq. 6
        z = self.drop(torch.cat([r, a, p], dim=1))
        for layer in self.layers:                                                         # eq. 7
            z = layer(z)
        lips = self.lip_head(z[:, n_ref:n_ref + t])                                       # eq. 8
        jaw = self.jaw_head(z[:, n_ref + t:])                                             # eq. 9
        # (x, y) pairs per point, jaw first: (B, T, 57, 2) -> (B, T, 2, 57)
        out = torch.cat([jaw, lips], dim=2).view(b, t, N_CONTENT, 2).transpose(2, 3)
        if not self.uses_prior:
            return out
        if self.cfg.residual_gate == "speech":
            out = out * phonetic[..., SPEECH].clamp(0, 1)[..., None, None]
        return out + prior

