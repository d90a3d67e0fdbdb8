"""Phase sets and mixture proportions, and the convex combination of phase patterns.

The samplers here are deterministic transforms of U(0, 1) draws, vectorized over the
batch; :mod:`xrdbench.augment.sampling` supplies the draws from each sample's own
random stream, so a sample's phases never depend on its batch neighbours.
"""

from __future__ import annotations

import numpy as np
from scipy.special import gammaincinv

__all__ = ["distinct_materials", "floored_dirichlet", "mix", "phase_count"]


def phase_count(u, k_probabilities) -> np.ndarray:
    """K ∈ {1 … len(p)} by inverse CDF of the categorical ``k_probabilities`` (int64)."""
    p = np.asarray(k_probabilities, dtype=np.float64)
    cdf = np.cumsum(p / p.sum())
    cdf[-1] = 1.0  # u < 1, so the last category always catches rounding in the cumsum
    return np.searchsorted(cdf, np.asarray(u), side="right").astype(np.int64) + 1


def distinct_materials(u: np.ndarray, k: np.ndarray, pool_size: int) -> np.ndarray:
    """K distinct pool positions per row, uniformly at random, in draw order; −1 padded.

    Sequential selection without replacement: slot j picks rank ``⌊u_j (N − j)⌋`` among
    the ``N − j`` positions not yet taken (walking the earlier picks in ascending order
    and stepping over each one at or below the rank). Rows need ``k ≤ pool_size``.
    """
    n_rows, n_slots = u.shape
    picks = np.full((n_rows, n_slots), -1, dtype=np.int64)
    taken = np.empty((n_rows, 0), dtype=np.int64)  # earlier picks, ascending per row
    for j in range(min(n_slots, pool_size)):
        remaining = pool_size - j
        rank = np.minimum((u[:, j] * remaining).astype(np.int64), remaining - 1)
        for m in range(j):
            rank += rank >= taken[:, m]
        picks[:, j] = np.where(j < k, rank, -1)
        taken = np.sort(np.concatenate([taken, rank[:, None]], axis=1), axis=1)
    return picks


def floored_dirichlet(u: np.ndarray, k: np.ndarray, floor: float, alpha: float = 1.0) -> np.ndarray:
    """Weights (B, slots) float64: Dirichlet(α) over the first k slots with a minimum weight.

    ``w = floor + (1 − k·floor) · d`` with ``d ~ Dirichlet(α)``: every active weight is at
    least ``floor`` and the row sums to 1 exactly in one step, where clipping and
    renormalizing would pull clipped weights back under the floor. The Dirichlet comes
    from Gamma(α) variates by inverse CDF (for α = 1, exponentials ``−log(1 − u)``).
    Inactive slots are 0.
    """
    active = np.arange(u.shape[1]) < np.asarray(k)[:, None]
    if np.any(np.asarray(k) * floor > 1.0):
        raise ValueError(f"a minimum weight of {floor} cannot hold for {int(np.max(k))} phases")
    gamma = -np.log1p(-u) if alpha == 1.0 else gammaincinv(alpha, u)
    gamma = np.where(active, gamma, 0.0)
    total = gamma.sum(axis=1, keepdims=True)
    # All-zero draws (u = 0 exactly) fall back to equal shares rather than 0/0.
    share = np.where(total > 0, gamma / np.where(total > 0, total, 1.0), active / np.asarray(k)[:, None])
    return np.where(active, floor + (1.0 - np.asarray(k)[:, None] * floor) * share, 0.0)


def mix(phase_patterns: np.ndarray, weights: np.ndarray, phase_sample_index: np.ndarray,
        n_samples: int | None = None) -> np.ndarray:
    """Convex combination (A1): row b is Σ w_p x_p over the phases p of sample b.

    ``phase_patterns`` (P, L), ``weights`` (P,), ``phase_sample_index`` (P,) → (n_samples, L)
    in the dtype of the patterns; samples without phases are 0. Each sample's phases are
    added one after the other in their given order, whatever the batch, so a sample's sum
    is reproducible to the bit.
    """
    phase_sample_index = np.asarray(phase_sample_index, dtype=np.int64)
    if n_samples is None:
        n_samples = int(phase_sample_index.max(initial=-1)) + 1
    out = np.zeros((n_samples, phase_patterns.shape[1]), dtype=phase_patterns.dtype)
    if len(phase_sample_index) == 0:
        return out
    order = np.argsort(phase_sample_index, kind="stable")
    owner = phase_sample_index[order]
    rank = np.arange(len(order)) - np.searchsorted(owner, owner, side="left")  # position within its sample
    weights = np.asarray(weights).astype(phase_patterns.dtype)
    for r in range(int(rank.max()) + 1):
        rows = order[rank == r]  # at most one phase per sample, so fancy indexing is safe
        term = phase_patterns[rows]
        term *= weights[rows, None]
        if r == 0:
            out[phase_sample_index[rows]] = term  # 0 + term is term: same bits, one pass less
        else:
            out[phase_sample_index[rows]] += term
    return out
