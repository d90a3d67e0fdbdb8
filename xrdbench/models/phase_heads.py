"""Heads of the multi-phase models (multi-phase paper, Appendix A §1.3–1.4).

* :class:`PresenceHead`: masked mean pooling g = Σ m_l Z_l / (Σ m_l + ε) over valid
  tokens, then a linear layer to C presence logits (sigmoid → p_c).
* :class:`PhaseClusterHead`: K learnable slot embeddings are the queries of
  ``slot_layers`` update layers; each layer is masked multi-head cross-attention to
  the tokens (invalid tokens excluded as keys) and a slot-wise FFN, post-norm:
  ``A = LN(S + Attn(S, Z, Z)); S = LN(A + FFN(A))``. A linear layer maps each
  slot to C + 1 logits, the NONE class last. No position enters the
  cross-attention, so it is invariant to the token order. The paper does not give
  the number of update layers; ours is a preset option (``slot_layers``).

The slot gate is g_k = 1 − π_k,NONE (:func:`slot_gate`).
"""

from __future__ import annotations

import torch
import torch.nn as nn


def masked_mean(tokens: torch.Tensor, valid: torch.Tensor | None, eps: float = 1e-6) -> torch.Tensor:
    """(B, L, d), valid (B, L) → (B, d): the mean over valid tokens (all tokens when ``valid`` is None)."""
    if valid is None:
        return tokens.mean(dim=1)
    weights = valid.to(tokens.dtype).unsqueeze(-1)
    return (tokens * weights).sum(dim=1) / (weights.sum(dim=1) + eps)


class PresenceHead(nn.Module):
    """Masked mean pooling → Linear(d, classes): presence logits (B, classes)."""

    def __init__(self, d_model: int, classes: int):
        super().__init__()
        self.classifier = nn.Linear(d_model, classes)

    def forward(self, tokens: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        return self.classifier(masked_mean(tokens, valid))


class SlotUpdateLayer(nn.Module):
    """Masked cross-attention from slots to tokens, then a slot-wise FFN, each residual + LayerNorm."""

    def __init__(self, d_model: int, heads: int, ffn: int, dropout: float):
        super().__init__()
        self.attention = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(nn.Linear(d_model, ffn), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn, d_model))
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, slots: torch.Tensor, tokens: torch.Tensor, padding: torch.Tensor | None) -> torch.Tensor:
        attended, _ = self.attention(slots, tokens, tokens, key_padding_mask=padding, need_weights=False)
        slots = self.norm1(slots + self.dropout(attended))
        return self.norm2(slots + self.dropout(self.ffn(slots)))


class PhaseClusterHead(nn.Module):
    """K learnable slots, iterated masked cross-attention + FFN, C + 1 logits per slot (NONE last)."""

    def __init__(self, *, d_model: int, classes: int, slots: int = 5, slot_layers: int = 3, heads: int = 4,
                 ffn: int = 256, dropout: float = 0.1):
        super().__init__()
        self.n_slots = slots
        self.slot_embeddings = nn.Parameter(torch.randn(slots, d_model) * d_model ** -0.5)
        self.layers = nn.ModuleList(SlotUpdateLayer(d_model, heads, ffn, dropout) for _ in range(slot_layers))
        self.classifier = nn.Linear(d_model, classes + 1)

    def forward(self, tokens: torch.Tensor, valid: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``tokens`` (B, L, d), ``valid`` (B, L) → {"slot_logits": (B, K, C+1), "slots": (B, K, d)}."""
        padding = None
        if valid is not None:
            padding = ~(valid > 0.5)
            padding = padding & ~padding.all(dim=1, keepdim=True)  # no valid token: attend to all
        slots = self.slot_embeddings.unsqueeze(0).expand(tokens.shape[0], -1, -1)
        for layer in self.layers:
            slots = layer(slots, tokens, padding)
        return {"slot_logits": self.classifier(slots), "slots": slots}


def slot_probabilities(slot_logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the C + 1 classes of each slot: (B, K, C+1)."""
    return slot_logits.softmax(dim=-1)


def slot_gate(slot_logits: torch.Tensor) -> torch.Tensor:
    """The slot activation gate g_k = 1 − π_k,NONE (B, K); NONE is the last class."""
    return 1.0 - slot_probabilities(slot_logits)[..., -1]
