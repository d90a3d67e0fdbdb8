"""Measurement window: the part of the 2θ grid a scan actually covered.

Also home of the normalized angle coordinate ``t ∈ [−1, 1]`` shared by the smooth
effects (orientation envelope, background): ``t = 2 (2θ − min) / (max − min) − 1`` over
the grid bounds, so ``t = −1`` at the grid's lower edge and ``+1`` at its upper edge.
"""

from __future__ import annotations

import numpy as np

from xrdbench.simulate.grids import Grid

__all__ = ["apply_window", "normalized_angle", "window_mask"]


def normalized_angle(two_theta_deg, grid: Grid) -> np.ndarray:
    """``t ∈ [−1, 1]`` over the grid bounds (float64; angles beyond the bounds map beyond ±1)."""
    span = grid.two_theta_max_deg - grid.two_theta_min_deg
    return 2.0 * (np.asarray(two_theta_deg, dtype=np.float64) - grid.two_theta_min_deg) / span - 1.0


def window_mask(lo_deg, hi_deg, grid: Grid) -> np.ndarray:
    """(B, L) uint8: 1 where the bin centre lies in ``[lo, hi]`` (inclusive)."""
    centres = grid.two_theta_deg
    lo = np.asarray(lo_deg, dtype=np.float64)[:, None]
    hi = np.asarray(hi_deg, dtype=np.float64)[:, None]
    return ((centres >= lo) & (centres <= hi)).astype(np.uint8)


def apply_window(patterns: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Unmeasured bins read 0."""
    return np.where(mask.astype(bool), patterns, 0).astype(patterns.dtype, copy=False)
