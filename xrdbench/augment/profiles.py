"""Peak-profile physics: Scherrer and microstrain widths, Thompson–Cox–Hastings pseudo-Voigt.

Conventions (GSAS-II's TCH): every FWHM here is a full width at half maximum in 2θ; the
Gaussian part comes from microstrain (4ε·tanθ), the Lorentzian part from crystallite size
(Scherrer, Kλ/(L·cosθ)); the two combine into one pseudo-Voigt of width Γ and mixing η.
θ is the Bragg angle, half of 2θ. Units are in the names: ``_rad``/``_deg`` are of 2θ.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

__all__ = [
    "caglioti_fwhm_deg",
    "gaussian_bin_integral",
    "gaussian_fwhm_strain_rad",
    "lorentzian_bin_integral",
    "lorentzian_fwhm_scherrer_rad",
    "pseudo_voigt",
    "pseudo_voigt_bin_integral",
    "sample_broadening_fwhm_deg",
    "tch_eta",
    "tch_fwhm",
]

SCHERRER_SHAPE_FACTOR = 0.9
ANGSTROM_PER_NM = 10.0
# FWHM = 2·sqrt(2 ln 2)·σ
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def gaussian_fwhm_strain_rad(strain, theta_rad):
    """Microstrain Gaussian FWHM 4ε·tanθ, radians of 2θ (ε dimensionless, θ the Bragg angle)."""
    return 4.0 * np.asarray(strain) * np.tan(theta_rad)


def lorentzian_fwhm_scherrer_rad(size_angstrom, theta_rad, wavelength_angstrom, shape_factor=SCHERRER_SHAPE_FACTOR):
    """Scherrer Lorentzian FWHM Kλ/(L·cosθ), radians of 2θ (crystallite size L and λ in Å)."""
    return shape_factor * wavelength_angstrom / (np.asarray(size_angstrom) * np.cos(theta_rad))


def tch_fwhm(gamma_g, gamma_l):
    """Total pseudo-Voigt FWHM Γ of a Gaussian Γ_G and a Lorentzian Γ_L (TCH), same unit as given."""
    g, lo = np.asarray(gamma_g, dtype=np.float64), np.asarray(gamma_l, dtype=np.float64)
    return (
        g**5 + 2.69269 * g**4 * lo + 2.42843 * g**3 * lo**2 + 4.47163 * g**2 * lo**3 + 0.07842 * g * lo**4 + lo**5
    ) ** 0.2


def tch_eta(gamma_g, gamma_l, total_fwhm=None):
    """Lorentzian fraction η of the TCH pseudo-Voigt; 0 for a pure Gaussian, 1.0 for a pure Lorentzian.

    ``total_fwhm``: :func:`tch_fwhm` of the same widths, when the caller has it already.
    """
    total = tch_fwhm(gamma_g, gamma_l) if total_fwhm is None else np.asarray(total_fwhm, dtype=np.float64)
    # Γ = 0 only when both parts vanish: call that a Gaussian (η = 0), a delta either way.
    q = np.divide(np.asarray(gamma_l, dtype=np.float64), total, out=np.zeros_like(total), where=total > 0)
    return 1.36603 * q - 0.47719 * q**2 + 0.11116 * q**3


def _gaussian_cdf(x, fwhm):
    return 0.5 * erf(x * (FWHM_PER_SIGMA / np.sqrt(2.0)) / fwhm)


def _lorentzian_cdf(x, fwhm):
    return np.arctan(2.0 * x / fwhm) / np.pi


def pseudo_voigt(x, fwhm, eta):
    """Unit-area pseudo-Voigt η·L + (1−η)·G at offset x from the centre; L and G share the FWHM."""
    x, fwhm = np.asarray(x, dtype=np.float64), np.asarray(fwhm, dtype=np.float64)
    sigma = fwhm / FWHM_PER_SIGMA
    gauss = np.exp(-0.5 * (x / sigma) ** 2) / (sigma * np.sqrt(2.0 * np.pi))
    half = 0.5 * fwhm
    lorentz = half / (np.pi * (x**2 + half**2))
    return eta * lorentz + (1.0 - eta) * gauss


def gaussian_bin_integral(lower, upper, fwhm):
    """Mass of a unit-area Gaussian (centre 0) in [lower, upper]: exact however narrow the peak."""
    return _gaussian_cdf(upper, fwhm) - _gaussian_cdf(lower, fwhm)


def lorentzian_bin_integral(lower, upper, fwhm):
    """Mass of a unit-area Lorentzian (centre 0) in [lower, upper]."""
    return _lorentzian_cdf(upper, fwhm) - _lorentzian_cdf(lower, fwhm)


def pseudo_voigt_bin_integral(lower, upper, fwhm, eta):
    """Mass of the unit-area pseudo-Voigt (centre 0) in [lower, upper]."""
    return eta * lorentzian_bin_integral(lower, upper, fwhm) + (1.0 - eta) * gaussian_bin_integral(lower, upper, fwhm)


def caglioti_fwhm_deg(two_theta_deg, u, v, w):
    """Gaussian instrument FWHM from Caglioti: FWHM² = U·tan²θ + V·tanθ + W.

    Here U, V, W give the FWHM *squared* in degrees² of 2θ — not a variance. Programs differ:
    GSAS-II's U, V, W give the Gaussian *variance* σ² in centidegrees², so its values are
    (100²/(8 ln 2)) ≈ 1803 times these. Negative FWHM² (possible with V < 0) is clipped to 0.
    """
    tan_theta = np.tan(np.deg2rad(np.asarray(two_theta_deg, dtype=np.float64)) / 2.0)
    return np.sqrt(np.maximum(u * tan_theta**2 + v * tan_theta + w, 0.0))


def sample_broadening_fwhm_deg(two_theta_deg, strain, size_nm, wavelength_angstrom):
    """(Γ_G, Γ_L) in degrees of 2θ from microstrain ε and crystallite size (nm) at each angle.

    Arguments broadcast: pass angles (L,) with per-pattern ``strain``/``size_nm`` of shape
    (B, 1) for (B, L) widths, or angles (B, L) and parameters (B, 1), or all (n,) per stick.
    """
    theta_rad = np.deg2rad(np.asarray(two_theta_deg, dtype=np.float64)) / 2.0
    size_angstrom = np.asarray(size_nm, dtype=np.float64) * ANGSTROM_PER_NM
    gamma_g = np.rad2deg(gaussian_fwhm_strain_rad(strain, theta_rad))
    gamma_l = np.rad2deg(lorentzian_fwhm_scherrer_rad(size_angstrom, theta_rad, wavelength_angstrom))
    return tuple(np.array(part) for part in np.broadcast_arrays(gamma_g, gamma_l))
