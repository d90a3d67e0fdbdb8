"""Token CNN encoder: the convolutional alternative to the RoPE Transformer.

Multi-phase paper, Appendix A §1.3 ("naive token CNN encoder"): 18 residual blocks
along the token axis, each two same-length 1D convolutions (kernel 7) with GELU and
dropout 0.1; the dilation of block i is 1, 2, 4, 8, 1, 2, … (period 4). Invalid
positions are zeroed on entry and again after every block (multiplying by the
valid mask), so nothing leaks from windowed-out tokens; a final LayerNorm over d.

Block: ``x ← valid · (x + Dropout(Conv(Dropout(GELU(Conv(x))))))``, both
convolutions with the block's dilation and padding d·(k−1)/2. The width is
``d_model`` throughout (paper preset 768, as the Transformer; the paper does not
give it).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

#: Encoder options of the token CNN presets.
TOKEN_CNN_PRESETS = {
    "paper": {"d_model": 768, "blocks": 18, "kernel": 7, "dilation_cycle": (1, 2, 4, 8), "dropout": 0.1},
    "demo": {"d_model": 64, "blocks": 4, "kernel": 7, "dilation_cycle": (1, 2, 4, 8), "dropout": 0.1},
}


class TokenConvBlock(nn.Module):
    """Two dilated same-length convolutions with GELU and dropout, residual."""

    def __init__(self, d_model: int, kernel: int, dilation: int, dropout: float):
        super().__init__()
        if kernel % 2 == 0:
            raise ValueError(f"TokenConvBlock: kernel must be odd for same-length output, got {kernel}")
        padding = dilation * (kernel - 1) // 2
        self.conv1 = nn.Conv1d(d_model, d_model, kernel, dilation=dilation, padding=padding)
        self.conv2 = nn.Conv1d(d_model, d_model, kernel, dilation=dilation, padding=padding)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, d, L) → (B, d, L)."""
        return x + self.dropout(self.conv2(self.dropout(F.gelu(self.conv1(x)))))


class TokenCNNEncoder(nn.Module):
    """(B, L, d) tokens, valid (B, L) → (B, L, d), invalid positions zero before the final LayerNorm."""

    def __init__(self, *, d_model: int, blocks: int, kernel: int, dilation_cycle, dropout: float):
        super().__init__()
        cycle = tuple(int(d) for d in dilation_cycle)
        self.dilations = tuple(cycle[i % len(cycle)] for i in range(blocks))
        self.blocks = nn.ModuleList(TokenConvBlock(d_model, kernel, d, dropout) for d in self.dilations)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tokens: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        x = tokens.transpose(1, 2)
        keep = None if valid is None else valid.to(x.dtype).unsqueeze(1)  # (B, 1, L)
        if keep is not None:
            x = x * keep
        for block in self.blocks:
            x = block(x)
            if keep is not None:
                x = x * keep
        return self.norm(x.transpose(1, 2))
