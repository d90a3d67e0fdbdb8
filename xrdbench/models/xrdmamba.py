"""XRDMamba (Yu et al. 2024): Mamba layers over intensity-weighted position tokens, then a residual CNN.

Architecture (``paper`` preset; numbers from the paper, see ``shared/REFERENCE.md``):

* Tokens: position i of the pattern has a learnable embedding e_i (E = 16), and its
  token is ``x_i * e_i``, the embedding scaled by that position's intensity. The input
  length is ``len(two_theta_deg)``: 8,500 on the benchmark grid (the authors' later
  variant), or a downsampled grid. The original paper used 5,000 points; pass that grid
  to reproduce it.
* 8 Mamba layers, each ``x + Mamba(RMSNorm(x))`` (pre-norm residual), and a final
  RMSNorm. The Mamba mixer is the standard one: in-projection to 2 * d_inner
  (d_inner = expand * E, expand 2) split into x and a gate z; a depthwise causal
  convolution (d_conv 3) and SiLU on x; x projected to (Δ-rank dt_rank = ceil(E/16),
  B, C with d_state 32); Δ = softplus(dt_proj(.)) with the bias initialised so that
  softplus(bias) is log-uniform in [0.001, 0.1]; A = -exp(A_log) with A_log initialised
  to log[1..N] per channel (S4D-real); the selective scan (:mod:`selective_scan`);
  y * SiLU(z); out-projection to E.
* A residual CNN over the (E, L) sequence: 13 blocks with channels 32, 32, 64, 64, 128,
  128, 256, 256, 256, 512, 512, 1024, 1024. Each block is conv k3 → BN → ReLU → conv k3
  → BN, plus a shortcut (1×1 conv + BN where the channel count changes), ReLU, then a
  max-pool by 2 (while the length is > 1); an adaptive average pool takes what is left
  down to length 1. Dropout 0.2 after the blocks from ``dropout_from`` on (by default the
  last four, 512 and 1024 channels: "the later blocks" is not specified further).
* Head: Linear(1024 → 512) → ReLU → Dropout → Linear(512 → classes), one per task.

Choices where the paper says nothing: ReLU and max-pool in the CNN, the per-block
shortcut, the token embedding initialised N(0, 1) (as ``nn.Embedding``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from xrdbench.models.registry import register_model
from xrdbench.models.selective_scan import selective_scan


@dataclass(frozen=True)
class XRDMambaConfig:
    n_layers: int = 8
    d_model: int = 16            # E, the token embedding size
    d_state: int = 32
    expand: int = 2
    d_conv: int = 3
    dt_min: float = 0.001
    dt_max: float = 0.1
    channels: tuple[int, ...] = (32, 32, 64, 64, 128, 128, 256, 256, 256, 512, 512, 1024, 1024)
    dropout: float = 0.2
    dropout_from: int = 9        # index of the first CNN block followed by dropout
    head_hidden: int = 512
    chunk_size: int = 64         # selective-scan chunk length (PyTorch path)
    input_pool: int = 1          # max-pool the pattern by this factor before tokenising (1: every point a token)


PRESETS: dict[str, XRDMambaConfig] = {
    "paper": XRDMambaConfig(),
    # The scan is sequential in L, which a CPU pays for in full: the demo tokenises every 4th
    # point's neighbourhood (max-pool 4), keeping every peak while cutting the scan 4×.
    "demo": XRDMambaConfig(n_layers=2, d_model=8, d_state=8, channels=(8, 16, 32, 64, 128),
                           dropout_from=3, head_hidden=64, input_pool=4),
}


class MambaMixer(nn.Module):
    """The Mamba (S6) block: gated, convolved, input-selective state-space layer."""

    def __init__(self, d_model: int, d_state: int, expand: int, d_conv: int, dt_min: float, dt_max: float,
                 chunk_size: int = 64):
        super().__init__()
        self.d_inner = expand * d_model
        self.d_state = d_state
        self.dt_rank = math.ceil(d_model / 16)
        self.chunk_size = chunk_size
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

        # Δ bias: softplus(bias) = dt with dt log-uniform in [dt_min, dt_max]
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=1e-4)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))   # inverse softplus
        dt_init_std = self.dt_rank ** -0.5
        nn.init.uniform_(self.dt_proj.weight, -dt_init_std, dt_init_std)
        # S4D-real: A = -[1..N] for every channel, stored as log
        a = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(a))
        self.D = nn.Parameter(torch.ones(self.d_inner))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, E) -> (B, L, E)
        length = x.shape[1]
        xz = self.in_proj(x)
        x, z = xz.chunk(2, dim=-1)
        x = self.conv(x.transpose(1, 2))[..., :length].transpose(1, 2)         # causal depthwise conv
        x = F.silu(x)
        dt, B, C = torch.split(self.x_proj(x), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt))
        A = -torch.exp(self.A_log)
        y = selective_scan(x, delta, A, B, C, self.D, chunk_size=self.chunk_size)
        return self.out_proj(y * F.silu(z))


class MambaLayer(nn.Module):
    """Pre-norm residual: x + mixer(RMSNorm(x))."""

    def __init__(self, d_model: int, **mixer_kwargs):
        super().__init__()
        self.norm = nn.RMSNorm(d_model)
        self.mixer = MambaMixer(d_model, **mixer_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mixer(self.norm(x))


class ResBlock1d(nn.Module):
    def __init__(self, c_in: int, c_out: int, dropout: float):
        super().__init__()
        self.conv1 = nn.Conv1d(c_in, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm1d(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.shortcut = (nn.Identity() if c_in == c_out else
                         nn.Sequential(nn.Conv1d(c_in, c_out, 1, bias=False), nn.BatchNorm1d(c_out)))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))
        if out.shape[-1] > 1:
            out = F.max_pool1d(out, 2, ceil_mode=True)
        return self.dropout(out)


@register_model("xrdmamba")
class XRDMamba(nn.Module):
    """XRDMamba; ``forward(x (B, L)) -> {task: logits (B, n_classes)}``, L = len(two_theta_deg)."""

    def __init__(self, *, preset: str = "demo", two_theta_deg: np.ndarray, tasks: dict[str, int], **overrides):
        super().__init__()
        if preset not in PRESETS:
            raise ValueError(f"xrdmamba: unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
        known = {f.name for f in fields(XRDMambaConfig)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"xrdmamba: unknown overrides {unknown}; expected some of {sorted(known)}")
        if "channels" in overrides:
            overrides["channels"] = tuple(overrides["channels"])
        cfg = replace(PRESETS[preset], **overrides)
        if "space_group" not in tasks:
            raise ValueError("xrdmamba: tasks must include 'space_group'")
        self.config = cfg
        self.length = int(len(two_theta_deg))
        self.tasks = dict(tasks)

        self.embedding = nn.Parameter(torch.randn(-(-self.length // cfg.input_pool), cfg.d_model))
        self.layers = nn.ModuleList(
            MambaLayer(cfg.d_model, d_state=cfg.d_state, expand=cfg.expand, d_conv=cfg.d_conv, dt_min=cfg.dt_min,
                       dt_max=cfg.dt_max, chunk_size=cfg.chunk_size)
            for _ in range(cfg.n_layers))
        self.norm_f = nn.RMSNorm(cfg.d_model)
        blocks, c_in = [], cfg.d_model
        for i, c_out in enumerate(cfg.channels):
            blocks.append(ResBlock1d(c_in, c_out, cfg.dropout if i >= cfg.dropout_from else 0.0))
            c_in = c_out
        self.cnn = nn.Sequential(*blocks)
        self.heads = nn.ModuleDict({
            task: nn.Sequential(nn.Linear(c_in, cfg.head_hidden), nn.ReLU(), nn.Dropout(cfg.dropout),
                                nn.Linear(cfg.head_hidden, n))
            for task, n in tasks.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.ndim != 2 or x.shape[1] != self.length:
            raise ValueError(f"xrdmamba: expected x of shape (B, {self.length}), got {tuple(x.shape)}")
        if self.config.input_pool > 1:
            x = F.max_pool1d(x.unsqueeze(1), self.config.input_pool, ceil_mode=True).squeeze(1)
        h = x.unsqueeze(-1) * self.embedding                                     # (B, L, E)
        for layer in self.layers:
            h = layer(h)
        h = self.norm_f(h).transpose(1, 2)                                       # (B, E, L)
        h = F.adaptive_avg_pool1d(self.cnn(h), 1).flatten(1)
        return {task: head(h) for task, head in self.heads.items()}
