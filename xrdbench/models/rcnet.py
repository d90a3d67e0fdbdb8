"""RCNet (Chen et al. 2024, JACS): a 1-D pre-activation residual network.

- Stem: Conv1d(k30, 10 filters, same padding) + BN + ReLU.
- Body: 16 residual blocks, each (BN, ReLU, Dropout 0.5, Conv k30) twice. Every
  other block (the 2nd, 4th, …) downsamples by 2 in its first convolution, and
  channels double every 4 blocks: 10 → 20 → 40 → 80. The shortcut is max-pooled
  (ceil mode) when the block strides and zero-padded when channels grow.
- Output: BN + ReLU, global average pooling, Linear → classes.
- ``confidence=True`` adds a sigmoid confidence head: ``"confidence"`` (B, 1) is a
  probability in [0, 1], not a logit.

Convolutions pad as TensorFlow's ``same`` does, so a block of stride ``s`` maps
length L to ceil(L / s): 8,500 points end at length 34 with 80 channels.

``variant="xrdecoupler"`` is the XRDecoupler authors' version: LeakyReLU,
dropout 0.2, and instead of pooling a flattened head → 720 → classes. The
flattened size comes from a dry run: 34 × 80 = 2,720 at 8,500 points; the
authors' 1,600 (= 20 × 80) is what a 5,000-point input gives.

The demo preset has 4 blocks, kernel 9, stride 2 in every block and channels
doubling every 2 blocks (10 → 20), so 2,048 points end at length 128. Single head: only ``tasks["space_group"]`` is used; other tasks are
ignored.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from xrdbench.errors import ConfigError
from xrdbench.models.registry import check_length, register_model, resolve_config, space_group_classes


class SameConv1d(nn.Conv1d):
    """Conv1d padded like TensorFlow's ``same``: output length ceil(L / stride), for any kernel size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length, kernel, stride = x.shape[-1], self.kernel_size[0], self.stride[0]
        total = max((math.ceil(length / stride) - 1) * stride + kernel - length, 0)
        return super().forward(F.pad(x, (total // 2, total - total // 2)))


def _activation(name: str) -> nn.Module:
    return {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU}[name]()


class ResidualBlock(nn.Module):
    """(BN, activation, Dropout, Conv) twice; the first convolution carries the stride."""

    def __init__(self, in_channels: int, out_channels: int, *, kernel: int, stride: int, dropout: float,
                 activation: str):
        super().__init__()
        self.stride, self.extra_channels = stride, out_channels - in_channels
        self.body = nn.Sequential(
            nn.BatchNorm1d(in_channels), _activation(activation), nn.Dropout(dropout),
            SameConv1d(in_channels, out_channels, kernel, stride),
            nn.BatchNorm1d(out_channels), _activation(activation), nn.Dropout(dropout),
            SameConv1d(out_channels, out_channels, kernel),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        if self.stride > 1:
            shortcut = F.max_pool1d(shortcut, self.stride, ceil_mode=True)
        if self.extra_channels:
            shortcut = F.pad(shortcut, (0, 0, 0, self.extra_channels))
        return self.body(x) + shortcut


@register_model("rcnet")
class RCNet(nn.Module):
    """Stem, residual blocks, then global pooling (``rcnet``) or a flattened MLP head (``xrdecoupler``)."""

    PRESETS = {
        "paper": {"filters": 10, "kernel": 30, "blocks": 16, "stride_every": 2, "double_every": 4,
                  "dropout": 0.5, "activation": "relu", "flatten_hidden": None, "confidence": False},
        "demo": {"filters": 10, "kernel": 9, "blocks": 4, "stride_every": 1, "double_every": 2,
                 "dropout": 0.5, "activation": "relu", "flatten_hidden": None, "confidence": False},
    }
    VARIANTS = {
        "rcnet": {},
        "xrdecoupler": {"activation": "leaky_relu", "dropout": 0.2, "flatten_hidden": 720},
    }

    def __init__(self, *, preset: str = "demo", two_theta_deg: np.ndarray, tasks: dict[str, int],
                 variant: str = "rcnet", **overrides):
        super().__init__()
        if variant not in self.VARIANTS:
            raise ConfigError(f"models.rcnet: unknown variant {variant!r}; expected one of {sorted(self.VARIANTS)}")
        config = resolve_config("rcnet", self.PRESETS, preset, self.VARIANTS[variant], overrides)
        self.n_bins, self.variant = len(two_theta_deg), variant
        act, kernel, dropout = config["activation"], config["kernel"], config["dropout"]

        self.stem = nn.Sequential(SameConv1d(1, config["filters"], kernel), nn.BatchNorm1d(config["filters"]),
                                  _activation(act))
        blocks, channels = [], config["filters"]
        for index in range(config["blocks"]):
            out_channels = config["filters"] * 2 ** (index // config["double_every"])
            stride = 2 if index % config["stride_every"] == config["stride_every"] - 1 else 1
            blocks.append(ResidualBlock(channels, out_channels, kernel=kernel, stride=stride, dropout=dropout,
                                        activation=act))
            channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.out = nn.Sequential(nn.BatchNorm1d(channels), _activation(act))
        self.out_channels = channels

        if config["flatten_hidden"] is None:
            self.pool = nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Flatten())
            width = channels
        else:
            self.n_features = self._flattened_size()
            self.pool = nn.Sequential(nn.Flatten(), nn.Linear(self.n_features, config["flatten_hidden"]),
                                      _activation(act), nn.Dropout(dropout))
            width = config["flatten_hidden"]
        self.classifier = nn.Linear(width, space_group_classes("rcnet", tasks))
        self.confidence = nn.Sequential(nn.Linear(width, 1), nn.Sigmoid()) if config["confidence"] else None

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L) patterns → (B, C, L') after the output BN and activation."""
        return self.out(self.blocks(self.stem(x.unsqueeze(1))))

    def _flattened_size(self) -> int:
        """C × L' from a dry run in eval mode (so BatchNorm statistics stay untouched)."""
        was_training = self.training
        self.eval()
        with torch.no_grad():
            size = self.feature_map(torch.zeros(1, self.n_bins)).flatten(1).shape[1]
        self.train(was_training)
        return int(size)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.variant == "xrdecoupler":
            check_length("rcnet", x, self.n_bins)
        features = self.pool(self.feature_map(x))
        outputs = {"space_group": self.classifier(features)}
        if self.confidence is not None:
            outputs["confidence"] = self.confidence(features)
        return outputs
