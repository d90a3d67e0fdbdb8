"""Multi-label (Transformer): front-end + RoPE Transformer + presence head.

The presence-only Transformer baseline of the multi-phase paper (Appendix A §1.2–1.5):
``forward(x, mask=None)`` with ``x`` (B, N) float32 and ``mask`` (B, N) (1 = measured
bin; None = all measured) returns ``{"presence": (B, C)}`` logits, C =
``tasks["space_group"]`` (230); train with the BCE presence loss
(:func:`xrdbench.train.set_losses.presence_loss`). Other tasks are ignored.

Presets: ``paper`` (front-end [64, 128, 256, 256]; 18 layers, d 768, 12 heads, FFN
4,096, dropout 0.1) and ``demo`` (front-end [16, 32, 64, 64]; 2 layers, d 64,
4 heads, FFN 128).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from xrdbench.models.phase_frontend import FRONTEND_PRESETS, PhaseFrontEnd, check_mask
from xrdbench.models.phase_heads import PresenceHead
from xrdbench.models.registry import check_length, register_model, resolve_config, space_group_classes
from xrdbench.models.rope_transformer import TRANSFORMER_PRESETS, RoPETransformerEncoder


@register_model("multilabel_transformer")
class MultiLabelTransformer(nn.Module):
    NAME = "multilabel_transformer"
    PRESETS = {preset: {**FRONTEND_PRESETS[preset], **TRANSFORMER_PRESETS[preset]} for preset in ("paper", "demo")}

    def __init__(self, *, preset: str = "demo", two_theta_deg: np.ndarray, tasks: dict[str, int], **overrides):
        super().__init__()
        config = resolve_config(self.NAME, self.PRESETS, preset, overrides)
        self.config = config
        self.n_bins = len(two_theta_deg)
        self.frontend = PhaseFrontEnd(two_theta_deg=two_theta_deg, d_model=config["d_model"],
                                      **{key: config[key] for key in FRONTEND_PRESETS[preset]})
        self.encoder = RoPETransformerEncoder(**{key: config[key] for key in TRANSFORMER_PRESETS[preset]})
        self.head = PresenceHead(config["d_model"], space_group_classes(self.NAME, tasks))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        check_length(self.NAME, x, self.n_bins)
        check_mask(self.NAME, x, mask)
        tokens, valid = self.frontend(x, mask)
        return {"presence": self.head(self.encoder(tokens, valid), valid)}
