"""Measurement background: a smooth multiplicative baseline and an additive floor.

Both are functions of the normalized angle ``t ∈ [−1, 1]``
(:func:`~xrdbench.augment.window.normalized_angle`) and act on a mixture scaled so its
strongest point is 1 (:func:`~xrdbench.augment.normalize.unit_max`), so the constants
are fractions of the strongest peak::

    baseline(t) = 1 + a · softplus(Σ_{j=0..4} c_j t^j)     a ∈ [0.06, 0.18], c_j ∈ [−0.12, 0.12]
    floor(t)    = max(offset + slope · t, 0)                offset ∈ [0.003, 0.03], slope ∈ [−0.01, 0.01]
    y           = x · baseline(t) + floor(t)

The paper calls (i) "multiplicative" and (ii) "additive", and that is how they combine:
the baseline modulates the pattern's intensity smoothly by 1 + ~4–13 % (softplus of a
small polynomial is ≈ ln 2), the floor lifts every bin. The floor is clipped at 0
because a negative background count is not physical (offset 0.003 with slope −0.01
would otherwise dip below 0 at high angle), which also keeps ``y ≥ 0`` for ``x ≥ 0``.
"""

from __future__ import annotations

import numpy as np

from xrdbench.augment.window import normalized_angle
from xrdbench.simulate.grids import Grid

__all__ = ["add_background", "additive_floor", "multiplicative_baseline"]


def multiplicative_baseline(t, amplitude, coefficients, dtype=np.float64) -> np.ndarray:
    """``1 + a · softplus(poly(t))``; ``coefficients`` (B, order+1) lowest power first, t (L,) → (B, L).

    Needs ``|poly(t)| < 80`` (no overflow of exp); with |t| ≤ 1 that holds when Σ_j |c_j| < 80.
    """
    t = np.asarray(t, dtype=dtype)
    coefficients = np.asarray(coefficients, dtype=dtype)
    poly = np.zeros((coefficients.shape[0], t.shape[-1]), dtype=dtype)
    for j in range(coefficients.shape[1] - 1, -1, -1):  # Horner
        poly *= t
        poly += coefficients[:, j, None]
    # log1p(exp(p)) is several times faster than logaddexp and exact while exp(p) is finite,
    # i.e. for |Σ c_j| well under 80; resolve_options keeps the sampled range far inside that.
    softplus = np.log1p(np.exp(poly, out=poly), out=poly)
    softplus *= np.asarray(amplitude, dtype=dtype)[:, None]
    softplus += 1
    return softplus


def additive_floor(t, offset, slope, dtype=np.float64) -> np.ndarray:
    """``max(offset + slope · t, 0)``, (B,) parameters and t (L,) → (B, L)."""
    t = np.asarray(t, dtype=dtype)
    return np.maximum(np.asarray(offset, dtype=dtype)[:, None] + np.asarray(slope, dtype=dtype)[:, None] * t, 0)


def add_background(patterns: np.ndarray, grid: Grid, *, amplitude=None, coefficients=None, offset=None,
                   slope=None) -> np.ndarray:
    """``x · baseline + floor`` in the patterns' dtype; leave out a part's parameters to skip it."""
    t = normalized_angle(grid.two_theta_deg, grid)
    out = patterns
    if amplitude is not None:
        out = out * multiplicative_baseline(t, amplitude, coefficients, patterns.dtype)
    if offset is not None:
        out = out + additive_floor(t, offset, slope, patterns.dtype)
    return out
