"""Phase-wise preferred orientation: a smooth multiplicative envelope over 2θ.

Texture reweights reflections smoothly with angle, so a low-order envelope stands in
for a March–Dollase-type correction without knowing the preferred direction.

Basis, over the normalized angle ``t ∈ [−1, 1]`` (:func:`~xrdbench.augment.window.normalized_angle`),
in this column order:

* Chebyshev polynomials ``T_1(t) … T_n(t)`` (``n = chebyshev_order``, 3 by default;
  ``T_0`` is left out because a constant is cancelled by the unit-mean normalization);
* Fourier terms ``sin(π t), cos(π t), sin(2π t), cos(2π t), …``, the first
  ``fourier_terms`` of them (2 by default: ``sin(π t)`` and ``cos(π t)``).

With strength ``s`` and coefficients ``c_j ~ U(−1, 1)``::

    raw(t)      = 1 + s · Σ_j c_j φ_j(t)
    envelope(t) = clip(raw(t) / mean_grid(raw), lo, hi)        (lo, hi) = (0.85, 1.2)

``mean_grid`` is the mean over the grid's bin centres. Because ``raw`` is linear in the
basis, the mean is ``1 + s · Σ_j c_j mean_grid(φ_j)``, so the envelope can be evaluated
at arbitrary angles (stick positions) with exactly the grid normalization. ``s = 0``
gives an envelope of exactly 1, which is how "not applied" is encoded.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from xrdbench.augment.window import normalized_angle
from xrdbench.simulate.grids import Grid

__all__ = ["orientation_basis", "orientation_envelope"]


def _basis_columns(t: np.ndarray, chebyshev_order: int, fourier_terms: int):
    """Yield the basis functions at ``t`` one by one, in the documented column order."""
    previous, current = np.ones_like(t), t
    for _ in range(chebyshev_order):
        yield current
        previous, current = current, 2.0 * t * current - previous
    for term in range(fourier_terms):
        harmonic = np.pi * (term // 2 + 1)
        yield np.sin(harmonic * t) if term % 2 == 0 else np.cos(harmonic * t)


def orientation_basis(t: np.ndarray, chebyshev_order: int, fourier_terms: int) -> np.ndarray:
    """``t.shape + (chebyshev_order + fourier_terms,)`` float64, columns as in the module doc."""
    t = np.asarray(t, dtype=np.float64)
    columns = list(_basis_columns(t, chebyshev_order, fourier_terms))
    return np.stack(columns, axis=-1) if columns else np.zeros(t.shape + (0,))


@lru_cache(maxsize=16)
def _grid_basis_mean(grid: Grid, chebyshev_order: int, fourier_terms: int) -> np.ndarray:
    t = normalized_angle(grid.two_theta_deg, grid)
    return orientation_basis(t, chebyshev_order, fourier_terms).mean(axis=0)


def orientation_envelope(two_theta_deg, strength, coefficients, grid: Grid, *, chebyshev_order: int = 3,
                         clip=(0.85, 1.2)) -> np.ndarray:
    """Envelope at ``two_theta_deg`` (float64, same shape).

    ``strength`` broadcasts against ``two_theta_deg``; ``coefficients`` has the same
    leading shape plus a trailing basis axis whose length fixes the number of Fourier
    terms (``n_basis − chebyshev_order``). For a (B, L) grid evaluation pass
    ``strength[:, None]`` and ``coefficients[:, None, :]``; at stick level pass one row per stick.
    """
    coefficients = np.asarray(coefficients, dtype=np.float64)
    fourier_terms = coefficients.shape[-1] - chebyshev_order
    if fourier_terms < 0:
        raise ValueError(f"{coefficients.shape[-1]} coefficients cannot hold Chebyshev order {chebyshev_order}")
    strength = np.asarray(strength, dtype=np.float64)
    t = normalized_angle(two_theta_deg, grid)
    grid_mean = _grid_basis_mean(grid, chebyshev_order, fourier_terms)
    shape = np.broadcast_shapes(t.shape, coefficients.shape[:-1])
    variation, mean_variation = np.zeros(shape), np.zeros(coefficients.shape[:-1])
    for j, column in enumerate(_basis_columns(t, chebyshev_order, fourier_terms)):
        variation += coefficients[..., j] * column
        mean_variation += coefficients[..., j] * grid_mean[j]
    return np.clip((1.0 + strength * variation) / (1.0 + strength * mean_variation), clip[0], clip[1])
