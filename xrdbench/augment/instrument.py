"""Global instrument effects on the mixture: 2θ zero shift and Caglioti resolution.

Zero shift convention: a shift Δ moves every reflection from 2θ to 2θ + Δ (the
diffractometer's zero reads Δ too low). One Δ per sample, shared by all its phases.
:func:`augment_batch <xrdbench.augment.pipeline.augment_batch>` applies it at stick
level (:func:`shift_sticks`, before phase broadening), which is exact; shifting the
mixture on the grid (:func:`zero_shift`) is equivalent up to the linear interpolation
and the (negligible, ≤ 0.06°) change of the phase widths' angle dependence.

Instrument resolution is a Gaussian whose FWHM follows Caglioti,
``FWHM² = U tan²θ + V tanθ + W`` (deg²), one function per sample, the same for all its
phases. The pipeline folds it into the phases' profiles
(:func:`~xrdbench.augment.broadening.phase_fwhm_eta`), which equals convolving the
mixture; :func:`instrument_broadening` convolves a dense pattern with it.
"""

from __future__ import annotations

import numpy as np

from xrdbench.augment.broadening import INSTRUMENT_LEVEL_RATIO, broaden, width_lut
from xrdbench.augment.profiles import caglioti_fwhm_deg
from xrdbench.simulate.grids import Grid

__all__ = ["caglioti_fwhm_grid", "instrument_broadening", "shift_sticks", "zero_shift"]


def shift_sticks(two_theta_deg, shift_deg) -> np.ndarray:
    """Stick positions moved by their sample's zero shift (broadcasting)."""
    return np.asarray(two_theta_deg, dtype=np.float64) + np.asarray(shift_deg, dtype=np.float64)


def zero_shift(patterns: np.ndarray, shift_deg, grid: Grid) -> np.ndarray:
    """On-grid shift by Δ per row: ``y(2θ) = x(2θ − Δ)``, linear interpolation, 0 beyond the grid."""
    n_rows, n_bins = patterns.shape
    source = np.arange(n_bins) - np.asarray(shift_deg, dtype=np.float64)[:, None] / grid.bin_width_deg
    left = np.floor(source).astype(np.int64)
    frac = (source - left).astype(patterns.dtype)
    rows = np.arange(n_rows)[:, None]

    def take(index):
        inside = (index >= 0) & (index < n_bins)
        return np.where(inside, patterns[rows, np.clip(index, 0, n_bins - 1)], 0)

    return ((1 - frac) * take(left) + frac * take(left + 1)).astype(patterns.dtype)


def caglioti_fwhm_grid(u, v, w, grid: Grid) -> np.ndarray:
    """(B, L) float32 Caglioti FWHM (deg) at the bin centres, one (U, V, W) per row."""
    def column(a):
        return np.asarray(a, dtype=np.float64)[:, None]

    return np.asarray(caglioti_fwhm_deg(grid.two_theta_deg[None, :], column(u), column(v), column(w)),
                      dtype=np.float32)


def instrument_broadening(patterns: np.ndarray, u, v, w, grid: Grid) -> np.ndarray:
    """Gaussian (η = 0) variable-width broadening with each row's Caglioti FWHM."""
    lut = width_lut(grid, 1, INSTRUMENT_LEVEL_RATIO)  # a Gaussian tolerates coarser levels
    return broaden(patterns, caglioti_fwhm_grid(u, v, w, grid), 0.0, grid, lut=lut)
