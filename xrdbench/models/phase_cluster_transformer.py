"""Phase-cluster (Transformer): front-end + RoPE Transformer + phase-clustering head.

The proposed model of the multi-phase paper (Appendix A §1.2–1.5):
``forward(x, mask=None)`` with ``x`` (B, N) float32 and ``mask`` (B, N) (1 = measured
bin; None = all measured) returns ``{"slot_logits": (B, K, C+1), "slots": (B, K, d)}``
with K = 5 slots and the NONE class last (index C = 230); the gate of slot k is
g_k = 1 − softmax(slot_logits)[..., NONE] (:func:`xrdbench.models.phase_heads.slot_gate`).
Train with :func:`xrdbench.train.set_losses.assignment_loss`. Other tasks are ignored.

Presets: the Transformer presets of :mod:`xrdbench.models.multilabel_transformer`
plus the head: ``paper`` 5 slots, 3 update layers (not given by the paper),
12 heads, FFN 4,096; ``demo`` 5 slots, 2 update layers, 4 heads, FFN 128.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from xrdbench.models.phase_frontend import FRONTEND_PRESETS, PhaseFrontEnd, check_mask
from xrdbench.models.phase_heads import PhaseClusterHead
from xrdbench.models.registry import check_length, register_model, resolve_config, space_group_classes
from xrdbench.models.rope_transformer import TRANSFORMER_PRESETS, RoPETransformerEncoder

HEAD_PRESETS = {
    "paper": {"slots": 5, "slot_layers": 3, "slot_heads": 12, "slot_ffn": 4096},
    "demo": {"slots": 5, "slot_layers": 2, "slot_heads": 4, "slot_ffn": 128},
}


@register_model("phase_cluster_transformer")
class PhaseClusterTransformer(nn.Module):
    NAME = "phase_cluster_transformer"
    PRESETS = {preset: {**FRONTEND_PRESETS[preset], **TRANSFORMER_PRESETS[preset], **HEAD_PRESETS[preset]}
               for preset in ("paper", "demo")}

    def __init__(self, *, preset: str = "demo", two_theta_deg: np.ndarray, tasks: dict[str, int], **overrides):
        super().__init__()
        config = resolve_config(self.NAME, self.PRESETS, preset, overrides)
        self.config = config
        self.n_bins = len(two_theta_deg)
        self.frontend = PhaseFrontEnd(two_theta_deg=two_theta_deg, d_model=config["d_model"],
                                      **{key: config[key] for key in FRONTEND_PRESETS[preset]})
        self.encoder = RoPETransformerEncoder(**{key: config[key] for key in TRANSFORMER_PRESETS[preset]})
        self.head = PhaseClusterHead(d_model=config["d_model"], classes=space_group_classes(self.NAME, tasks),
                                     slots=config["slots"], slot_layers=config["slot_layers"],
                                     heads=config["slot_heads"], ffn=config["slot_ffn"],
                                     dropout=config["dropout"])

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        check_length(self.NAME, x, self.n_bins)
        check_mask(self.NAME, x, mask)
        tokens, valid = self.frontend(x, mask)
        return self.head(self.encoder(tokens, valid), valid)
