"""Multi-label (CNN): front-end + token CNN encoder + presence head.

The presence-only CNN baseline of the multi-phase paper (Appendix A §1.2–1.5):
``forward(x, mask=None)`` with ``x`` (B, N) float32 and ``mask`` (B, N) (1 = measured
bin; None = all measured) returns ``{"presence": (B, C)}`` logits, C =
``tasks["space_group"]`` (230). Other tasks are ignored.

Presets: ``paper`` (front-end [64, 128, 256, 256]; 18 token blocks, kernel 7,
dilations 1, 2, 4, 8 cyclic, d 768, dropout 0.1) and ``demo`` (front-end
[16, 32, 64, 64]; 4 blocks, d 64).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from xrdbench.models.phase_frontend import FRONTEND_PRESETS, PhaseFrontEnd, check_mask
from xrdbench.models.phase_heads import PresenceHead
from xrdbench.models.registry import check_length, register_model, resolve_config, space_group_classes
from xrdbench.models.token_cnn import TOKEN_CNN_PRESETS, TokenCNNEncoder


@register_model("multilabel_cnn")
class MultiLabelCNN(nn.Module):
    NAME = "multilabel_cnn"
    PRESETS = {preset: {**FRONTEND_PRESETS[preset], **TOKEN_CNN_PRESETS[preset]} for preset in ("paper", "demo")}

    def __init__(self, *, preset: str = "demo", two_theta_deg: np.ndarray, tasks: dict[str, int], **overrides):
        super().__init__()
        config = resolve_config(self.NAME, self.PRESETS, preset, overrides)
        self.config = config
        self.n_bins = len(two_theta_deg)
        self.frontend = PhaseFrontEnd(two_theta_deg=two_theta_deg, d_model=config["d_model"],
                                      **{key: config[key] for key in FRONTEND_PRESETS[preset]})
        self.encoder = TokenCNNEncoder(**{key: config[key] for key in TOKEN_CNN_PRESETS[preset]})
        self.head = PresenceHead(config["d_model"], space_group_classes(self.NAME, tasks))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        check_length(self.NAME, x, self.n_bins)
        check_mask(self.NAME, x, mask)
        tokens, valid = self.frontend(x, mask)
        return {"presence": self.head(self.encoder(tokens, valid), valid)}
