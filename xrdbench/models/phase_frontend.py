"""Shared 1D CNN front-end of the multi-phase models (multi-phase paper, Appendix A §1.2–1.3).

Turns a windowed pattern ``x`` (B, N) and its measurement mask (B, N) (1 = measured
bin) into a shorter token sequence (B, L, d) with a per-token validity mask (B, L):

* The input is zeroed outside the measured window first, so nothing outside it
  reaches the tokens.
* Stages of :class:`MultiScaleResBlock`, one per entry of ``channels`` /
  ``strides`` (paper: [64, 128, 256, 256], all stride 2, so L = ceil(N / 16)).
  Each block runs parallel convolutions with kernels [3, 7, 15] and dilations
  [1, 2, 4], all with stride s and "same" padding (d·(k−1)/2), so the output
  length is ceil(L_in / s); the branches are concatenated, batch-normalised,
  passed through GELU, mixed back to C_out channels by a 1×1 convolution and
  dropout (0.1), and added to a shortcut (identity, or a strided 1×1 projection
  when the stride or the width changes).
* The mask reaches token resolution by staged max-pooling with the same strides
  (``ceil_mode``, so lengths match the convolutions): a token is valid when any
  bin of its span was measured. The "local mask mean" is the same staged
  pooling done with averages (the measured fraction of the token's span).
* Positional conditioning: the grid's 2θ, scaled to [−1, 1] by the grid's
  bounds and downsampled by staged average pooling, and the local mask mean go
  through an MLP (2 → d → d, GELU) whose output is added to the tokens, after a
  linear projection of the last CNN width to ``d_model``.

Invalid tokens keep features (bias, position): the encoders and heads are the
ones that exclude them, through the returned validity mask.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

#: Front-end options shared by the multi-phase models' presets.
FRONTEND_PRESETS = {
    "paper": {"cnn_channels": (64, 128, 256, 256), "cnn_strides": (2, 2, 2, 2), "cnn_kernels": (3, 7, 15),
              "cnn_dilations": (1, 2, 4), "cnn_dropout": 0.1},
    "demo": {"cnn_channels": (16, 32, 64, 64), "cnn_strides": (2, 2, 2, 2), "cnn_kernels": (3, 7, 15),
             "cnn_dilations": (1, 2, 4), "cnn_dropout": 0.1},
}


class MultiScaleResBlock(nn.Module):
    """Parallel dilated convolutions → concat → BN → GELU → 1×1 mix → dropout, plus a shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, kernels=(3, 7, 15), dilations=(1, 2, 4),
                 dropout: float = 0.1):
        super().__init__()
        if len(kernels) != len(dilations):
            raise ValueError(f"MultiScaleResBlock: {len(kernels)} kernels but {len(dilations)} dilations")
        for kernel, dilation in zip(kernels, dilations):
            if (dilation * (kernel - 1)) % 2:
                raise ValueError(f"MultiScaleResBlock: kernel {kernel} with dilation {dilation} has no 'same' "
                                 "padding; use odd kernels")
        self.branches = nn.ModuleList(
            nn.Conv1d(in_channels, out_channels, kernel, stride=stride, dilation=dilation,
                      padding=dilation * (kernel - 1) // 2, bias=False)
            for kernel, dilation in zip(kernels, dilations))
        self.norm = nn.BatchNorm1d(out_channels * len(kernels))
        self.mix = nn.Conv1d(out_channels * len(kernels), out_channels, 1)
        self.dropout = nn.Dropout(dropout)
        if stride != 1 or in_channels != out_channels:
            self.shortcut: nn.Module = nn.Conv1d(in_channels, out_channels, 1, stride=stride)
        else:
            self.shortcut = nn.Identity()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        u = F.gelu(self.norm(torch.cat([branch(h) for branch in self.branches], dim=1)))
        return self.dropout(self.mix(u)) + self.shortcut(h)


def check_mask(model: str, x: torch.Tensor, mask: torch.Tensor | None) -> None:
    """Fail clearly when ``mask`` is given with a shape other than ``x``'s."""
    if mask is not None and tuple(mask.shape) != tuple(x.shape):
        raise ValueError(f"models.{model}: mask {tuple(mask.shape)} does not match x {tuple(x.shape)}")


def staged_pool(values: torch.Tensor, strides, mode: str) -> torch.Tensor:
    """(B, N) → (B, L): pooling with kernel = stride = s for each stride, ``max`` or ``avg``, ceil mode.

    The output length matches the front-end's convolutions (ceil(N / s) per stage).
    A partial last window is pooled over the bins it has.
    """
    out = values.unsqueeze(1)
    for stride in strides:
        if mode == "max":
            out = F.max_pool1d(out, stride, stride, ceil_mode=True)
        elif mode == "avg":
            out = F.avg_pool1d(out, stride, stride, ceil_mode=True)
        else:
            raise ValueError(f"staged_pool: mode must be 'max' or 'avg', got {mode!r}")
    return out.squeeze(1)


class PhaseFrontEnd(nn.Module):
    """Strided multi-scale CNN → tokens (B, L, d_model) + 2θ/mask conditioning; also the token mask."""

    def __init__(self, *, two_theta_deg: np.ndarray, d_model: int, cnn_channels, cnn_strides, cnn_kernels,
                 cnn_dilations, cnn_dropout: float):
        super().__init__()
        if len(cnn_channels) != len(cnn_strides):
            raise ValueError(f"PhaseFrontEnd: {len(cnn_channels)} channel widths but {len(cnn_strides)} strides")
        grid = np.asarray(two_theta_deg, dtype=np.float64)
        self.n_bins = len(grid)
        self.strides = tuple(int(s) for s in cnn_strides)
        blocks = []
        in_channels = 1
        for channels, stride in zip(cnn_channels, self.strides):
            blocks.append(MultiScaleResBlock(in_channels, int(channels), stride, tuple(cnn_kernels),
                                             tuple(cnn_dilations), cnn_dropout))
            in_channels = int(channels)
        self.blocks = nn.Sequential(*blocks)
        self.project = nn.Linear(in_channels, d_model)
        self.position = nn.Sequential(nn.Linear(2, d_model), nn.GELU(), nn.Linear(d_model, d_model))

        lo, hi = float(grid.min()), float(grid.max())
        scaled = 2.0 * (grid - lo) / (hi - lo) - 1.0 if hi > lo else np.zeros_like(grid)
        angle = staged_pool(torch.as_tensor(scaled, dtype=torch.float32)[None], self.strides, "avg")[0]
        self.register_buffer("token_angle", angle, persistent=False)  # (L,), in [-1, 1]
        self.n_tokens = int(angle.shape[0])

    def token_masks(self, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(valid (B, L) float 0/1 by staged max-pooling, local mask mean (B, L) by staged averaging)."""
        mask = mask.to(torch.float32)
        return staged_pool(mask, self.strides, "max"), staged_pool(mask, self.strides, "avg")

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (B, N), ``mask`` (B, N) or None (all measured) → (tokens (B, L, d), valid (B, L) float)."""
        if mask is None:
            mask = torch.ones_like(x)
        mask = mask.to(x.dtype)
        h = self.blocks((x * mask).unsqueeze(1))  # (B, C, L)
        tokens = self.project(h.transpose(1, 2))
        valid, mask_mean = self.token_masks(mask)
        conditioning = torch.stack([self.token_angle.expand_as(mask_mean), mask_mean], dim=-1)
        return tokens + self.position(conditioning), valid
