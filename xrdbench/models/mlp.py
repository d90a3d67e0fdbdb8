"""MLP baseline (Salgado et al. 2023): fully connected layers on the raw pattern.

Paper sizes: 8500 → 4000 → 3000 → 1000 → 800 → classes, ReLU after every hidden
layer, then dropout 0.6, 0.5, 0.4, 0.3. The input width is the grid length, so
any grid works. Single head: only ``tasks["space_group"]`` is used; other tasks
are ignored.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from xrdbench.errors import ConfigError
from xrdbench.models.registry import check_length, register_model, resolve_config, space_group_classes


@register_model("mlp")
class MLP(nn.Module):
    """Linear + ReLU + Dropout per hidden layer, then a linear classifier."""

    PRESETS = {
        "paper": {"hidden": (4000, 3000, 1000, 800), "dropout": (0.6, 0.5, 0.4, 0.3)},
        "demo": {"hidden": (256, 128, 64, 64), "dropout": (0.6, 0.5, 0.4, 0.3)},
    }

    def __init__(self, *, preset: str = "demo", two_theta_deg: np.ndarray, tasks: dict[str, int], **overrides):
        super().__init__()
        config = resolve_config("mlp", self.PRESETS, preset, overrides)
        hidden, dropout = tuple(config["hidden"]), tuple(config["dropout"])
        if len(hidden) != len(dropout):
            raise ConfigError(f"models.mlp: {len(hidden)} hidden sizes but {len(dropout)} dropout rates")
        self.n_bins = len(two_theta_deg)

        layers: list[nn.Module] = []
        width = self.n_bins
        for size, rate in zip(hidden, dropout):
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(rate)]
            width = size
        self.body = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, space_group_classes("mlp", tasks))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        check_length("mlp", x, self.n_bins)
        return {"space_group": self.classifier(self.body(x))}
