"""Transformer encoder with rotary position embeddings (RoPE) and a key padding mask.

Multi-phase paper, Appendix A §1.3 (default encoder): 18 layers, d = 768, 12 heads,
feed-forward width 4,096, dropout 0.1 in attention and feed-forward sublayers.

* Pre-norm layers (LayerNorm → attention → dropout → residual; LayerNorm → FFN
  (GELU) → dropout → residual) and a final LayerNorm. The paper does not say
  pre- or post-norm; pre-norm is our choice for stability at depth 18.
* RoPE rotates queries and keys by angle ``position · base^(−2i/d_head)`` in
  consecutive channel pairs (2i, 2i+1), so the score q·k depends on positions
  only through their difference. Positions default to the token index 0..L−1
  (tokens are uniform in 2θ); any float positions (B, L) or (L,) may be given.
* ``valid`` (B, L), 1 = valid token: invalid tokens are excluded as keys (their
  scores are set to the dtype's minimum, so their weight is exactly 0). Invalid
  positions still get outputs (they attend to the valid ones); they are ignored
  downstream. A sample with no valid token attends to all (avoids NaN).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

#: Encoder options shared by the Transformer-based multi-phase models' presets.
TRANSFORMER_PRESETS = {
    "paper": {"d_model": 768, "layers": 18, "heads": 12, "ffn": 4096, "dropout": 0.1, "rope_base": 10000.0},
    "demo": {"d_model": 64, "layers": 2, "heads": 4, "ffn": 128, "dropout": 0.1, "rope_base": 10000.0},
}


def rope_angles(positions: torch.Tensor, head_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin), each positions.shape + (head_dim // 2,), for rotating channel pairs (2i, 2i+1)."""
    if head_dim % 2:
        raise ValueError(f"RoPE needs an even head dimension, got {head_dim}")
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim)
    angles = positions.to(torch.float32).unsqueeze(-1) * inv_freq
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` (..., L, head_dim) pairwise by (cos, sin) (..., L, head_dim // 2) (broadcast)."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    rotated = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return rotated.flatten(-2).to(x.dtype)


def key_padding_bias(valid: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """Additive attention bias (B, 1, 1, L): 0 for valid keys, the dtype's minimum for invalid ones.

    Rows with no valid key get no bias (attend to all) so softmax stays finite.
    """
    if valid is None:
        return None
    valid = valid > 0.5
    valid = valid | ~valid.any(dim=1, keepdim=True)
    bias = torch.zeros(valid.shape, dtype=dtype, device=valid.device)
    bias = bias.masked_fill(~valid, torch.finfo(dtype).min)
    return bias[:, None, None, :]


class RoPESelfAttention(nn.Module):
    """Multi-head self-attention with RoPE on queries and keys and an additive key bias."""

    def __init__(self, d_model: int, heads: int, dropout: float, rope_base: float = 10000.0):
        super().__init__()
        if d_model % heads:
            raise ValueError(f"RoPESelfAttention: d_model {d_model} is not divisible by {heads} heads")
        self.heads = heads
        self.head_dim = d_model // heads
        self.rope_base = rope_base
        self.dropout = dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def project(self, x: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(q, k, v), each (B, H, L, head_dim), with RoPE applied to q and k."""
        batch, length, _ = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        cos, sin = rope_angles(positions, self.head_dim, self.rope_base)
        if cos.ndim == 3:  # per-sample positions (B, L, h/2) → broadcast over heads
            cos, sin = cos[:, None], sin[:, None]
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def scores(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Pre-softmax attention scores (B, H, L, L), without masking (for inspection and tests)."""
        q, k, _ = self.project(x, positions)
        return q @ k.transpose(-1, -2) / self.head_dim ** 0.5

    def forward(self, x: torch.Tensor, positions: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        q, k, v = self.project(x, positions)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).flatten(2))


class RoPEEncoderLayer(nn.Module):
    """Pre-norm: x + Dropout(Attn(LN x)); x + Dropout(FFN(LN x)) with a GELU FFN."""

    def __init__(self, d_model: int, heads: int, ffn: int, dropout: float, rope_base: float = 10000.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attention = RoPESelfAttention(d_model, heads, dropout, rope_base)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(nn.Linear(d_model, ffn), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn, d_model))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        x = x + self.dropout(self.attention(self.norm1(x), positions, bias))
        return x + self.dropout(self.ffn(self.norm2(x)))


class RoPETransformerEncoder(nn.Module):
    """``layers`` RoPE encoder layers and a final LayerNorm: (B, L, d), valid (B, L) → (B, L, d)."""

    def __init__(self, *, d_model: int, layers: int, heads: int, ffn: int, dropout: float,
                 rope_base: float = 10000.0):
        super().__init__()
        self.layers = nn.ModuleList(RoPEEncoderLayer(d_model, heads, ffn, dropout, rope_base)
                                    for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tokens: torch.Tensor, valid: torch.Tensor | None = None,
                positions: torch.Tensor | None = None) -> torch.Tensor:
        if positions is None:
            positions = torch.arange(tokens.shape[1], device=tokens.device, dtype=torch.float32)
        bias = key_padding_bias(valid, tokens.dtype)
        x = tokens
        for layer in self.layers:
            x = layer(x, positions, bias)
        return self.norm(x)
