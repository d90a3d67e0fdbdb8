"""XRDecoupler (AAAI 2026): a local residual CNN and a global patch Transformer, one head per task.

Local module: [BatchNorm(intensity), sin 2θ] → residual conv blocks with pooling after each
(max-pools first, then average pools, then an adaptive pool to length 1) → Linear → ``E_local``.
Global module: the pattern is cut into patches; each patch becomes [conv features of its
intensities ⊕ a learnable per-patch embedding ⊕ its maximum intensity] + a sinusoidal position
code; Transformer encoder layers attend over the patches with all-zero patches masked as keys;
a masked mean over the patches gives ``E_global``. ``E = E_global ⊕ E_local`` feeds one linear
head per task. ``forward(x, return_embedding=True)`` adds ``E`` under ``"embedding"``, which the
MGDA-UB trainer (:mod:`xrdbench.train.mgda`) uses as the shared representation.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from xrdbench.models.registry import register_model

PRESETS: dict[str, dict] = {
    "paper": dict(
        channels=(32, 32, 64, 128, 128, 256, 256, 512, 512, 1024, 1024, 1024, 1024),
        n_max_pools=4,
        local_dropout=0.25,
        dropout_from=9,  # blocks with index ≥ this get dropout (the 1024-channel ones)
        local_dim=32,
        patch_len=10,
        k_intensity=16,
        k_learnable=15,
        n_layers=2,
        n_heads=1,
        d_ff=256,
        attn_dropout=0.25,
    ),
    "demo": dict(
        channels=(4, 8, 16, 32, 64),
        n_max_pools=4,
        local_dropout=0.25,
        dropout_from=3,
        local_dim=32,
        patch_len=10,
        k_intensity=16,
        k_learnable=15,
        n_layers=1,
        n_heads=1,
        d_ff=128,
        attn_dropout=0.25,
    ),
}


class ResidualBlock(nn.Module):
    """conv k3 → BN → LeakyReLU → conv k3 → BN, residual add (1×1 projection if needed), LeakyReLU."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm1d(c_out),
            nn.LeakyReLU(),
            nn.Conv1d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm1d(c_out),
        )
        self.shortcut = nn.Identity() if c_in == c_out else nn.Conv1d(c_in, c_out, 1, bias=False)
        self.act = nn.LeakyReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class LocalModule(nn.Module):
    def __init__(self, two_theta_deg: np.ndarray, channels, n_max_pools: int, local_dropout: float,
                 dropout_from: int, local_dim: int):
        super().__init__()
        sin2t = torch.sin(torch.deg2rad(torch.as_tensor(two_theta_deg, dtype=torch.float32)))
        self.register_buffer("sin_two_theta", sin2t.view(1, 1, -1), persistent=False)
        self.input_norm = nn.BatchNorm1d(1)
        self.blocks = nn.ModuleList()
        self.dropouts = nn.ModuleList()
        c_prev = 2
        for i, c in enumerate(channels):
            self.blocks.append(ResidualBlock(c_prev, c))
            self.dropouts.append(nn.Dropout(local_dropout) if i >= dropout_from else nn.Identity())
            c_prev = c
        self.n_max_pools = n_max_pools
        self.proj = nn.Linear(c_prev, local_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.cat([self.input_norm(x.unsqueeze(1)), self.sin_two_theta.expand(x.shape[0], 1, -1)], dim=1)
        for i, (block, drop) in enumerate(zip(self.blocks, self.dropouts)):
            h = block(h)
            if h.shape[-1] >= 2:
                h = F.max_pool1d(h, 2) if i < self.n_max_pools else F.avg_pool1d(h, 2)
            h = drop(h)
        h = F.adaptive_avg_pool1d(h, 1).flatten(1)
        return self.proj(h)


def sinusoidal_encoding(n: int, d: int) -> torch.Tensor:
    """(n, d) sine/cosine position code (Vaswani et al. 2017)."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(n, d)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: d // 2])
    return pe


class GlobalModule(nn.Module):
    def __init__(self, length: int, patch_len: int, k_intensity: int, k_learnable: int, n_layers: int,
                 n_heads: int, d_ff: int, attn_dropout: float):
        super().__init__()
        self.patch_len = patch_len
        self.n_patches = -(-length // patch_len)
        self.pad = self.n_patches * patch_len - length
        self.d_model = k_intensity + k_learnable + 1
        # small conv stack over each patch's intensities → k_intensity features
        c1 = max(k_intensity // 4, 1)
        c2 = max(k_intensity // 2, 1)
        self.patch_conv = nn.Sequential(
            nn.Conv1d(1, c1, 3, padding=1), nn.LeakyReLU(),
            nn.Conv1d(c1, c2, 3, padding=1), nn.LeakyReLU(),
            nn.Conv1d(c2, k_intensity, 3, padding=1),
            nn.AdaptiveAvgPool1d(1),
        )
        self.patch_embedding = nn.Parameter(torch.randn(self.n_patches, k_learnable) * 0.02)
        self.register_buffer("position", sinusoidal_encoding(self.n_patches, self.d_model), persistent=False)
        layer = nn.TransformerEncoderLayer(self.d_model, n_heads, dim_feedforward=d_ff, dropout=attn_dropout,
                                           activation=F.leaky_relu, batch_first=True)
        # As in the authors' code, dropout acts on the sub-layer outputs, not on the attention weights
        # (which also lets the fused attention kernels run).
        layer.self_attn.dropout = 0.0
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)

    def patches(self, x: torch.Tensor) -> torch.Tensor:
        """(B, P, patch_len) zero-padded patches."""
        if self.pad:
            x = F.pad(x, (0, self.pad))
        return x.view(x.shape[0], self.n_patches, self.patch_len)

    def key_padding_mask(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, P) True where the patch is all zero (masked as a key); rows that would be fully masked are
        left unmasked, so attention stays defined."""
        mask = patches.abs().amax(-1) == 0
        return mask & ~mask.all(dim=1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        p = self.patches(x)
        mask = self.key_padding_mask(p)
        e_int = self.patch_conv(p.reshape(b * self.n_patches, 1, self.patch_len)).view(b, self.n_patches, -1)
        e_learn = self.patch_embedding.unsqueeze(0).expand(b, -1, -1)
        p_max = p.amax(-1, keepdim=True)
        tokens = torch.cat([e_int, e_learn, p_max], dim=-1) + self.position
        h = self.encoder(tokens, src_key_padding_mask=mask)
        keep = (~mask).unsqueeze(-1).to(h.dtype)
        return (h * keep).sum(1) / keep.sum(1).clamp_min(1.0)


@register_model("xrdecoupler")
class XRDecoupler(nn.Module):
    MULTI_HEAD = True  # one head per task in ``tasks``; the other models predict the space group only

    def __init__(self, *, preset: str = "demo", two_theta_deg: np.ndarray, tasks: dict[str, int],
                 use_local: bool = True, use_global: bool = True, **overrides):
        super().__init__()
        if preset not in PRESETS:
            raise ValueError(f"xrdecoupler: unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
        unknown = set(overrides) - set(PRESETS[preset])
        if unknown:
            raise ValueError(f"xrdecoupler: unknown overrides {sorted(unknown)}; expected from "
                             f"{sorted(PRESETS[preset]) + ['use_global', 'use_local']}")
        if not (use_local or use_global):
            raise ValueError("xrdecoupler: at least one of use_local and use_global must be on")
        if not tasks:
            raise ValueError("xrdecoupler: no tasks")
        cfg = {**PRESETS[preset], **overrides}
        self.config = cfg
        two_theta_deg = np.asarray(two_theta_deg, dtype=np.float32)
        self.length = int(two_theta_deg.shape[0])
        self.local = LocalModule(two_theta_deg, cfg["channels"], cfg["n_max_pools"], cfg["local_dropout"],
                                 cfg["dropout_from"], cfg["local_dim"]) if use_local else None
        self.global_ = GlobalModule(self.length, cfg["patch_len"], cfg["k_intensity"], cfg["k_learnable"],
                                    cfg["n_layers"], cfg["n_heads"], cfg["d_ff"], cfg["attn_dropout"]) \
            if use_global else None
        self.embedding_dim = (self.global_.d_model if use_global else 0) + (cfg["local_dim"] if use_local else 0)
        self.heads = nn.ModuleDict({task: nn.Linear(self.embedding_dim, n) for task, n in tasks.items()})

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """E = E_global ⊕ E_local (only the enabled parts), shape (B, embedding_dim)."""
        if x.ndim != 2 or x.shape[1] != self.length:
            raise ValueError(f"xrdecoupler: expected x of shape (B, {self.length}), got {tuple(x.shape)}")
        parts = []
        if self.global_ is not None:
            parts.append(self.global_(x))
        if self.local is not None:
            parts.append(self.local(x))
        return torch.cat(parts, dim=1)

    def classify(self, e: torch.Tensor) -> dict[str, torch.Tensor]:
        return {task: head(e) for task, head in self.heads.items()}

    def forward(self, x: torch.Tensor, return_embedding: bool = False) -> dict[str, torch.Tensor]:
        e = self.embed(x)
        out = self.classify(e)
        if return_embedding:
            out["embedding"] = e
        return out
