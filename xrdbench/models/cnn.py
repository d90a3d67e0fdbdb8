"""CNN and NoPoolCNN baselines (Salgado et al. 2023).

Both share three unpadded convolutions, each followed by ReLU and Dropout 0.3:

    Conv1d(1→80, k100, s5) → Conv1d(80→80, k50, s5) → Conv1d(80→80, k25, s2)

CNN adds AvgPool1d(3, stride 2) after the first convolution and AvgPool1d(3)
after the second and third (placed after the ReLU and dropout). The features
are flattened — 12,160 for NoPoolCNN and 400 for CNN on the 8,500-point grid,
the size is found by a dry run so any long-enough grid works — and go through
the head Linear→2300, ReLU, Dropout 0.5; Linear→1150, ReLU, Dropout 0.5;
Linear→classes.

The demo preset has 16 channels, a 256/128 head and kernels 9/5/3 with
strides 2/2/1, so it fits grids from about 300 points (the default config's
340); the paper kernels need at least 4,900 points. Single head: only ``tasks["space_group"]`` is used;
other tasks are ignored.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from xrdbench.errors import ConfigError
from xrdbench.models.registry import check_length, register_model, resolve_config, space_group_classes


class _SalgadoCNN(nn.Module):
    """Three convolutions with optional average pooling after each, then the MLP head."""

    NAME: str
    POOLING: bool

    PRESETS = {
        "paper": {"channels": 80, "kernels": (100, 50, 25), "strides": (5, 5, 2), "conv_dropout": 0.3,
                  "head": (2300, 1150), "head_dropout": 0.5},
        "demo": {"channels": 16, "kernels": (9, 5, 3), "strides": (2, 2, 1), "conv_dropout": 0.3,
                 "head": (256, 128), "head_dropout": 0.5},
    }
    # (kernel, stride) of the average pool after each convolution, for CNN
    POOLS = ((3, 2), (3, 3), (3, 3))

    def __init__(self, *, preset: str = "demo", two_theta_deg: np.ndarray, tasks: dict[str, int], **overrides):
        super().__init__()
        config = resolve_config(self.NAME, self.PRESETS, preset, overrides)
        self.n_bins = len(two_theta_deg)

        layers: list[nn.Module] = []
        in_channels = 1
        for kernel, stride, pool in zip(config["kernels"], config["strides"], self.POOLS, strict=True):
            layers += [nn.Conv1d(in_channels, config["channels"], kernel, stride), nn.ReLU(),
                       nn.Dropout(config["conv_dropout"])]
            if self.POOLING:
                layers.append(nn.AvgPool1d(*pool))
            in_channels = config["channels"]
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.n_features = self._flattened_size()

        head: list[nn.Module] = []
        width = self.n_features
        for size in config["head"]:
            head += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(config["head_dropout"])]
            width = size
        self.head = nn.Sequential(*head, nn.Linear(width, space_group_classes(self.NAME, tasks)))

    def _flattened_size(self) -> int:
        """Features after flattening, from a dry run on a zero pattern of the grid's length."""
        try:
            with torch.no_grad():
                return int(self.features(torch.zeros(1, 1, self.n_bins)).shape[1])
        except RuntimeError as error:
            raise ConfigError(f"models.{self.NAME}: a grid of {self.n_bins} points is too short for the "
                              f"convolutions ({error})") from error

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        check_length(self.NAME, x, self.n_bins)
        return {"space_group": self.head(self.features(x.unsqueeze(1)))}


@register_model("nopool_cnn")
class NoPoolCNN(_SalgadoCNN):
    """The three convolutions without pooling: 12,160 flattened features at 8,500 points."""

    NAME = "nopool_cnn"
    POOLING = False


@register_model("cnn")
class CNN(_SalgadoCNN):
    """The three convolutions with average pooling: 400 flattened features at 8,500 points."""

    NAME = "cnn"
    POOLING = True
